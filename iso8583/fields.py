"""Field specs and the per-field encoder/decoder closures compiled from them.

A :class:`FieldSpec` is data (type, length form, encodings, padding). :func:`compile_field` turns it
once into two small closures specialised for that exact combination, so the hot path of
:func:`iso8583.encode`/:func:`iso8583.decode` does no dispatch on spec attributes per message:

* ``encode(value) -> bytes``: validates the value (type, character class, length) and returns the
  length prefix plus the encoded data;
* ``decode(data, pos) -> (value, new_pos)``: reads the prefix and data at ``pos`` and validates them.

Both raise :class:`~iso8583.errors.EncodeError` / :class:`~iso8583.errors.DecodeError` naming the
field, the byte offset, what was expected and what was found (masked for sensitive fields).

Vocabulary (all per field, never per dialect, because real dialects mix them):

* ``type``: ``n a an ans as ns b z x+n`` (DESIGN §2).
* ``length``: ``fixed``, ``L``, ``LL``, ``LLL``, ``LLLL`` (number of length digits).
* ``prefix``: how the length is written: ``ascii``, ``ebcdic``, ``bcd`` (packed, ``ceil(digits/2)``
  bytes) or ``binary`` (big-endian; 1 byte for L/LL, 2 for LLL/LLLL unless ``prefix_bytes``).
* ``encoding``: how the data is written: ``ascii`` / ``ebcdic`` (text; for ``b`` this means hex
  digits as text), ``bcd`` (packed digits, for ``n``, ``z`` and the digits of ``x+n``), ``binary``
  (raw bytes, for ``b``).
* ``max``: maximum (or, for fixed fields, exact) size in *value units*: characters for text, digits
  for numerics (``x+n``: digits, without the sign), bytes for ``b``.
* ``count``: what the length prefix counts: ``chars``/``nibbles`` (value units) or ``bytes`` (encoded
  bytes). Defaults to ``nibbles`` for BCD data and ``bytes`` otherwise.
* ``pad``: for odd digit counts in BCD: ``left0`` (right-aligned, the usual for fixed numerics),
  ``leftF``, ``right0`` or ``rightF`` (left-aligned, common for variable fields and track data).
"""

from __future__ import annotations

import re
import string
from binascii import Error as BinasciiError
from binascii import hexlify, unhexlify
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import DecodeError, EncodeError, SpecError
from .mask import PAN_FIELDS, SECRET_FIELDS, mask_value, scrub_text

TYPES = ("n", "a", "an", "ans", "as", "ns", "b", "z", "x+n")
LENGTH_DIGITS = {"fixed": 0, "L": 1, "LL": 2, "LLL": 3, "LLLL": 4}
PREFIXES = ("ascii", "ebcdic", "bcd", "binary")
ENCODINGS = ("ascii", "ebcdic", "bcd", "binary")
COUNTS = ("chars", "nibbles", "bytes")
PADS = ("left0", "leftF", "right0", "rightF")

Encoder = Callable[[Any], bytes]
Decoder = Callable[[bytes, int], tuple[Any, int]]

_SPECIAL = "".join(chr(c) for c in range(0x20, 0x7F) if not chr(c).isalnum())
_ALPHA = "A-Za-z "
#: Character classes of the text types, as regex bodies (ASCII only; EBCDIC text is checked
#: after translation to str, against the same classes).
_CLASSES = {
    "n": "0-9",
    "a": _ALPHA,
    "an": "0-9" + _ALPHA,
    "as": _ALPHA + re.escape(_SPECIAL),
    "ns": "0-9" + re.escape(_SPECIAL),
    "z": "0-9=D",
}
_DESCRIBE_CLASS = {
    "n": "digits",
    "a": "letters/spaces",
    "an": "letters/digits/spaces",
    "ans": "printable ASCII",
    "as": "letters/spaces/specials",
    "ns": "digits/specials",
    "z": "track digits and '='/'D'",
    "x+n": "'C' or 'D' then digits",
    "b": "bytes",
}


