"""Thin, typed wrappers over the `cryptography` package's DES/TDES/AES block operations.

Every cipher call in :mod:`iso8583.security` goes through here so that:

* no cipher is written by hand — these only arrange bytes for `cryptography`;
* TripleDES is found wherever the installed `cryptography` keeps it (``hazmat.decrepit`` since 43,
  ``hazmat.primitives`` before), and single/double-length keys are expanded to the 24-byte form
  (K1K1K1 = single DES, K1K2K1 = two-key TDES) that current releases want, without deprecation noise;
* key lengths are checked once, with an error that says the length but never the key;
* cipher contexts are reused. Creating a `cryptography` context costs ~15-20 us (key schedule,
  OpenSSL object) while encrypting one block with an existing one costs ~1 us, and a terminal or
  host uses the same few keys (PIN key, MAC key, TMK) for every message. So each thread keeps a
  small, bounded cache of contexts keyed by (operation, key bytes): ECB contexts are stateless
  between whole blocks and are simply reused; CBC encryption reuses one context per key by
  folding the context's running chaining value into the first block (see
  :func:`tdes_cbc_encrypt`); CMAC reuses a keyed template through ``copy()``.
  The cache is private, never printed (its repr shows only a count) and holds nothing a live
  :class:`~iso8583.security.keys.Key` object does not already hold; :func:`clear_cache` empties it
  (e.g. after a key change, or in a test that wants cold contexts).
"""

from __future__ import annotations

import threading
from typing import Any

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import SecurityError

try:  # cryptography >= 43
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES as _TripleDES
except ImportError:  # pragma: no cover - older cryptography
    _TripleDES = algorithms.TripleDES  # type: ignore[attr-defined,misc]

DES_BLOCK = 8
AES_BLOCK = 16
ZERO8 = bytes(8)
ZERO16 = bytes(16)

#: Contexts kept per thread. A terminal needs 2-4 (PIN key, MAC key halves), a host a few per
#: terminal; DUKPT one-time keys pass through and are evicted oldest-first.
CACHE_SIZE = 64


def xor(a: bytes, b: bytes) -> bytes:
    """Byte-wise XOR of two equal-length strings."""
    if len(a) != len(b):
        raise ValueError(f"xor of {len(a)} and {len(b)} bytes")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _tdes_key(key: bytes) -> bytes:
    if len(key) == 8:
        return key * 3
    if len(key) == 16:
        return key + key[:8]
    if len(key) == 24:
        return key
    raise SecurityError(f"DES/TDES key must be 8, 16 or 24 bytes, got {len(key)}")


def tdes(key: bytes) -> _TripleDES:
    """A `cryptography` TripleDES object for an 8-byte (single DES), 16- or 24-byte key."""
    return _TripleDES(_tdes_key(bytes(key)))


def _aes(key: bytes) -> algorithms.AES:
    if len(key) not in (16, 24, 32):
        raise SecurityError(f"AES key must be 16, 24 or 32 bytes, got {len(key)}")
    return algorithms.AES(bytes(key))


def _check_blocks(data: bytes, size: int, what: str) -> None:
    if len(data) % size:
        raise SecurityError(f"{what}: data must be a multiple of {size} bytes, got {len(data)}")


# -- the per-thread context cache ---------------------------------------------------------------------

class _ContextCache(threading.local):
    """Per-thread map (operation, key bytes) -> reusable context. Per thread because a context is
    not thread-safe and a CBC context carries chaining state between calls."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, bytes], Any] = {}

    def __repr__(self) -> str:  # never the keys
        return f"<iso8583.security cipher context cache: {len(self.entries)} contexts in this thread>"


_cache = _ContextCache()


def clear_cache() -> None:
    """Drop this thread's cached cipher contexts."""
    _cache.entries.clear()


def cache_size() -> int:
    """How many contexts this thread holds (for tests and diagnostics; never which keys)."""
    return len(_cache.entries)


def _store(entries: dict[tuple[str, bytes], Any], slot: tuple[str, bytes], value: Any) -> None:
    if len(entries) >= CACHE_SIZE:
        del entries[next(iter(entries))]  # oldest first
    entries[slot] = value


