"""Thin, typed wrappers over the `cryptography` package's DES/TDES/AES block operations.

Every cipher call in :mod:`iso8583.security` goes through here so that:

* no cipher is written by hand — these only arrange bytes for `cryptography`;
* TripleDES is found wherever the installed `cryptography` keeps it (``hazmat.decrepit`` since 43,
  ``hazmat.primitives`` before), and single/double-length keys are expanded to the 24-byte form
  (K1K1K1 = single DES, K1K2K1 = two-key TDES) that current releases want, without deprecation noise;
* key lengths are checked once, with an error that says the length but never the key.
"""

from __future__ import annotations

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


def _check_blocks(data: bytes, size: int, what: str) -> None:
    if len(data) % size:
        raise SecurityError(f"{what}: data must be a multiple of {size} bytes, got {len(data)}")


def tdes_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    _check_blocks(data, DES_BLOCK, "TDES-ECB")
    enc = Cipher(tdes(key), modes.ECB()).encryptor()
    return enc.update(data) + enc.finalize()


def tdes_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    _check_blocks(data, DES_BLOCK, "TDES-ECB")
    dec = Cipher(tdes(key), modes.ECB()).decryptor()
    return dec.update(data) + dec.finalize()


def tdes_cbc_encrypt(key: bytes, data: bytes, iv: bytes = ZERO8) -> bytes:
    _check_blocks(data, DES_BLOCK, "TDES-CBC")
    enc = Cipher(tdes(key), modes.CBC(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def tdes_cbc_decrypt(key: bytes, data: bytes, iv: bytes = ZERO8) -> bytes:
    _check_blocks(data, DES_BLOCK, "TDES-CBC")
    dec = Cipher(tdes(key), modes.CBC(iv)).decryptor()
    return dec.update(data) + dec.finalize()


def _aes(key: bytes) -> algorithms.AES:
    if len(key) not in (16, 24, 32):
        raise SecurityError(f"AES key must be 16, 24 or 32 bytes, got {len(key)}")
    return algorithms.AES(bytes(key))


def aes_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    _check_blocks(data, AES_BLOCK, "AES-ECB")
    enc = Cipher(_aes(key), modes.ECB()).encryptor()
    return enc.update(data) + enc.finalize()


def aes_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    _check_blocks(data, AES_BLOCK, "AES-ECB")
    dec = Cipher(_aes(key), modes.ECB()).decryptor()
    return dec.update(data) + dec.finalize()


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """Full 16-byte AES-CMAC (NIST SP 800-38B) computed by `cryptography`."""
    mac = cmac.CMAC(_aes(key))
    mac.update(bytes(data))
    return mac.finalize()


def tdes_cmac(key: bytes, data: bytes) -> bytes:
    """Full 8-byte TDES-CMAC (NIST SP 800-38B with the TDEA block cipher)."""
    mac = cmac.CMAC(tdes(key))
    mac.update(bytes(data))
    return mac.finalize()