@dataclass(slots=True)
class FieldSpec:
    """One data element (or subfield) of a spec; see the module docstring for the vocabulary."""

    number: int | str
    name: str = ""
    type: str = "ans"
    max: int = 0
    length: str = "fixed"
    prefix: str = "ascii"
    encoding: str = "ascii"
    count: str = ""
    pad: str = "left0"
    prefix_bytes: int = 0
    composite: Any = None  # iso8583.composite.Composite | None
    #: (prefix size, prefix encodings by length, length by prefix bytes, max value units) of a
    #: variable field, for generated plans (:mod:`iso8583.plans`); None for fixed/composite fields.
    layout: Any = field(default=None, repr=False, compare=False)
    encode: Encoder = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    decode: Decoder = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    # -- derived properties ----------------------------------------------------------------------
    @property
    def fixed(self) -> bool:
        return self.length == "fixed"

    @property
    def sensitive(self) -> bool:
        """True when values of this field must never be shown in clear."""
        return self.number in SECRET_FIELDS or self.number in PAN_FIELDS

    def label(self) -> str:
        """``field 2`` or ``field 60.3``, used in every error message."""
        return f"field {self.number}"

    def format(self) -> str:
        """ISO-style format string, e.g. ``n..19 LL/bcd`` or ``b 8``."""
        size = f"{self.max}" if self.fixed else "." * len(self.length) + str(self.max)
        text = f"{self.type} {size}" if self.fixed else f"{self.type}{size}"
        enc = self.encoding
        text += f" [{enc}]" if self.fixed else f" [{enc}, {self.length} {self.prefix}]"
        return text

    def to_dict(self) -> dict[str, Any]:
        """The spec as data (what :func:`iso8583.load_spec` reads back)."""
        out: dict[str, Any] = {"name": self.name, "type": self.type, "max": self.max, "length": self.length,
                               "encoding": self.encoding}
        if not self.fixed:
            out["prefix"] = self.prefix
            if self.prefix_bytes:
                out["prefix_bytes"] = self.prefix_bytes
        if self.count:
            out["count"] = self.count
        if self.encoding == "bcd":
            out["pad"] = self.pad
        if self.composite is not None:
            out.update(self.composite.to_dict())
        return out

    # -- validation of the spec itself -------------------------------------------------------------
    def check(self) -> None:
        """Raise :class:`SpecError` if the combination of attributes is not meaningful."""
        where = f"field {self.number}"
        if self.type not in TYPES:
            raise SpecError(f"{where}: unknown type {self.type!r} (expected one of {', '.join(TYPES)})")
        if self.length not in LENGTH_DIGITS:
            raise SpecError(f"{where}: unknown length {self.length!r} (expected one of {', '.join(LENGTH_DIGITS)})")
        if self.prefix not in PREFIXES:
            raise SpecError(f"{where}: unknown prefix {self.prefix!r} (expected one of {', '.join(PREFIXES)})")
        if self.encoding not in ENCODINGS:
            raise SpecError(f"{where}: unknown encoding {self.encoding!r} (expected one of {', '.join(ENCODINGS)})")
        if self.count and self.count not in COUNTS:
            raise SpecError(f"{where}: unknown count {self.count!r} (expected one of {', '.join(COUNTS)})")
        if self.pad not in PADS:
            raise SpecError(f"{where}: unknown pad {self.pad!r} (expected one of {', '.join(PADS)})")
        if not isinstance(self.max, int) or isinstance(self.max, bool) or self.max < 0:
            raise SpecError(f"{where}: max must be a non-negative integer, got {self.max!r}")
        if self.fixed and self.max == 0:
            raise SpecError(f"{where}: a fixed field needs max > 0")
        if self.type == "b" and self.encoding == "bcd":
            raise SpecError(f"{where}: type b cannot use bcd encoding (use binary, or ascii for hex text)")
        if self.type != "b" and self.encoding == "binary":
            raise SpecError(f"{where}: encoding binary is only for type b (use bcd for packed numerics)")
        if self.encoding == "bcd" and self.type not in ("n", "z", "x+n"):
            raise SpecError(f"{where}: bcd encoding is only for n, z and x+n, not {self.type}")


# ------------------------------------------------------------------------------------------------
# helpers for error text
# ------------------------------------------------------------------------------------------------
#: Fields whose raw bytes never appear in error text: the masked ones, plus 55 (ICC data holds the
#: PAN in tag 5A and track 2 in tag 57) and 62 (working keys on sign-on).
_ERROR_MASKED = SECRET_FIELDS | PAN_FIELDS | {55, 62}


