"""ANSI X9.24-1 (2009) TDES DUKPT: derived unique key per transaction.

A PIN pad is injected with an *initial key* (IPEK) derived from the acquirer's base derivation key
(BDK) and the device's key serial number (KSN); after that, every transaction uses a different key,
derived from the IPEK and the KSN's 21-bit transaction counter, and sends the KSN along (e.g. in
field 53 or a TLV). The host, knowing the BDK, re-derives the same key from the KSN alone. A key
leaked from one transaction says nothing about earlier ones.

This module is the host's side (any key from BDK/IPEK + KSN) plus the counter rule the device
follows (:func:`next_ksn`: counters with more than 10 one-bits are never used).

>>> bdk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
>>> derive_ipek(bdk, "FFFF9876543210E00000").hex().upper()
'6AC292FAA1315B4D858AB3A3D7D5933A'
"""

from __future__ import annotations

from dataclasses import dataclass

from . import _crypto
from .errors import DukptError
from .keys import Key, KeyLike, key_bytes

__all__ = [
    "DukptKeys",
    "derive_ipek",
    "derive_keys",
    "derive_transaction_key",
    "mac_key",
    "next_ksn",
    "parse_ksn",
    "pin_key",
]

COUNTER_BITS = 21
COUNTER_MASK = (1 << COUNTER_BITS) - 1
MAX_ONE_BITS = 10

_KEY_MASK = bytes.fromhex("C0C0C0C000000000C0C0C0C000000000")
PIN_VARIANT = bytes.fromhex("00000000000000FF00000000000000FF")
MAC_REQUEST_VARIANT = bytes.fromhex("000000000000FF00000000000000FF00")
MAC_RESPONSE_VARIANT = bytes.fromhex("00000000FF00000000000000FF000000")
DATA_REQUEST_VARIANT = bytes.fromhex("0000000000FF00000000000000FF0000")
DATA_RESPONSE_VARIANT = bytes.fromhex("000000FF00000000000000FF00000000")


def parse_ksn(ksn: bytes | str) -> bytes:
    """A 10-byte KSN from bytes or hex text; an 8-byte KSN is left-padded with ``FFFF`` as usual."""
    if isinstance(ksn, str):
        try:
            ksn = bytes.fromhex(ksn.replace(" ", ""))
        except ValueError:
            raise DukptError("KSN hex text is not valid hexadecimal") from None
    ksn = bytes(ksn)
    if len(ksn) == 8:
        ksn = b"\xff\xff" + ksn
    if len(ksn) != 10:
        raise DukptError(f"KSN must be 10 bytes (20 hex digits), got {len(ksn)}")
    return ksn


def counter(ksn: bytes | str) -> int:
    """The 21-bit transaction counter of a KSN."""
    return int.from_bytes(parse_ksn(ksn)[-3:], "big") & COUNTER_MASK


def _bdk(bdk: KeyLike) -> bytes:
    raw = key_bytes(bdk)
    if len(raw) != 16:
        raise DukptError(f"TDES DUKPT BDK/IPEK must be a double-length 16-byte key, got {len(raw)}")
    return raw


def derive_ipek(bdk: KeyLike, ksn: bytes | str) -> bytes:
    """Initial PIN encryption key: TDES-encrypt the KSN's left 8 bytes (counter cleared) under the BDK
    for the left half, under BDK XOR C0C0C0C000000000C0C0C0C000000000 for the right half."""
    raw = _bdk(bdk)
    base = (int.from_bytes(parse_ksn(ksn)[:8], "big") & 0xFFFFFFFFFFFFFFE0).to_bytes(8, "big")
    left = _crypto.tdes_ecb_encrypt(raw, base)
    right = _crypto.tdes_ecb_encrypt(_crypto.xor(raw, _KEY_MASK), base)
    return left + right


def _non_reversible(key: bytes, data: bytes) -> bytes:
    """X9.24-1 Annex A 'non-reversible key generation process' for a 16-byte key register."""
    def half(k: bytes) -> bytes:
        k_left, k_right = k[:8], k[8:]
        return _crypto.xor(_crypto.tdes_ecb_encrypt(k_left, _crypto.xor(data, k_right)), k_right)

    right = half(key)
    left = half(_crypto.xor(key, _KEY_MASK))
    return left + right


