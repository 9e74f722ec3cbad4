"""BER-TLV (ISO/IEC 8825-1 as profiled by EMV Book 3 Annex B) for field 55, ICC system related data.

Why a module of its own: field 55 is the one field whose inside matters to both sides — the host reads
the cryptogram (9F26) and TVR (95), the codec masks the track-2 equivalent (57) and PAN (5A) when it
describes a message — and a chip terminal in the field sends whatever its kernel builds, so decoding
must be strict (a clear :class:`TLVError` with the byte offset) and never crash on garbage.

Representation: :class:`TLV` holds a tag as upper-case hex (``"9F26"``), the value bytes, and for
constructed tags (bit 6 of the first tag byte set, e.g. ``70``, ``77``, ``E1``) the decoded children.
``decode(encode(items)) == items`` holds for any items; ``encode(decode(b)) == b`` holds for any
``b`` that uses minimal length encodings and no ``00`` padding (which is what EMV kernels produce).

>>> items = decode(bytes.fromhex("9F2608A1B2C3D4E5F60718" "9F270180"))
>>> [(i.tag, i.value.hex().upper()) for i in items]
[('9F26', 'A1B2C3D4E5F60718'), ('9F27', '80')]
>>> tag_name("9F27")
'Cryptogram Information Data'
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from .errors import DecodeError, EncodeError
from .mask import SECRET_EMV_TAGS, mask_pan

__all__ = [
    "EMV_TAGS",
    "SENSITIVE_TAGS",
    "TLV",
    "TLVError",
    "decode",
    "describe",
    "encode",
    "find",
    "from_dict",
    "is_constructed",
    "iter_flat",
    "mask_tag_value",
    "normalize_tag",
    "summary",
    "tag_name",
    "to_dict",
]

#: Deepest nesting of constructed tags accepted; EMV uses at most 3 levels, garbage can claim hundreds.
MAX_DEPTH = 16
#: Longest tag accepted, in bytes (EMV tags are 1–3 bytes; ISO 8825 allows more, nobody sends them).
MAX_TAG_BYTES = 4
#: Longest long-form length field accepted (81 xx .. 84 xxxxxxxx).
MAX_LENGTH_BYTES = 4


class TLVError(DecodeError):
    """Malformed BER-TLV: says which tag (if known), at which byte offset, and what was wrong.

    A subclass of :class:`iso8583.DecodeError`, so the codec can let it escape from ``decode`` of field
    55 unchanged. ``offset`` is absolute: relative to the start of the data handed to :func:`decode`
    plus its ``base_offset`` (the codec passes the field's offset in the message). Values of sensitive
    tags never appear in the text.
    """

    def __init__(self, message: str, *, offset: int, tag: str | None = None, field: int | str | None = None,
                 expected: str | None = None, found: str | None = None) -> None:
        self.tag = tag
        self.detail = message
        text = f"BER-TLV tag {tag} at offset {offset}: {message}" if tag else \
            f"BER-TLV at offset {offset}: {message}"
        super().__init__(text, field=field, offset=offset, expected=expected, found=found)


#: Names of the EMV data objects seen in field 55 (EMV Book 3 Annex A, plus common scheme tags).
EMV_TAGS: dict[str, str] = {
    "42": "Issuer Identification Number (IIN)",
    "4F": "Application Identifier (AID) - card",
    "50": "Application Label",
    "56": "Track 1 Equivalent Data",
    "57": "Track 2 Equivalent Data",
    "5A": "Application Primary Account Number (PAN)",
    "5F20": "Cardholder Name",
    "5F24": "Application Expiration Date",
    "5F25": "Application Effective Date",
    "5F28": "Issuer Country Code",
    "5F2A": "Transaction Currency Code",
    "5F2D": "Language Preference",
    "5F30": "Service Code",
    "5F34": "Application PAN Sequence Number",
    "5F36": "Transaction Currency Exponent",
    "61": "Application Template",
    "6F": "File Control Information (FCI) Template",
    "70": "READ RECORD Response Message Template",
    "71": "Issuer Script Template 1",
    "72": "Issuer Script Template 2",
    "77": "Response Message Template Format 2",
    "80": "Response Message Template Format 1",
    "82": "Application Interchange Profile",
    "84": "Dedicated File (DF) Name",
    "86": "Issuer Script Command",
    "87": "Application Priority Indicator",
    "88": "Short File Identifier (SFI)",
    "89": "Authorisation Code",
    "8A": "Authorisation Response Code",
    "8C": "Card Risk Management Data Object List 1 (CDOL1)",
    "8D": "Card Risk Management Data Object List 2 (CDOL2)",
    "8E": "Cardholder Verification Method (CVM) List",
    "8F": "Certification Authority Public Key Index",
    "91": "Issuer Authentication Data",
    "94": "Application File Locator (AFL)",
    "95": "Terminal Verification Results",
    "99": "Transaction Personal Identification Number (PIN) Data",
    "9A": "Transaction Date",
    "9B": "Transaction Status Information",
    "9C": "Transaction Type",
    "9D": "Directory Definition File (DDF) Name",
    "9F01": "Acquirer Identifier",
    "9F02": "Amount, Authorised (Numeric)",
    "9F03": "Amount, Other (Numeric)",
    "9F06": "Application Identifier (AID) - terminal",
    "9F07": "Application Usage Control",
    "9F08": "Application Version Number - card",
    "9F09": "Application Version Number - terminal",
    "9F0B": "Cardholder Name Extended",
    "9F0D": "Issuer Action Code - Default",
    "9F0E": "Issuer Action Code - Denial",
    "9F0F": "Issuer Action Code - Online",
    "9F10": "Issuer Application Data",
    "9F11": "Issuer Code Table Index",
    "9F12": "Application Preferred Name",
    "9F15": "Merchant Category Code",
    "9F16": "Merchant Identifier",
    "9F17": "PIN Try Counter",
    "9F1A": "Terminal Country Code",
    "9F1C": "Terminal Identification",
    "9F1E": "Interface Device (IFD) Serial Number",
    "9F1F": "Track 1 Discretionary Data",
    "9F20": "Track 2 Discretionary Data",
    "9F21": "Transaction Time",
    "9F26": "Application Cryptogram",
    "9F27": "Cryptogram Information Data",
    "9F33": "Terminal Capabilities",
    "9F34": "Cardholder Verification Method (CVM) Results",
    "9F35": "Terminal Type",
    "9F36": "Application Transaction Counter (ATC)",
    "9F37": "Unpredictable Number",
    "9F39": "Point-of-Service (POS) Entry Mode",
    "9F40": "Additional Terminal Capabilities",
    "9F41": "Transaction Sequence Counter",
    "9F42": "Application Currency Code",
    "9F44": "Application Currency Exponent",
    "9F4C": "ICC Dynamic Number",
    "9F4E": "Merchant Name and Location",
    "9F53": "Transaction Category Code",
    "9F5B": "Issuer Script Results",
    "9F63": "Card Product Identification Information",
    "9F66": "Terminal Transaction Qualifiers (TTQ)",
    "9F6B": "Track 2 Data (contactless)",
    "9F6C": "Card Transaction Qualifiers (CTQ)",
    "9F6E": "Form Factor Indicator / Third Party Data",
    "9F74": "VLP Issuer Authorisation Code",
    "9F7C": "Customer Exclusive Data",
    "A5": "File Control Information (FCI) Proprietary Template",
    "BF0C": "File Control Information (FCI) Issuer Discretionary Data",
    "DF31": "Issuer Script Results (UnionPay)",
}

#: Tags whose value is cardholder data or sensitive authentication data: never shown in clear.
#: A superset of :data:`iso8583.mask.SECRET_EMV_TAGS` (track equivalents, PAN, name, expiry, service
#: code, PIN data, discretionary track data).
SENSITIVE_TAGS: frozenset[str] = frozenset(SECRET_EMV_TAGS | {"56", "57", "5A", "5F20", "5F24", "5F30", "99",
                                                              "9F0B", "9F1F", "9F20", "9F6B"})


@dataclass(frozen=True)
class TLV:
    """One BER-TLV data object.

    ``value`` is the raw value; for a constructed tag ``children`` holds its decoded contents (and
    ``value`` their encoding). ``offset`` (where the tag started in the decoded data) is informative
    and ignored by ``==``. ``repr`` masks the value of sensitive tags.
    """

    tag: str
    value: bytes = b""
    children: tuple[TLV, ...] | None = None
    offset: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tag", normalize_tag(self.tag))
        if self.children is not None:
            kids = tuple(self.children)
            object.__setattr__(self, "children", kids)
            if not is_constructed(self.tag):
                raise EncodeError(f"BER-TLV tag {self.tag} is primitive but was given children")
            if not self.value:
                object.__setattr__(self, "value", encode(kids))
        elif not isinstance(self.value, (bytes, bytearray)):
            raise EncodeError(f"BER-TLV tag {self.tag}: value must be bytes, got {type(self.value).__name__}")
        else:
            object.__setattr__(self, "value", bytes(self.value))

    @property
    def constructed(self) -> bool:
        return is_constructed(self.tag)

    @property
    def name(self) -> str:
        return tag_name(self.tag)

    def __repr__(self) -> str:
        shown = mask_tag_value(self.tag, self.value) if self.children is None else \
            "[" + ", ".join(repr(c) for c in self.children) + "]"
        return f"TLV({self.tag}, {shown})"


# -- tags --------------------------------------------------------------------------------------------

def normalize_tag(tag: str | int | bytes) -> str:
    """``"9f26"``, ``0x9F26`` or ``b"\\x9f\\x26"`` -> ``"9F26"``; rejects what is not a well-formed tag."""
    if isinstance(tag, int):
        if tag < 0:
            raise EncodeError(f"BER-TLV tag must be non-negative, got {tag}")
        raw = tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")
    elif isinstance(tag, (bytes, bytearray)):
        raw = bytes(tag)
    elif isinstance(tag, str):
        try:
            raw = bytes.fromhex(tag)
        except ValueError:
            raise EncodeError(f"BER-TLV tag must be hex, got {tag!r}") from None
    else:
        raise EncodeError(f"BER-TLV tag must be str, int or bytes, got {type(tag).__name__}")
    if not raw:
        raise EncodeError("BER-TLV tag is empty")
    try:
        parsed, end = _read_tag(raw, 0, 0)
    except TLVError as exc:
        raise EncodeError(f"malformed BER-TLV tag {raw.hex().upper()}: {exc.detail}") from None
    if end != len(raw):
        raise EncodeError(f"malformed BER-TLV tag {raw.hex().upper()}: tag ends after {end} byte(s)")
    return parsed


def is_constructed(tag: str) -> bool:
    """Bit 6 of the first tag byte: the value is itself a series of TLVs (templates 70, 77, E1 ...)."""
    return bool(int(tag[:2], 16) & 0x20)


def tag_name(tag: str | int | bytes) -> str:
    """EMV name of a tag, or ``"Unknown tag"``; accepts any form :func:`normalize_tag` accepts."""
    return EMV_TAGS.get(normalize_tag(tag), "Unknown tag")


# -- decoding ----------------------------------------------------------------------------------------

def _read_tag(data: bytes, pos: int, base: int) -> tuple[str, int]:
    start = pos
    first = data[pos]
    pos += 1
    if first & 0x1F == 0x1F:  # tag number continues in following bytes while bit 8 is set
        while True:
            if pos >= len(data):
                raise TLVError(f"multi-byte tag {data[start:pos].hex().upper()} is truncated",
                               offset=base + start, expected="another tag byte", found="end of data")
            byte = data[pos]
            pos += 1
            if pos - start > MAX_TAG_BYTES:
                raise TLVError(f"tag longer than {MAX_TAG_BYTES} bytes", offset=base + start,
                               found=data[start:pos].hex().upper())
            if not byte & 0x80:
                break
    return data[start:pos].hex().upper(), pos


def _read_length(data: bytes, pos: int, base: int, tag: str, tag_offset: int) -> tuple[int, int]:
    if pos >= len(data):
        raise TLVError("length is missing", offset=base + pos, tag=tag, expected="a length byte",
                       found="end of data")
    first = data[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    count = first & 0x7F
    if count == 0:
        raise TLVError("indefinite length (80) is not allowed in EMV data", offset=base + pos - 1, tag=tag,
                       expected="definite length", found="80")
    if count > MAX_LENGTH_BYTES:
        raise TLVError(f"long-form length uses {count} bytes (at most {MAX_LENGTH_BYTES} accepted)",
                       offset=base + pos - 1, tag=tag, found=f"{first:02X}")
    if pos + count > len(data):
        raise TLVError(f"long-form length needs {count} bytes, {len(data) - pos} left", offset=base + pos - 1,
                       tag=tag, expected=f"{count} length bytes", found=f"{len(data) - pos}")
    return int.from_bytes(data[pos:pos + count], "big"), pos + count


def _decode(data: bytes, start: int, end: int, base: int, depth: int, skip_padding: bool) -> list[TLV]:
    if depth > MAX_DEPTH:
        raise TLVError(f"constructed tags nested deeper than {MAX_DEPTH} levels", offset=base + start)
    items: list[TLV] = []
    pos = start
    view = data[:end]
    while pos < end:
        if skip_padding and view[pos] == 0x00:  # EMV Book 3 B1: 00 bytes may pad between objects
            pos += 1
            continue
        tag_offset = pos
        if view[pos] == 0x00:
            raise TLVError("tag 00 is not a valid tag", offset=base + pos, found="00")
        tag, pos = _read_tag(view, pos, base)
        length, pos = _read_length(view, pos, base, tag, tag_offset)
        if pos + length > end:
            raise TLVError(f"value of {length} bytes runs past the end of the data ({end - pos} bytes left)",
                           offset=base + tag_offset, tag=tag, expected=f"{length} bytes",
                           found=f"{end - pos} bytes")
        value = bytes(view[pos:pos + length])
        children = None
        if is_constructed(tag):
            children = tuple(_decode(data, pos, pos + length, base, depth + 1, skip_padding))
        items.append(TLV(tag, value, children, base + tag_offset))
        pos += length
    return items


def decode(data: bytes | bytearray | memoryview, *, base_offset: int = 0, field: int | str | None = None,
           skip_padding: bool = True) -> list[TLV]:
    """Decode a series of BER-TLV objects (constructed tags recursively).

    ``base_offset`` is added to every offset (in :class:`TLV` and :class:`TLVError`) so that a caller
    decoding field 55 can report positions in the whole message; ``field`` is put on errors.
    ``skip_padding`` skips ``00`` filler bytes between objects, as EMV Book 3 Annex B allows.
    Raises only :class:`TLVError`.
    """
    try:
        raw = bytes(data)
    except TypeError:
        raise TLVError(f"expected bytes, got {type(data).__name__}", offset=base_offset, field=field) from None
    try:
        return _decode(raw, 0, len(raw), base_offset, 0, skip_padding)
    except TLVError as exc:
        if field is not None and exc.field is None:
            raise TLVError(exc.detail, offset=exc.offset or 0, tag=exc.tag, field=field,
                           expected=exc.expected, found=exc.found) from None
        raise


def iter_flat(items: Iterable[TLV]) -> Iterator[TLV]:
    """Every object, depth first (a constructed tag before its children)."""
    for item in items:
        yield item
        if item.children:
            yield from iter_flat(item.children)


def find(items: Iterable[TLV] | bytes, tag: str | int | bytes) -> TLV | None:
    """First object with ``tag`` anywhere in the tree (``items`` may be raw bytes), or ``None``."""
    wanted = normalize_tag(tag)
    tree = decode(items) if isinstance(items, (bytes, bytearray, memoryview)) else items
    return next((i for i in iter_flat(tree) if i.tag == wanted), None)


def to_dict(data: bytes | Iterable[TLV]) -> dict[str, bytes]:
    """Primitive tags -> value, flattened through templates; the first occurrence of a tag wins."""
    tree = decode(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    out: dict[str, bytes] = {}
    for item in iter_flat(tree):
        if item.children is None:
            out.setdefault(item.tag, item.value)
    return out


# -- encoding ----------------------------------------------------------------------------------------

def _encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    size = (length.bit_length() + 7) // 8
    if size > MAX_LENGTH_BYTES:
        raise EncodeError(f"BER-TLV value of {length} bytes is too long")
    return bytes([0x80 | size]) + length.to_bytes(size, "big")


def encode(items: Iterable[TLV | tuple[str | int | bytes, bytes | Iterable]] | Mapping[str, bytes]) -> bytes:
    """Encode TLV objects, ``(tag, value)`` pairs or a ``{tag: value}`` mapping, with minimal lengths.

    A constructed tag is encoded from its ``children`` when it has them, else from its raw value.
    """
    if isinstance(items, Mapping):
        items = list(items.items())
    out = bytearray()
    for item in items:
        if not isinstance(item, TLV):
            tag, value = item
            if isinstance(value, (bytes, bytearray)):
                item = TLV(normalize_tag(tag), bytes(value))
            else:
                item = TLV(normalize_tag(tag), b"", tuple(value))
        value = encode(item.children) if item.children is not None else item.value
        out += bytes.fromhex(item.tag)
        out += _encode_length(len(value))
        out += value
    return bytes(out)


def from_dict(values: Mapping[str | int | bytes, bytes]) -> bytes:
    """``{"9F26": b"...", "9F27": b"\\x80"}`` -> BER-TLV bytes, in the mapping's order."""
    return encode([(normalize_tag(tag), value) for tag, value in values.items()])


# -- masking / describe --------------------------------------------------------------------------------

def mask_tag_value(tag: str, value: bytes) -> str:
    """Text safe to show for ``value`` of ``tag``: hex for ordinary tags; for 5A the PAN with first 6 /
    last 4; for other sensitive tags only the length."""
    tag = normalize_tag(tag)
    if tag == "5A":
        digits = value.hex().upper().rstrip("F")
        return mask_pan(digits) if digits.isdigit() else f"<masked {len(value)} bytes>"
    if tag in SENSITIVE_TAGS:
        return f"<masked {len(value)} bytes>"
    return value.hex().upper()


def describe(data: bytes | Iterable[TLV], *, indent: str = "  ", strict: bool = True) -> str:
    """One line per object — tag, name, length, masked value — children indented under templates.

    Safe to print, log or put in a report: sensitive tags (:data:`SENSITIVE_TAGS`) are masked.
    Raises :class:`TLVError` if ``data`` is malformed bytes, unless ``strict=False``: then the text
    says where it is malformed instead (for describing captured traffic, which may be garbage).
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            tree = decode(data)
        except TLVError as exc:
            if strict:
                raise
            return f"<malformed BER-TLV, {len(data)} bytes: {exc.detail} at offset {exc.offset}>"
    else:
        tree = list(data)
    lines: list[str] = []

    def walk(items: Iterable[TLV], level: int) -> None:
        for item in items:
            head = f"{indent * level}{item.tag} {item.name} ({len(item.value)})"
            if item.children is not None:
                lines.append(head + ":")
                walk(item.children, level + 1)
            else:
                lines.append(f"{head}: {mask_tag_value(item.tag, item.value)}")

    walk(tree, 0)
    return "\n".join(lines)


def summary(data: bytes | Iterable[TLV]) -> str:
    """One line, ``TAG=value`` per primitive object (masked), for a describe/trace line of field 55.

    Never raises on malformed bytes: it returns a ``<malformed BER-TLV ...>`` note instead.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            tree = decode(data)
        except TLVError as exc:
            return f"<malformed BER-TLV, {len(data)} bytes: {exc.detail} at offset {exc.offset}>"
    else:
        tree = list(data)
    return " ".join(f"{i.tag}={mask_tag_value(i.tag, i.value)}" for i in iter_flat(tree) if i.children is None)