def _show(fs: FieldSpec, found: Any) -> str:
    """Found-value text for an error message: masked for sensitive fields, short otherwise."""
    top = fs.number if isinstance(fs.number, int) else int(str(fs.number).split(".")[0] or 0)
    if top in _ERROR_MASKED:
        if isinstance(found, str) and top in PAN_FIELDS and fs.number == top:
            return mask_value(top, found)
        if isinstance(found, (bytes, bytearray, str)):
            return f"<{len(found)} {'bytes' if isinstance(found, (bytes, bytearray)) else 'chars'} masked>"
        return f"<{type(found).__name__} masked>"
    text = scrub_text(repr(found))
    return text if len(text) <= 48 else text[:45] + "..."


def _first_bad(fs: FieldSpec, raw: bytes) -> tuple[int, str] | None:
    """(byte index, description) of the first byte that breaks ``fs``'s format, or None.

    Decode errors name this one byte rather than quoting the data: after a corrupted length the
    bytes under the cursor may belong to a neighbouring PAN, track or PIN block field.
    """
    if fs.type == "b":
        if fs.encoding == "binary":
            return None
        text = raw.decode("latin-1" if fs.encoding == "ascii" else "cp500")
        for i, ch in enumerate(text):
            if ch not in string.hexdigits:
                return i, f"{ch!r} (not a hex digit)"
        return None
    if fs.encoding == "bcd":
        start = 0
        if fs.type == "x+n":
            if not raw or raw[0] not in b"CD":
                return 0, f"0x{raw[0]:02X} (not a sign 'C'/'D')" if raw else None
            start = 1
        ok = "0123456789d" if fs.type == "z" else "0123456789"
        for i in range(start, len(raw)):
            for nibble in f"{raw[i]:02x}":
                if nibble not in ok and nibble != fs.pad[-1].lower():
                    return i, f"0x{raw[i]:02X} (nibble {nibble.upper()} is not a digit)"
        return None  # only a misplaced pad nibble: the description says where pads go
    text = raw.decode("latin-1" if fs.encoding == "ascii" else "cp500")
    check = _str_check(fs)
    if fs.type == "x+n":
        if not text or text[0] not in "CD":
            return (0, f"{text[0]!r} (not a sign 'C'/'D')") if text else None
        for i, ch in enumerate(text[1:], 1):
            if not (ch.isdigit() and ch.isascii()):
                return i, f"{ch!r} (not a digit)"
        return None
    for i, ch in enumerate(text):
        if not check(ch):
            return i, f"{ch!r} (0x{raw[i]:02X})"
    return None


def _dec_error(fs: FieldSpec, offset: int, expected: str, raw: bytes) -> DecodeError:
    bad = _first_bad(fs, raw)
    if bad is None:
        shown = f"{len(raw)} bytes that do not fit"
        return DecodeError(f"expected {expected} at offset {offset}, found {shown}", field=fs.number,
                           offset=offset, expected=expected, found=shown)
    index, what = bad
    if fs.number in _ERROR_MASKED or (isinstance(fs.number, str) and
                                      int(str(fs.number).split(".")[0] or 0) in _ERROR_MASKED):
        what = "a byte that does not fit (value masked)"
    return DecodeError(f"expected {expected} at offset {offset}, found {what} at offset {offset + index}",
                       field=fs.number, offset=offset, expected=expected, found=what)


def _enc_error(fs: FieldSpec, expected: str, found: Any) -> EncodeError:
    shown = _show(fs, found)
    return EncodeError(f"expected {expected}, got {shown}", field=fs.number, expected=expected, found=shown)


def _truncated(fs: FieldSpec, offset: int, need: int, have: int) -> DecodeError:
    return DecodeError(f"expected {need} bytes at offset {offset}, only {have} left (message truncated)",
                       field=fs.number, offset=offset, expected=f"{need} bytes", found=f"{have} bytes")


# ------------------------------------------------------------------------------------------------
# length prefixes
# ------------------------------------------------------------------------------------------------
def _prefix_size(fs: FieldSpec) -> int:
    digits = LENGTH_DIGITS[fs.length]
    if fs.prefix in ("ascii", "ebcdic"):
        return digits
    if fs.prefix == "bcd":
        return (digits + 1) // 2
    return fs.prefix_bytes or (1 if digits <= 2 else 2)