def derive_transaction_key(ipek: KeyLike, ksn: bytes | str) -> bytes:
    """The transaction key for ``ksn``: walk the counter's set bits from the most significant,
    applying the non-reversible key generation with the KSN register built so far."""
    key = _bdk(ipek)
    ksn_bytes = parse_ksn(ksn)
    count = int.from_bytes(ksn_bytes[-3:], "big") & COUNTER_MASK
    register = int.from_bytes(ksn_bytes[2:], "big") & ~COUNTER_MASK
    for bit in range(COUNTER_BITS - 1, -1, -1):
        if count >> bit & 1:
            register |= 1 << bit
            key = _non_reversible(key, register.to_bytes(8, "big"))
    return key


def _data_key(transaction_key: bytes, variant: bytes) -> bytes:
    """Data encryption key: the data variant, then each half TDES-encrypted under the variant key
    (the one-way step X9.24-1:2009 added for data keys)."""
    variant_key = _crypto.xor(transaction_key, variant)
    return _crypto.tdes_ecb_encrypt(variant_key, variant_key)


@dataclass(frozen=True)
class DukptKeys:
    """All working keys for one KSN (each a :class:`Key`, so reprs show only KCVs)."""

    ksn: bytes
    transaction_key: Key
    pin_key: Key
    mac_request_key: Key
    mac_response_key: Key
    data_request_key: Key
    data_response_key: Key

    def __repr__(self) -> str:
        return f"DukptKeys(ksn={self.ksn.hex().upper()}, pin_key={self.pin_key!r}, mac_request_key={self.mac_request_key!r})"


def derive_keys(bdk: KeyLike | None = None, ksn: bytes | str = b"", *, ipek: KeyLike | None = None) -> DukptKeys:
    """Every variant key for ``ksn`` from the BDK (host) or the IPEK (device)."""
    if (bdk is None) == (ipek is None):
        raise DukptError("give exactly one of bdk= or ipek=")
    ksn_bytes = parse_ksn(ksn)
    initial = derive_ipek(bdk, ksn_bytes) if bdk is not None else _bdk(ipek)  # type: ignore[arg-type]
    tk = derive_transaction_key(initial, ksn_bytes)
    return DukptKeys(
        ksn=ksn_bytes,
        transaction_key=Key(tk),
        pin_key=Key(_crypto.xor(tk, PIN_VARIANT)),
        mac_request_key=Key(_crypto.xor(tk, MAC_REQUEST_VARIANT)),
        mac_response_key=Key(_crypto.xor(tk, MAC_RESPONSE_VARIANT)),
        data_request_key=Key(_data_key(tk, DATA_REQUEST_VARIANT)),
        data_response_key=Key(_data_key(tk, DATA_RESPONSE_VARIANT)),
    )


def pin_key(bdk: KeyLike, ksn: bytes | str) -> Key:
    """PIN encryption key for ``ksn`` (transaction key XOR the PIN variant), from the BDK."""
    return derive_keys(bdk, ksn).pin_key


def mac_key(bdk: KeyLike, ksn: bytes | str, *, response: bool = False) -> Key:
    """MAC key (request or response variant) for ``ksn``, from the BDK."""
    keys = derive_keys(bdk, ksn)
    return keys.mac_response_key if response else keys.mac_request_key


def next_ksn(ksn: bytes | str) -> bytes:
    """The KSN a device uses next: counter + 1, skipping counters with more than 10 one-bits.

    Raises :class:`DukptError` when the 21-bit counter is exhausted (the device must be re-keyed).
    """
    ksn_bytes = parse_ksn(ksn)
    value = int.from_bytes(ksn_bytes, "big")
    count = value & COUNTER_MASK
    while True:
        count += 1
        if count > COUNTER_MASK:
            raise DukptError("DUKPT transaction counter exhausted; the device needs a new initial key")
        if bin(count).count("1") <= MAX_ONE_BITS:
            break
    return ((value & ~COUNTER_MASK) | count).to_bytes(10, "big")
