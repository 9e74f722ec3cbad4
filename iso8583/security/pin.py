"""PIN blocks, ISO 9564-1 formats 0, 1 and 3 (TDES, 8 bytes) and format 4 (AES, 16 bytes).

Terminal side: ``encrypt(pin, pan, pin_key)`` gives field 52. Host side: ``decrypt(block, pan,
pin_key)`` or ``verify_pin(block, pan, pin_key, expected_pin)``; a block that does not decode (wrong
key, wrong PAN, corrupted) raises :class:`PinBlockError`, which a host answers with 55 (or 96).

Formats:

* **0** (ANSI X9.8): PIN field ``0 N P..P F..F`` XOR PAN field ``0000`` + 12 rightmost PAN digits
  excluding the check digit.
* **1**: ``1 N P..P R..R`` (random fill), no PAN — for when the PAN is not available.
* **3**: like 0 but the fill nibbles are random ``A``–``F``.
* **4** (ISO 9564-1:2017, AES): 16-byte PIN field ``4 N P..P A..A`` + 8 random bytes; 16-byte PAN
  field ``M`` (PAN length - 12) + PAN + ``0`` fill; block = AES(K, AES(K, PIN field) XOR PAN field).

Neither PINs nor clear PIN blocks appear in any exception text or repr.
"""

from __future__ import annotations

import hmac
import random
import secrets

from . import _crypto
from .errors import PinBlockError
from .keys import Key, KeyLike, key_bytes

__all__ = [
    "FORMATS",
    "PinBlockError",
    "decrypt",
    "encrypt",
    "make_pin_block",
    "pan_field",
    "parse_pin_block",
    "verify_pin",
]

FORMATS = (0, 1, 3, 4)
_HEX = "0123456789ABCDEF"


def _rng(rng: random.Random | None) -> random.Random:
    return rng if rng is not None else secrets.SystemRandom()


def _check_pin(pin: str) -> str:
    if not isinstance(pin, str) or not pin.isdigit() or not pin.isascii():
        raise PinBlockError("PIN must be a string of decimal digits")
    if not 4 <= len(pin) <= 12:
        raise PinBlockError(f"PIN must have 4 to 12 digits, got {len(pin)}")
    return pin


def _check_pan(pan: str) -> str:
    if not isinstance(pan, str) or not pan.isdigit() or not pan.isascii():
        raise PinBlockError("PAN must be a string of decimal digits")
    if not 1 <= len(pan) <= 19:
        raise PinBlockError(f"PAN must have 1 to 19 digits, got {len(pan)}")
    return pan


def pan_field(pan: str, fmt: int = 0) -> bytes:
    """The account number field XORed into a format 0/3 block (8 bytes) or format 4 (16 bytes)."""
    return _pan_field(_check_pan(pan), fmt)


def _pan_field(pan: str, fmt: int) -> bytes:
    """:func:`pan_field` of a PAN already checked (by ``_require_pan``)."""
    if fmt == 4:
        body = pan.rjust(12, "0")
        m = max(0, len(pan) - 12)
        return bytes.fromhex((str(m) + body).ljust(32, "0"))
    digits = pan[:-1][-12:].rjust(12, "0")  # 12 rightmost digits excluding the check digit
    return bytes.fromhex("0000" + digits)


def make_pin_block(pin: str, pan: str | None = None, fmt: int = 0, *, rng: random.Random | None = None) -> bytes:
    """The clear PIN block of format 0, 1 or 3 (8 bytes); for format 4 the 16-byte plaintext PIN field.

    ``rng`` supplies the random fill of formats 1, 3 and 4; pass a seeded ``random.Random`` only in
    simulations (the default is the OS CSPRNG).
    """
    _check_pin(pin)
    n = _HEX[len(pin)]
    if fmt == 0:   # the common case: no random fill, so no CSPRNG object is made
        field = "0" + n + pin.ljust(14, "F")
        return _crypto.xor(bytes.fromhex(field), _pan_field(_require_pan(pan, fmt), 0))
    r = _rng(rng)
    if fmt == 1:
        field = "1" + n + pin + "".join(r.choice(_HEX) for _ in range(14 - len(pin)))
        return bytes.fromhex(field)
    if fmt == 3:
        field = "3" + n + pin + "".join(r.choice("ABCDEF") for _ in range(14 - len(pin)))
        return _crypto.xor(bytes.fromhex(field), _pan_field(_require_pan(pan, fmt), 0))
    if fmt == 4:
        field = "4" + n + pin.ljust(14, "A")
        return bytes.fromhex(field) + bytes(r.getrandbits(8) for _ in range(8))
    raise PinBlockError(f"unsupported PIN block format {fmt!r} (supported: 0, 1, 3, 4)")