def _prefix_capacity(fs: FieldSpec) -> int:
    digits = LENGTH_DIGITS[fs.length]
    if fs.prefix == "binary":
        return min(256 ** _prefix_size(fs) - 1, 10**digits - 1 if fs.prefix_bytes == 0 else 256 ** fs.prefix_bytes - 1)
    return 10**digits - 1


def _prefix_bytes(fs: FieldSpec, value: int) -> bytes:
    size = _prefix_size(fs)
    digits = LENGTH_DIGITS[fs.length]
    if fs.prefix == "ascii":
        return str(value).zfill(digits).encode("ascii")
    if fs.prefix == "ebcdic":
        return str(value).zfill(digits).encode("cp500")
    if fs.prefix == "bcd":
        return bytes.fromhex(str(value).zfill(size * 2))
    return value.to_bytes(size, "big")


_PREFIX_TABLES: dict[tuple[str, str, int, int], tuple[list[bytes], dict[bytes, int]]] = {}


def _prefix_tables(fs: FieldSpec, max_prefix: int) -> tuple[list[bytes], dict[bytes, int]]:
    """All valid prefixes for 0..max_prefix, both directions (lookup beats parsing + validating).

    Shared between fields with the same prefix layout (read-only), so loading a spec stays cheap."""
    key = (fs.prefix, fs.length, _prefix_size(fs), max_prefix)
    tables = _PREFIX_TABLES.get(key)
    if tables is None:
        enc = [_prefix_bytes(fs, n) for n in range(max_prefix + 1)]
        tables = _PREFIX_TABLES[key] = (enc, {b: n for n, b in enumerate(enc)})
    return tables


# ------------------------------------------------------------------------------------------------
# data encodings: value <-> encoded bytes of a known size
# ------------------------------------------------------------------------------------------------
def _str_check(fs: FieldSpec) -> Callable[[str], bool]:
    """Character-class check on a str value (ASCII only)."""
    kind = fs.type
    if kind == "n":
        return lambda v: (v.isdigit() and v.isascii()) or not v
    if kind == "ans":
        return lambda v: v.isascii() and v.isprintable()
    if kind == "x+n":
        return lambda v: len(v) >= 1 and v[0] in "CD" and ((v[1:].isdigit() and v.isascii()) or len(v) == 1)
    match = re.compile(f"[{_CLASSES[kind]}]*").fullmatch
    if kind == "an":   # the usual value is all letters/digits: two str methods instead of a regex
        return lambda v: (v.isalnum() and v.isascii()) or match(v) is not None
    if kind == "a":
        return lambda v: (v.isalpha() and v.isascii()) or match(v) is not None
    return lambda v: match(v) is not None


