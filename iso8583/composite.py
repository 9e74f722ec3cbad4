"""Composite fields: a field whose content is itself a sequence of subfields.

Three layouts, all declared in the spec as data:

* ``positional`` — subfields one after another in spec order (UnionPay field 60: 60.1 message type
  code n2, 60.2 batch number n6, 60.3 network management code n3, ...). Trailing subfields may be
  absent; a missing subfield in the middle is an encode error.
* ``bitmap`` — a sub-bitmap (``bitmap_bytes`` long, binary or hex) says which numbered subfields
  follow (e.g. Postilion field 127).
* ``tlv`` — tag/length/value items with fixed-size text tags and decimal lengths (e.g. field 48
  ``TTLLLvalue``); unknown tags are kept as text (or bytes in a ``b`` parent).

The parent keeps its own type, length prefix and encoding (field 60 is ``n...017`` packed BCD); the
subfields are encoded into the parent's *content* (digits or characters, or bytes for ``b`` parents)
with their own little specs, usually ASCII inside. Values are dicts keyed by subfield name:
``{"60.1": "22", "60.2": "000001"}`` (bitmap: ``"127.2"``; tlv: the tag, e.g. ``"01"``).
Encoding also accepts subfield numbers (``1`` or ``"1"``) as keys, and a plain ``str``/``bytes``
value (already-assembled content) so fault scenarios can send malformed content on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .errors import DecodeError, EncodeError, SpecError

if TYPE_CHECKING:
    from .fields import FieldSpec

KINDS = ("positional", "bitmap", "tlv")


@dataclass(slots=True)
class Composite:
    kind: str
    subfields: dict[str, FieldSpec] = field(default_factory=dict)  # canonical key -> spec, in order
    bitmap_bytes: int = 8
    bitmap_encoding: str = "binary"
    tag_length: int = 2
    len_length: int = 3

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"composite": self.kind}
        if self.kind == "bitmap":
            out["bitmap_bytes"] = self.bitmap_bytes
            out["bitmap_encoding"] = self.bitmap_encoding
        if self.kind == "tlv":
            out["tag_length"] = self.tag_length
            out["len_length"] = self.len_length
        out["subfields"] = {_short(k): sub.to_dict() for k, sub in self.subfields.items()}
        return out


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _reraise(exc: DecodeError, parent: FieldSpec, base: int, scale: float) -> DecodeError:
    offset = base + int((exc.offset or 0) * scale)
    return DecodeError(f"{exc.reason} (inside field {parent.number}, whose data starts at offset {base})",
                       field=exc.field, offset=offset, expected=exc.expected, found=exc.found)


def compile_composite(fs: FieldSpec) -> None:
    """Give a composite ``fs`` its ``encode``/``decode``: parent codec around the subfield layout."""
    from .fields import _prefix_size, compile_field

    comp: Composite = fs.composite
    if comp.kind not in KINDS:
        raise SpecError(f"field {fs.number}: unknown composite kind {comp.kind!r} (expected one of {', '.join(KINDS)})")
    base = compile_field(replace(fs, composite=None, encode=None, decode=None))
    base_enc, base_dec = base.encode, base.decode
    text_parent = fs.type != "b"
    data_start = 0 if fs.fixed else _prefix_size(fs)
    scale = 0.5 if fs.encoding == "bcd" else (2.0 if fs.type == "b" and fs.encoding != "binary" else 1.0)
    for sub in comp.subfields.values():
        compile_field(sub)

    keymap: dict[Any, str] = {}
    for key in comp.subfields:
        short = _short(key)
        keymap[key] = key
        keymap[short] = key
        if short.isdigit():
            keymap[int(short)] = key

    if comp.kind == "positional":
        enc_content, dec_content = _positional(fs, comp, keymap)
    elif comp.kind == "bitmap":
        enc_content, dec_content = _bitmapped(fs, comp, keymap)
    else:
        enc_content, dec_content = _tlv(fs, comp, keymap)

    def encode(value: Any) -> bytes:
        if isinstance(value, dict):
            content = enc_content(value)
            return base_enc(content.decode("latin-1") if text_parent else content)
        return base_enc(value)  # pre-assembled content (str for text parents, bytes for b)

    def decode(data: bytes, pos: int) -> tuple[Any, int]:
        value, end = base_dec(data, pos)
        content = value.encode("latin-1") if text_parent else value
        try:
            return dec_content(content), end
        except DecodeError as exc:
            raise _reraise(exc, fs, pos + data_start, scale) from None

    fs.encode, fs.decode = encode, decode
    if comp.kind == "positional" and fs.type != "b" and all(
            sub.fixed and sub.type == fs.type and sub.encoding == "ascii" and sub.type != "x+n"
            for sub in comp.subfields.values()):
        fs.encode, fs.decode = _fast_positional(comp, encode, decode, base_enc, base_dec)


def _fast_positional(comp: Composite, slow_encode: Any, slow_decode: Any, base_enc: Any, base_dec: Any):
    """Positional composite whose subfields are fixed and of the parent's own type (UnionPay 60: n in n):
    the parent's check covers every subfield's character class, so subfields are just slices."""
    layout = [(key, sub.max) for key, sub in comp.subfields.items()]

    def encode(value: Any) -> bytes:
        if value.__class__ is dict:
            parts = []
            for key, size in layout:
                item = value.get(key)
                if item is None:
                    break
                if item.__class__ is not str or len(item) != size:
                    return slow_encode(value)
                parts.append(item)
            if len(parts) == len(value):
                return base_enc("".join(parts))
        return slow_encode(value)

    def decode(data: bytes, pos: int) -> tuple[Any, int]:
        text, end = base_dec(data, pos)
        out = {}
        offset = 0
        total = len(text)
        for key, size in layout:
            if offset >= total:
                break
            nxt = offset + size
            if nxt > total:
                return slow_decode(data, pos)
            out[key] = text[offset:nxt]
            offset = nxt
        if offset != total:
            return slow_decode(data, pos)
        return out, end

    return encode, decode


def _order(fs: FieldSpec, value: dict, keymap: dict[Any, str], comp: Composite) -> list[tuple[str, Any]]:
    items: dict[str, Any] = {}
    for key, sub_value in value.items():
        canon = keymap.get(key)
        if canon is None:
            raise EncodeError(f"unknown subfield {key!r} (known: {', '.join(comp.subfields)})", field=fs.number,
                              expected="a subfield of the spec", found=repr(key))
        items[canon] = sub_value
    return [(k, items[k]) for k in comp.subfields if k in items]


def _positional(fs: FieldSpec, comp: Composite, keymap: dict[Any, str]):
    subs = list(comp.subfields.items())

    def enc(value: dict) -> bytes:
        parts = []
        present = value.keys()
        if all(k in comp.subfields for k in present) and len(present) <= len(subs):
            # fast path: canonical keys
            for i, (key, sub) in enumerate(subs):
                if key not in value:
                    if len(parts) != len(present):
                        missing_after = [k for k, _ in subs[i + 1:] if k in value]
                        raise EncodeError(f"subfield {key} is missing but later subfield {missing_after[0]} is "
                                          f"present (positional subfields can only be omitted at the end)",
                                          field=fs.number, expected=f"subfield {key}", found="nothing")
                    break
                parts.append(sub.encode(value[key]))
            return b"".join(parts)
        ordered = dict(_order(fs, value, keymap, comp))
        return enc(ordered)

    def dec(content: bytes) -> dict:
        out = {}
        pos = 0
        size = len(content)
        for key, sub in subs:
            if pos >= size:
                break
            out[key], pos = sub.decode(content, pos)
        if pos != size:
            raise DecodeError(f"{size - pos} bytes left over after the last subfield, at offset {pos}",
                              field=fs.number, offset=pos, expected="end of field", found=f"{size - pos} bytes")
        return out

    return enc, dec


def _bitmapped(fs: FieldSpec, comp: Composite, keymap: dict[Any, str]):
    nbits = comp.bitmap_bytes * 8
    by_number: dict[int, tuple[str, FieldSpec]] = {}
    for key, sub in comp.subfields.items():
        short = _short(key)
        if not short.isdigit() or not 1 <= int(short) <= nbits:
            raise SpecError(f"field {fs.number}: bitmapped subfield {key!r} must be numbered 1..{nbits}")
        by_number[int(short)] = (key, sub)
    hex_map = comp.bitmap_encoding != "binary"
    codec = "ascii" if comp.bitmap_encoding == "ascii" else "cp500"
    map_size = comp.bitmap_bytes * (2 if hex_map else 1)

    def enc(value: dict) -> bytes:
        bits = 0
        parts = []
        for key, sub_value in _order(fs, value, keymap, comp):
            number = int(_short(key))
            bits |= 1 << (nbits - number)
            parts.append(comp.subfields[key].encode(sub_value))
        raw = bits.to_bytes(comp.bitmap_bytes, "big")
        head = raw.hex().upper().encode(codec) if hex_map else raw
        return head + b"".join(parts)

    def dec(content: bytes) -> dict:
        head = content[:map_size]
        if len(head) < map_size:
            raise DecodeError(f"expected a {map_size}-byte subfield bitmap at offset 0, found {len(head)} bytes",
                              field=fs.number, offset=0, expected=f"{map_size} bytes", found=f"{len(head)} bytes")
        if hex_map:
            text = head.decode(codec if codec != "ascii" else "latin-1")
            try:
                raw = bytes.fromhex(text)
            except ValueError:
                raise DecodeError(f"expected a hex subfield bitmap at offset 0, found {text!r}", field=fs.number,
                                  offset=0, expected="hex digits", found=repr(text)) from None
            if len(raw) != comp.bitmap_bytes:
                raise DecodeError(f"expected a hex subfield bitmap at offset 0, found {text!r}", field=fs.number,
                                  offset=0, expected="hex digits", found=repr(text))
        else:
            raw = head
        bits = int.from_bytes(raw, "big")
        out = {}
        pos = map_size
        for number in range(1, nbits + 1):
            if bits >> (nbits - number) & 1:
                entry = by_number.get(number)
                if entry is None:
                    raise DecodeError(f"subfield {number} is set in the subfield bitmap but not defined in the spec",
                                      field=fs.number, offset=0, expected="a defined subfield", found=str(number))
                key, sub = entry
                out[key], pos = sub.decode(content, pos)
        if pos != len(content):
            raise DecodeError(f"{len(content) - pos} bytes left over after the last subfield, at offset {pos}",
                              field=fs.number, offset=pos, expected="end of field",
                              found=f"{len(content) - pos} bytes")
        return out

    return enc, dec


def _tlv(fs: FieldSpec, comp: Composite, keymap: dict[Any, str]):
    """``TAG`` (``tag_length`` ASCII chars) + decimal byte length (``len_length`` ASCII digits) + data.

    Items keep the order they were given in; each known tag's data is checked against its subfield
    spec (type, encoding, max); unknown tags carry text (or bytes in a ``b`` parent).
    """
    from .fields import FieldSpec, _units_to_bytes, data_codec

    tag_len, len_len = comp.tag_length, comp.len_length
    limit = 10**len_len - 1
    codecs: dict[str, tuple[str, FieldSpec, Any, int]] = {}
    for key, sub in comp.subfields.items():
        tag = _short(key)
        if len(tag) != tag_len:
            raise SpecError(f"field {fs.number}: TLV tag {tag!r} must be {tag_len} characters")
        if sub.encoding == "bcd":
            raise SpecError(f"field {fs.number}: TLV subfield {key!r} cannot be bcd-encoded")
        codecs[tag] = (key, sub, data_codec(sub), _units_to_bytes(sub)(sub.max))
    unknown = FieldSpec(number=f"{fs.number}.?", type="b" if fs.type == "b" else "ans", max=limit,
                        length="LLL", encoding="binary" if fs.type == "b" else "ascii")
    unknown_codec = data_codec(unknown)

    def lookup(tag: str) -> tuple[str, FieldSpec, Any, int]:
        entry = codecs.get(tag)
        return entry if entry is not None else (tag, unknown, unknown_codec, limit)

    def enc(value: dict) -> bytes:
        parts = []
        for key, sub_value in value.items():
            canon = keymap.get(key)
            tag = _short(canon) if canon is not None else str(key)
            if len(tag) != tag_len or not tag.isascii() or not tag.isprintable():
                raise EncodeError(f"TLV tag {tag!r} must be {tag_len} printable ASCII characters",
                                  field=fs.number, expected=f"{tag_len}-character tag", found=repr(tag))
            _, sub, codec, max_bytes = lookup(tag)
            raw, _units = codec.enc(sub_value)
            if len(raw) > max_bytes or (sub.fixed and len(raw) != max_bytes):
                raise EncodeError(f"TLV item {tag} is {len(raw)} bytes, its spec allows "
                                  f"{'exactly' if sub.fixed else 'at most'} {max_bytes}", field=sub.number,
                                  expected=f"{max_bytes} bytes", found=str(len(raw)))
            parts.append(tag.encode("ascii") + str(len(raw)).zfill(len_len).encode("ascii") + raw)
        return b"".join(parts)

    def dec(content: bytes) -> dict:
        out = {}
        pos = 0
        size = len(content)
        while pos < size:
            head = content[pos:pos + tag_len + len_len]
            digits = head[tag_len:]
            if len(head) < tag_len + len_len or not digits.isdigit():
                raise DecodeError(f"expected a TLV header ({tag_len}-char tag + {len_len}-digit length) at offset "
                                  f"{pos}, found {head!r}", field=fs.number, offset=pos, expected="TLV header",
                                  found=repr(head))
            tag = head[:tag_len].decode("latin-1")
            n = int(digits)
            start = pos + tag_len + len_len
            raw = content[start:start + n]
            if len(raw) < n:
                raise DecodeError(f"TLV item {tag!r} needs {n} bytes at offset {start}, only {len(raw)} left",
                                  field=fs.number, offset=start, expected=f"{n} bytes", found=f"{len(raw)} bytes")
            key, sub, codec, max_bytes = lookup(tag)
            value = codec.dec(raw, None) if n <= max_bytes and not (sub.fixed and n != max_bytes) else None
            if value is None:
                raise DecodeError(f"TLV item {tag!r}: expected {'exactly' if sub.fixed else 'at most'} {max_bytes} "
                                  f"bytes of {sub.type} at offset {start}, found {n} bytes {raw[:16]!r}",
                                  field=sub.number, offset=start, expected=sub.type, found=repr(raw[:16]))
            if key in out:
                raise DecodeError(f"TLV tag {tag!r} repeated at offset {pos}", field=fs.number, offset=pos,
                                  expected="each tag once", found=tag)
            out[key] = value
            pos = start + n
        return out

    return enc, dec