def _require_pan(pan: str | None, fmt: int) -> str:
    if pan is None:
        raise PinBlockError(f"PIN block format {fmt} needs the PAN")
    return _check_pan(pan)


def _parse_field(field: bytes, fmt: int | None) -> tuple[int, str]:
    """(format, PIN) from a clear PIN field (already un-XORed from the PAN); strict structure check."""
    text = field.hex().upper()
    control = int(text[0], 16)
    if fmt is not None and control != fmt:
        raise PinBlockError(f"PIN block control nibble is {control}, expected format {fmt} "
                            "(wrong key, wrong format or corrupted block)")
    if control not in FORMATS:
        raise PinBlockError(f"PIN block control nibble {control} is no supported format "
                            "(wrong key or corrupted block)")
    length = int(text[1], 16)
    if not 4 <= length <= 12:
        raise PinBlockError(f"PIN block format {control}: PIN length nibble {length} is outside 4..12 "
                            "(wrong key, wrong PAN or corrupted block)")
    pin = text[2:2 + length]
    if not pin.isdigit():
        raise PinBlockError(f"PIN block format {control}: PIN positions hold non-digits "
                            "(wrong key, wrong PAN or corrupted block)")
    fill = text[2 + length:16]
    if control == 0 and fill != "F" * len(fill):
        raise PinBlockError("PIN block format 0: fill is not all F (wrong key, wrong PAN or corrupted block)")
    if control == 3 and any(c not in "ABCDEF" for c in fill):
        raise PinBlockError("PIN block format 3: fill is not A-F (wrong key, wrong PAN or corrupted block)")
    if control == 4 and fill != "A" * len(fill):
        raise PinBlockError("PIN block format 4: fill is not all A (wrong key, wrong PAN or corrupted block)")
    return control, pin


def parse_pin_block(block: bytes, pan: str | None = None, fmt: int | None = None) -> str:
    """The PIN in a clear format 0/1/3 block (or a format 4 plaintext PIN field).

    The format is read from the control nibble unless ``fmt`` is given; formats 0 and 3 need the PAN.
    """
    block = bytes(block)
    if len(block) == 16:
        return _parse_field(block, 4 if fmt is None else fmt)[1]
    if len(block) != 8:
        raise PinBlockError(f"PIN block must be 8 bytes (16 for format 4), got {len(block)}")
    control = block[0] >> 4  # the PAN field's first nibble is 0, so the control nibble is in clear
    if fmt is not None and control != fmt:
        raise PinBlockError(f"PIN block control nibble is {control}, expected format {fmt} "
                            "(wrong key, wrong format or corrupted block)")
    if control in (0, 3):
        block = _crypto.xor(block, _pan_field(_require_pan(pan, control), 0))
    return _parse_field(block, fmt)[1]


def _is_aes(key: KeyLike, fmt: int | None) -> bool:
    if fmt is not None:
        return fmt == 4
    return isinstance(key, Key) and key.algorithm == "aes"


def encrypt(pin: str, pan: str | None, key: KeyLike, fmt: int = 0, *, rng: random.Random | None = None) -> bytes:
    """The encrypted PIN block for field 52: TDES-ECB of a format 0/1/3 block, or format 4 under AES."""
    # Fast path, the one every PIN-entry sale takes: format 0 under a TDES Key with a valid PIN and
    # PAN. The block is built as one integer (PIN field XOR PAN field) and enciphered by the cached
    # context in one call. Anything else, including every invalid input, goes the general way below,
    # which makes the same block and raises the errors (tests/security/test_pin_fast.py compares).
    # The key's cached context is taken directly (first use of a key: the general path makes it).
    if fmt == 0 and key.__class__ is Key and pin.__class__ is str and pan.__class__ is str:
        n = len(pin)
        if 4 <= n <= 12 and 0 < len(pan) <= 19:
            digits = pin + pan
            if digits.isascii() and digits.encode().isdigit():   # bytes.isdigit: a table lookup per digit
                ctx = _crypto._cache.entries.get(("tdes-e", key._material))
                if ctx is not None:
                    block = int(_HEX[n] + pin + _FILL[n], 16) ^ int(pan[-13:-1] or "0", 16)
                    return ctx.update(block.to_bytes(8, "big"))   # type: ignore[no-any-return]
    return _encrypt(pin, pan, key, fmt, rng)