def _units_to_bytes(fs: FieldSpec) -> Callable[[int], int]:
    """Encoded byte size of a value of ``units`` value units."""
    if fs.type == "b":
        return (lambda u: u) if fs.encoding == "binary" else (lambda u: 2 * u)
    if fs.encoding == "bcd":
        if fs.type == "x+n":
            return lambda u: 1 + (u // 2) if u else 0  # sign byte + ceil((u-1)/2)
        return lambda u: (u + 1) // 2
    return lambda u: u


@dataclass(slots=True)
class _DataCodec:
    """Value <-> bytes for one field, without the length prefix.

    ``enc(value) -> (raw, units)`` validates; ``dec(raw, units) -> value | None`` (None when the bytes
    are not valid for the type). ``units`` is ``None`` on decode when the prefix counted bytes.
    """

    enc: Callable[[Any], tuple[bytes, int]]
    dec: Callable[[bytes, int | None], Any]


def _text_codec(fs: FieldSpec) -> _DataCodec:
    check = _str_check(fs)
    codec = "ascii" if fs.encoding == "ascii" else "cp500"
    expected = _DESCRIBE_CLASS[fs.type]

    def enc(value: Any) -> tuple[bytes, int]:
        if value.__class__ is not str:
            raise _enc_error(fs, f"str of {expected}", value)
        if not check(value):
            raise _enc_error(fs, expected, value)
        return value.encode(codec), len(value)

    if codec == "ascii" and fs.type == "n":
        def dec(raw: bytes, units: int | None) -> Any:
            if raw.isdigit() or not raw:
                return raw.decode("ascii")
            return None
    elif codec == "ascii" and fs.type == "ans":
        def dec(raw: bytes, units: int | None) -> Any:
            text = raw.decode("latin-1")
            return text if text.isascii() and text.isprintable() else None
    else:
        def dec(raw: bytes, units: int | None) -> Any:
            text = raw.decode("latin-1" if codec == "ascii" else codec)
            return text if check(text) else None

    return _DataCodec(enc, dec)


def _bcd_codec(fs: FieldSpec) -> _DataCodec:
    """Packed BCD for n, z (track data, '=' packed as nibble D) and x+n (sign byte + digits)."""
    check = _str_check(fs)
    left = fs.pad.startswith("left")
    pad_nibble = fs.pad[-1].lower()
    expected = _DESCRIBE_CLASS[fs.type]
    is_z = fs.type == "z"
    is_xn = fs.type == "x+n"
    pad_f = pad_nibble == "f"

    def pack(digits: str) -> bytes:
        if len(digits) & 1:
            digits = pad_nibble + digits if left else digits + pad_nibble
        return bytes.fromhex(digits)

    def enc(value: Any) -> tuple[bytes, int]:
        if value.__class__ is not str:
            raise _enc_error(fs, f"str of {expected}", value)
        if not check(value):
            raise _enc_error(fs, expected, value)
        if is_xn:
            return value[0].encode("ascii") + pack(value[1:]), len(value)
        if is_z:
            return pack(value.replace("=", "D")), len(value)
        return pack(value), len(value)

    def unpack(raw: bytes, ndigits: int | None) -> str | None:
        text = raw.hex()
        if ndigits is None:  # prefix counted bytes: strip an F pad if the field uses one
            if pad_f and text:
                if left and text[0] == "f":
                    text = text[1:]
                elif not left and text[-1] == "f":
                    text = text[:-1]
        elif len(text) != ndigits:
            if len(text) != ndigits + 1 or text[0 if left else -1] != pad_nibble:
                return None
            text = text[1:] if left else text[:-1]
        if is_z:
            text = text.replace("d", "=")
            return text if check(text) else None
        return text if (text.isdigit() or not text) else None

    if is_xn:
        def dec(raw: bytes, units: int | None) -> Any:
            if not raw or raw[0] not in b"CD":
                return None
            digits = unpack(raw[1:], None if units is None else units - 1)
            return None if digits is None else chr(raw[0]) + digits
    else:
        def dec(raw: bytes, units: int | None) -> Any:
            return unpack(raw, units)

    return _DataCodec(enc, dec)


def _binary_codec(fs: FieldSpec) -> _DataCodec:
    hex_text = fs.encoding in ("ascii", "ebcdic")
    codec = "ascii" if fs.encoding == "ascii" else "cp500"

    if not hex_text:
        def enc(value: Any) -> tuple[bytes, int]:
            if value.__class__ is not bytes:
                if isinstance(value, (bytearray, memoryview)):
                    value = bytes(value)
                else:
                    raise _enc_error(fs, "bytes", value)
            return value, len(value)

        def dec(raw: bytes, units: int | None) -> Any:
            return raw
    else:
        def enc(value: Any) -> tuple[bytes, int]:
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise _enc_error(fs, "bytes", value)
            return bytes(value).hex().upper().encode(codec), len(value)

        def dec(raw: bytes, units: int | None) -> Any:
            text = raw.decode(codec) if codec != "ascii" else raw.decode("latin-1")
            if len(text) & 1 or not text.isascii():
                return None
            try:
                return unhexlify(text)
            except (BinasciiError, ValueError):
                return None

    return _DataCodec(enc, dec)


def data_codec(fs: FieldSpec) -> _DataCodec:
    if fs.type == "b":
        return _binary_codec(fs)
    if fs.encoding == "bcd":
        return _bcd_codec(fs)
    return _text_codec(fs)


# ------------------------------------------------------------------------------------------------
# compile a field
# ------------------------------------------------------------------------------------------------
def compile_field(fs: FieldSpec) -> FieldSpec:
    """Attach ``fs.encode`` / ``fs.decode`` closures; returns ``fs`` (already checked)."""
    fs.check()
    if not fs.count:
        fs.count = "nibbles" if fs.encoding == "bcd" else "bytes"
    if fs.composite is not None:
        from .composite import compile_composite

        compile_composite(fs)
        return fs
    codec = data_codec(fs)
    fs.encode, fs.decode = (_compile_fixed if fs.fixed else _compile_variable)(fs, codec)
    return fs


def _unit_name(fs: FieldSpec) -> str:
    if fs.type == "b":
        return "bytes"
    if fs.type in ("n", "z") or fs.encoding == "bcd":
        return "digits"
    return "characters"


def _compile_fixed(fs: FieldSpec, codec: _DataCodec) -> tuple[Encoder, Decoder]:
    units = fs.max + (1 if fs.type == "x+n" else 0)
    size = _units_to_bytes(fs)(units)
    data_enc, data_dec = codec.enc, codec.dec
    unit_name = _unit_name(fs)
    cls_desc = _DESCRIBE_CLASS[fs.type]
    expected_desc = (f"{fs.max} {unit_name} ({fs.encoding})" if cls_desc == unit_name
                     else f"{fs.max} {unit_name} of {cls_desc} ({fs.encoding})")

    def encode(value: Any) -> bytes:
        raw, n = data_enc(value)
        if n != units:
            raise _enc_error(fs, f"exactly {fs.max} {unit_name} (fixed length)", value)
        return raw

    def decode(data: bytes, pos: int) -> tuple[Any, int]:
        end = pos + size
        raw = data[pos:end]
        if len(raw) < size:
            raise _truncated(fs, pos, size, len(raw))
        value = data_dec(raw, units)
        if value is None:
            raise _dec_error(fs, pos, expected_desc, raw)
        return value, end

    return _fast_fixed(fs, encode, decode, units, size)


def _fast_fixed(fs: FieldSpec, slow_encode: Encoder, slow_decode: Decoder, units: int,
                size: int) -> tuple[Encoder, Decoder]:
    """Hot paths for fixed fields: straight-line checks, falling back to the slow (precise-error) path."""
    kind, enc = fs.type, fs.encoding
    if enc == "ascii" and kind == "n":
        def encode(value: Any) -> bytes:
            if value.__class__ is str and len(value) == units and value.isdigit() and value.isascii():
                return value.encode("ascii")
            return slow_encode(value)

        def decode(data: bytes, pos: int) -> tuple[Any, int]:
            end = pos + size
            raw = data[pos:end]
            if raw.isdigit() and len(raw) == size:
                return raw.decode("ascii"), end
            return slow_decode(data, pos)

    elif enc == "ascii" and kind in ("a", "an", "ans", "as", "ns", "z"):
        check = _str_check(fs)

        def encode(value: Any) -> bytes:
            if value.__class__ is str and len(value) == units and check(value):
                return value.encode("ascii")
            return slow_encode(value)

        def decode(data: bytes, pos: int) -> tuple[Any, int]:
            end = pos + size
            raw = data[pos:end]
            if len(raw) == size:
                text = raw.decode("latin-1")
                if check(text):
                    return text, end
            return slow_decode(data, pos)

    elif enc == "bcd" and kind == "n":
        odd = units & 1
        left = fs.pad.startswith("left")
        pad_char = fs.pad[-1].lower()

        def encode(value: Any) -> bytes:
            if value.__class__ is str and len(value) == units and value.isdigit() and value.isascii():
                if odd:
                    return bytes.fromhex(pad_char + value if left else value + pad_char)
                return bytes.fromhex(value)
            return slow_encode(value)

        def decode(data: bytes, pos: int) -> tuple[Any, int]:
            end = pos + size
            raw = data[pos:end]
            if len(raw) == size:
                text = raw.hex()
                if odd:
                    if left:
                        if text[0] == pad_char:
                            text = text[1:]
                            if text.isdigit():
                                return text, end
                    elif text[-1] == pad_char:
                        text = text[:-1]
                        if text.isdigit():
                            return text, end
                elif text.isdigit():
                    return text, end
            return slow_decode(data, pos)

    elif kind == "b" and enc == "binary":
        def encode(value: Any) -> bytes:
            if value.__class__ is bytes and len(value) == units:
                return value
            return slow_encode(value)

        def decode(data: bytes, pos: int) -> tuple[Any, int]:
            end = pos + size
            raw = data[pos:end]
            if len(raw) == size:
                return raw, end
            return slow_decode(data, pos)

    elif kind == "b" and enc == "ascii":
        def encode(value: Any) -> bytes:
            if value.__class__ is bytes and len(value) == units:
                return hexlify(value).upper()
            return slow_encode(value)

        def decode(data: bytes, pos: int) -> tuple[Any, int]:
            end = pos + size
            raw = data[pos:end]
            if len(raw) == size:
                try:
                    return unhexlify(raw), end
                except BinasciiError:
                    pass
            return slow_decode(data, pos)

    else:
        return slow_encode, slow_decode
    return encode, decode


def _compile_variable(fs: FieldSpec, codec: _DataCodec) -> tuple[Encoder, Decoder]:
    by_bytes = fs.count == "bytes"
    to_bytes = _units_to_bytes(fs)
    max_units = fs.max + (1 if fs.type == "x+n" else 0)
    max_prefix = to_bytes(max_units) if by_bytes else max_units
    capacity = _prefix_capacity(fs)
    if max_prefix > capacity:
        raise SpecError(f"field {fs.number}: max {fs.max} needs a length of {max_prefix}, "
                        f"which does not fit a {fs.length} {fs.prefix} prefix (at most {capacity})")
    plen = _prefix_size(fs)
    penc, pdec = _prefix_tables(fs, max_prefix)
    data_enc = codec.enc
    unit_name = _unit_name(fs)
    count_name = "bytes" if by_bytes else unit_name
    cls_desc = _DESCRIBE_CLASS[fs.type]
    prefix_desc = f"{fs.length} length prefix ({plen} {fs.prefix} bytes, at most {max_prefix})"
    binary_b = fs.type == "b" and fs.encoding == "binary"
    hex_b = fs.type == "b" and not binary_b

    def encode(value: Any) -> bytes:
        raw, n = data_enc(value)
        if n > max_units:
            raise _enc_error(fs, f"at most {fs.max} {unit_name}", f"{n} {unit_name}")
        return penc[len(raw) if by_bytes else n] + raw

    slow_decode = _compile_variable_generic_decode(fs, codec, plen, pdec, by_bytes, to_bytes,
                                                   count_name, cls_desc, prefix_desc, hex_b)
    fs.layout = (plen, penc, pdec, max_units)
    return _fast_variable(fs, encode, slow_decode, plen, penc, pdec, max_units, by_bytes)


def _fast_variable(fs: FieldSpec, slow_encode: Encoder, slow_decode: Decoder, plen: int, penc: list[bytes],
                   pdec: dict[bytes, int], max_units: int, by_bytes: bool) -> tuple[Encoder, Decoder]:
    """Hot paths for variable fields (any prefix encoding: prefixes are table lookups), falling back
    to the slow path, which produces the precise error, whenever anything is off."""
    kind, enc = fs.type, fs.encoding
    if enc == "ascii" and kind in ("n", "a", "an", "ans", "as", "ns", "z"):
        numeric = kind == "n"
        check = _str_check(fs)

        def encode(value: Any) -> bytes:
            if value.__class__ is str and len(value) <= max_units and (
                    ((value.isdigit() and value.isascii()) or not value) if numeric else check(value)):
                return penc[len(value)] + value.encode("ascii")
            return slow_encode(value)

        def decode(data: bytes, pos: int) -> tuple[Any, int]:
            start = pos + plen
            n = pdec.get(data[pos:start])
            if n is not None:
                end = start + n
                raw = data[start:end]
                if len(raw) == n:
                    if numeric:
                        if raw.isdigit() or not n:
                            return raw.decode("ascii"), end
                    else:
                        text = raw.decode("latin-1")
                        if check(text):
                            return text, end
            return slow_decode(data, pos)

    elif enc == "bcd" and kind == "n" and not by_bytes:
        left = fs.pad.startswith("left")
        pad_char = fs.pad[-1].lower()

        def encode(value: Any) -> bytes:
            if value.__class__ is str and len(value) <= max_units and ((value.isdigit() and value.isascii()) or not value):
                n = len(value)
                if n & 1:
                    return penc[n] + bytes.fromhex(pad_char + value if left else value + pad_char)
                return penc[n] + bytes.fromhex(value)
            return slow_encode(value)

        def decode(data: bytes, pos: int) -> tuple[Any, int]:
            start = pos + plen
            n = pdec.get(data[pos:start])
            if n is not None:
                size = (n + 1) >> 1
                end = start + size
                raw = data[start:end]
                if len(raw) == size:
                    text = raw.hex()
                    if n & 1:
                        if left:
                            if text[0] == pad_char:
                                text = text[1:]
                                if text.isdigit():
                                    return text, end
                        elif text[-1] == pad_char:
                            text = text[:-1]
                            if text.isdigit():
                                return text, end
                    elif text.isdigit() or not n:
                        return text, end
            return slow_decode(data, pos)

    elif enc == "bcd" and kind == "z" and not by_bytes:
        left = fs.pad.startswith("left")
        pad_char = fs.pad[-1].lower()
        check = _str_check(fs)

        def encode(value: Any) -> bytes:
            if value.__class__ is str and len(value) <= max_units and check(value):
                n = len(value)
                digits = value.replace("=", "D")
                if n & 1:
                    digits = pad_char + digits if left else digits + pad_char
                return penc[n] + bytes.fromhex(digits)
            return slow_encode(value)

        def decode(data: bytes, pos: int) -> tuple[Any, int]:
            start = pos + plen
            n = pdec.get(data[pos:start])
            if n is not None:
                size = (n + 1) >> 1
                end = start + size
                raw = data[start:end]
                if len(raw) == size:
                    text = raw.hex()
                    if n & 1:
                        if text[0 if left else -1] != pad_char:
                            return slow_decode(data, pos)
                        text = text[1:] if left else text[:-1]
                    text = text.replace("d", "=")
                    if check(text):
                        return text, end
            return slow_decode(data, pos)

    elif kind == "b" and enc == "binary":
        def encode(value: Any) -> bytes:
            if value.__class__ is bytes and len(value) <= max_units:
                return penc[len(value)] + value
            return slow_encode(value)

        def decode(data: bytes, pos: int) -> tuple[Any, int]:
            start = pos + plen
            n = pdec.get(data[pos:start])
            if n is not None:
                end = start + n
                raw = data[start:end]
                if len(raw) == n:
                    return raw, end
            return slow_decode(data, pos)

    elif kind == "b" and enc == "ascii":
        scale = 2 if by_bytes else 1
        per_unit = 1 if by_bytes else 2

        def encode(value: Any) -> bytes:
            if value.__class__ is bytes and len(value) <= max_units:
                return penc[len(value) * scale] + hexlify(value).upper()
            return slow_encode(value)

        def decode(data: bytes, pos: int) -> tuple[Any, int]:
            start = pos + plen
            n = pdec.get(data[pos:start])
            if n is not None:
                end = start + n * per_unit
                raw = data[start:end]
                if len(raw) == n * per_unit:
                    try:
                        return unhexlify(raw), end
                    except BinasciiError:
                        pass
            return slow_decode(data, pos)

    else:
        return slow_encode, slow_decode
    return encode, decode


def _compile_variable_generic_decode(fs: FieldSpec, codec: _DataCodec, plen: int, pdec: dict[bytes, int],
                                     by_bytes: bool, to_bytes: Callable[[int], int], count_name: str,
                                     cls_desc: str, prefix_desc: str, hex_b: bool) -> Decoder:
    """The fully checked decoder, used by the fast paths to produce the precise error."""
    data_dec = codec.dec

    def decode(data: bytes, pos: int) -> tuple[Any, int]:
        start = pos + plen
        head = data[pos:start]
        n = pdec.get(head)
        if n is None:
            if len(head) < plen:
                raise _truncated(fs, pos, plen, len(head))
            raise DecodeError(f"expected {prefix_desc} at offset {pos}, found {head.hex().upper()}",
                              field=fs.number, offset=pos, expected=prefix_desc, found=head.hex().upper())
        if by_bytes:
            size, units = n, None
            if hex_b and n & 1:
                raise DecodeError(f"length {n} at offset {pos} is odd for hex-encoded binary data",
                                  field=fs.number, offset=pos, expected="an even count of hex digits",
                                  found=str(n))
        else:
            size, units = to_bytes(n), n
        end = start + size
        raw = data[start:end]
        if len(raw) < size:
            raise _truncated(fs, start, size, len(raw))
        value = data_dec(raw, units)
        if value is None:
            raise _dec_error(fs, start, f"{n} {count_name} of {cls_desc} ({fs.encoding})", raw)
        return value, end

    return decode