def _ecb(operation: str, key: bytes) -> Any:
    """The cached ECB encryptor/decryptor for ``key`` (created on first use)."""
    key = bytes(key)
    entries = _cache.entries
    slot = (operation, key)
    ctx = entries.get(slot)
    if ctx is None:
        if operation == "tdes-e":
            ctx = Cipher(tdes(key), modes.ECB()).encryptor()
        elif operation == "tdes-d":
            ctx = Cipher(tdes(key), modes.ECB()).decryptor()
        elif operation == "aes-e":
            ctx = Cipher(_aes(key), modes.ECB()).encryptor()
        else:
            ctx = Cipher(_aes(key), modes.ECB()).decryptor()
        _store(entries, slot, ctx)
    return ctx


# -- block operations ---------------------------------------------------------------------------------

def tdes_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    _check_blocks(data, DES_BLOCK, "TDES-ECB")
    return _ecb("tdes-e", key).update(data)


def tdes_ecb_block(encrypt: bool, key: bytes, block: bytes) -> bytes:
    """One 8-byte block through the cached TDES-ECB context (``key`` and ``block`` are ``bytes``).

    The PIN block hot path: one dict lookup and one cipher call. The first use of a key, and any
    wrong length, go through :func:`_ecb` / the checked functions, which raise the usual errors.
    """
    ctx = _cache.entries.get(("tdes-e" if encrypt else "tdes-d", key))
    if ctx is None or len(block) != DES_BLOCK:
        return tdes_ecb_encrypt(key, block) if encrypt else tdes_ecb_decrypt(key, block)
    return ctx.update(block)


def tdes_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    _check_blocks(data, DES_BLOCK, "TDES-ECB")
    return _ecb("tdes-d", key).update(data)


def tdes_cbc_encrypt(key: bytes, data: bytes, iv: bytes = ZERO8) -> bytes:
    """TDES-CBC encryption of whole blocks.

    One CBC context per key is reused across calls. Such a context continues the chain: its next
    output is ``E(P1 XOR C)`` where ``C`` is the last ciphertext block it produced (the zero IV
    at first). Feeding ``P1 XOR C XOR iv`` instead of ``P1`` therefore gives exactly ``E(P1 XOR
    iv)`` — a fresh CBC encryption under ``iv`` — and every later block chains as usual. The
    entry is taken out of the cache while in use, so an interrupted call can never leave a
    context whose chaining value is unknown.
    """
    _check_blocks(data, DES_BLOCK, "TDES-CBC")
    if len(iv) != DES_BLOCK:
        raise SecurityError(f"TDES-CBC: IV must be {DES_BLOCK} bytes, got {len(iv)}")
    if not data:
        return b""
    key = bytes(key)
    entries = _cache.entries
    slot = ("tdes-cbc", key)
    entry = entries.pop(slot, None)
    if entry is None:
        entry = (Cipher(tdes(key), modes.CBC(ZERO8)).encryptor(), 0)
    ctx, chain = entry
    adjust = chain ^ int.from_bytes(iv, "big")
    if adjust:
        data = (int.from_bytes(data[:8], "big") ^ adjust).to_bytes(8, "big") + data[8:]
    out = ctx.update(data)
    _store(entries, slot, (ctx, int.from_bytes(out[-8:], "big")))
    return out


def tdes_cbc_decrypt(key: bytes, data: bytes, iv: bytes = ZERO8) -> bytes:
    _check_blocks(data, DES_BLOCK, "TDES-CBC")
    dec = Cipher(tdes(key), modes.CBC(iv)).decryptor()
    return dec.update(data) + dec.finalize()


def aes_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    _check_blocks(data, AES_BLOCK, "AES-ECB")
    return _ecb("aes-e", key).update(data)


def aes_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    _check_blocks(data, AES_BLOCK, "AES-ECB")
    return _ecb("aes-d", key).update(data)


def _cmac(operation: str, key: bytes, data: bytes) -> bytes:
    key = bytes(key)
    entries = _cache.entries
    slot = (operation, key)
    template = entries.get(slot)
    if template is None:
        template = cmac.CMAC(_aes(key) if operation == "aes-cmac" else tdes(key))
        _store(entries, slot, template)
    mac = template.copy()  # the template itself is never updated or finalized
    mac.update(bytes(data))
    return mac.finalize()


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """Full 16-byte AES-CMAC (NIST SP 800-38B) computed by `cryptography`."""
    return _cmac("aes-cmac", key, data)


def tdes_cmac(key: bytes, data: bytes) -> bytes:
    """Full 8-byte TDES-CMAC (NIST SP 800-38B with the TDEA block cipher)."""
    return _cmac("tdes-cmac", key, data)