def _encrypt(pin: str, pan: str | None, key: KeyLike, fmt: int, rng: random.Random | None) -> bytes:
    """:func:`encrypt` for every format and input (the fast path's reference)."""
    raw = key_bytes(key)
    if fmt == 4:
        pan = _require_pan(pan, 4)
        intermediate = _crypto.aes_ecb_encrypt(raw, make_pin_block(pin, pan, 4, rng=rng))
        return _crypto.aes_ecb_encrypt(raw, _crypto.xor(intermediate, _pan_field(pan, 4)))
    return _crypto.tdes_ecb_encrypt(raw, make_pin_block(pin, pan, fmt, rng=rng))


def decrypt(block: bytes, pan: str | None, key: KeyLike, fmt: int | None = None) -> str:
    """The PIN in an encrypted PIN block; raises :class:`PinBlockError` if it does not decode.

    ``fmt=None`` reads formats 0/1/3 from the control nibble; format 4 is assumed for a 16-byte block
    or an AES :class:`Key`. A wrong key or PAN is detected with high (not total) probability: format
    0 and 3 checks cover the length, digits and fill.
    """
    # Fast path, what a host does for every PIN sale: an 8-byte block under a TDES Key that deciphers
    # to a well-formed format 0 block (control 0, length 4..12, digits, F fill) for a valid PAN.
    # Whatever else (another format, a bad block, key or PAN) is decided by the general path below,
    # which returns the same PIN or raises the error (tests/security/test_pin_fast.py compares).
    if (key.__class__ is Key and key.algorithm == "tdes" and block.__class__ is bytes and len(block) == 8
            and fmt in (None, 0) and pan.__class__ is str and 0 < len(pan) <= 19 and pan.isdigit()
            and pan.isascii()):
        clear = int.from_bytes(_crypto.tdes_ecb_block(False, key._material, block), "big") ^ int(pan[-13:-1] or "0", 16)
        length = clear >> 56
        if 4 <= length <= 12:   # also says the control nibble is 0
            text = f"{clear & 0xFFFFFFFFFFFFFF:014X}"
            pin = text[:length]
            if pin.isdigit() and text.endswith(_FILL[length]):
                return pin
    return _decrypt(block, pan, key, fmt)


_FILL = ["F" * (14 - n) for n in range(15)]


def _decrypt(block: bytes, pan: str | None, key: KeyLike, fmt: int | None) -> str:
    """:func:`decrypt` for every format and input (the fast path's reference)."""
    raw = key_bytes(key)
    block = bytes(block)
    if _is_aes(key, fmt) or (fmt is None and len(block) == 16):
        if len(block) != 16:
            raise PinBlockError(f"format 4 PIN block must be 16 bytes, got {len(block)}")
        pan = _require_pan(pan, 4)
        intermediate = _crypto.xor(_crypto.aes_ecb_decrypt(raw, block), _pan_field(pan, 4))
        return _parse_field(_crypto.aes_ecb_decrypt(raw, intermediate), 4)[1]
    if len(block) != 8:
        raise PinBlockError(f"PIN block must be 8 bytes for formats 0, 1, 3, got {len(block)}")
    return parse_pin_block(_crypto.tdes_ecb_decrypt(raw, block), pan, fmt)


def verify_pin(block: bytes, pan: str | None, key: KeyLike, expected_pin: str, fmt: int | None = None) -> bool:
    """True iff the block decodes to ``expected_pin`` (constant-time comparison).

    Raises :class:`PinBlockError` when the block does not decode at all (wrong key/PAN, corrupted),
    so a host can tell "wrong PIN" (55) from "undecipherable PIN block" (often also 55, or 96).
    """
    _check_pin(expected_pin)
    pin = decrypt(block, pan, key, fmt)
    return hmac.compare_digest(pin.encode(), expected_pin.encode())
