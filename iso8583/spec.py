"""Specs (dialects) as data: load them from a built-in name, a TOML/JSON file, or a dict.

A spec file is plain data a user can copy and extend::

    name = "my-switch"
    family = "iso87"                 # transaction vocabulary: "iso87" or "unionpay"
    extends = "iso87ascii"           # optional: start from another spec, override fields
    [mti]
    encoding = "ascii"               # ascii | ebcdic | bcd
    [bitmap]
    encoding = "hex"                 # binary | hex (ASCII hex) | hex-ebcdic
    tertiary = false                 # bit 65 announces a third bitmap (fields 129-192)
    [defaults]                       # applied to every field unless it says otherwise
    encoding = "ascii"
    prefix = "ascii"
    [wire]                           # passed through untouched to iso8583.wire / channels
    length = "ascii4"
    [fields]
    2 = { name = "Primary account number", type = "n", length = "LL", max = 19 }
    [fields.60]                      # a composite field (see iso8583.composite)
    type = "n"
    length = "LLL"
    max = 17
    composite = "positional"
    subfields.1 = { name = "Message type code", type = "n", max = 2 }

Field attributes are those of :class:`iso8583.fields.FieldSpec`. A pyiso8583 spec dict (keys
``"t"``, ``"p"``, ``"2"``... with ``data_enc``/``len_enc``/``len_type``/``max_len``) also loads,
so its users can migrate: see :func:`from_pyiso8583`.
"""

from __future__ import annotations

import copy
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .composite import Composite
from .errors import SpecError
from .fields import FieldSpec, compile_field

BUILTIN = ("iso87ascii", "iso87binary", "iso93ascii", "unionpay_pos")
MTI_ENCODINGS = ("ascii", "ebcdic", "bcd")
BITMAP_ENCODINGS = ("binary", "hex", "hex-ebcdic")
_FIELD_KEYS = {"name", "type", "max", "length", "prefix", "encoding", "count", "pad", "prefix_bytes",
               "composite", "subfields", "bitmap_bytes", "bitmap_encoding", "tag_length", "len_length"}
_INHERITED = ("encoding", "prefix", "count", "pad", "prefix_bytes")


@dataclass(slots=True)
class Spec:
    """A compiled dialect: MTI and bitmap encodings, field specs, and framing defaults.

    ``fields`` maps field number -> :class:`FieldSpec`; ``wire`` is the dialect's ``[wire]`` table,
    untouched (length header kind, TPDU, application header — consumed by :mod:`iso8583.wire`).
    Specs are immutable in practice: build a new one (``load_spec({... "extends": ...})``) to change it.
    """

    name: str
    fields: dict[int, FieldSpec]
    mti_encoding: str = "ascii"
    bitmap_encoding: str = "hex"
    tertiary: bool = False
    family: str = "iso87"
    description: str = ""
    wire: dict[str, Any] = field(default_factory=dict)
    #: The ``[defaults]`` table, kept so that a spec that ``extends`` this one fills its own new
    #: fields the same way (a UnionPay extension's numerics stay BCD).
    defaults: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict, repr=False)
    _codec: Any = field(default=None, repr=False)  # iso8583.codec._Codec, built lazily

    @property
    def max_field(self) -> int:
        return 192 if self.tertiary else 128

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (round-trips through :func:`load_spec`)."""
        return {
            "name": self.name, "family": self.family, "description": self.description,
            "mti": {"encoding": self.mti_encoding},
            "bitmap": {"encoding": self.bitmap_encoding, "tertiary": self.tertiary},
            "wire": copy.deepcopy(self.wire),
            **({"defaults": dict(self.defaults)} if self.defaults else {}),
            "fields": {str(n): fs.to_dict() for n, fs in sorted(self.fields.items())},
        }

    def __repr__(self) -> str:
        return f"Spec({self.name!r}, {len(self.fields)} fields, mti={self.mti_encoding}, bitmap={self.bitmap_encoding})"


_CACHE: dict[str, Spec] = {}


def load_spec(source: str | Path | Mapping[str, Any] | Spec) -> Spec:
    """A :class:`Spec` from a built-in name, a ``.toml``/``.json`` path, a spec dict, or a Spec.

    Built-in names are cached, so ``load_spec("unionpay_pos")`` is cheap to call repeatedly.
    Raises :class:`SpecError` naming the field and key for a malformed spec.
    """
    if isinstance(source, Spec):
        return source
    if isinstance(source, str) and source in _CACHE:
        return _CACHE[source]
    if isinstance(source, Mapping):
        return _from_dict(dict(source), origin="<dict>")
    if isinstance(source, str) and source in BUILTIN:
        text = resources.files("iso8583.dialects").joinpath(f"{source}.toml").read_text(encoding="utf-8")
        spec = _from_dict(tomllib.loads(text), origin=f"{source}.toml")
        _CACHE[source] = spec
        return spec
    path = Path(source)
    if not path.exists():
        raise SpecError(f"no such spec {str(source)!r}: not a built-in ({', '.join(BUILTIN)}) nor an existing file")
    raw = path.read_bytes()
    try:
        data = json.loads(raw) if path.suffix.lower() == ".json" else tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'}: {exc}") from None
    return _from_dict(data, origin=str(path))


def _from_dict(data: dict[str, Any], origin: str) -> Spec:
    if "t" in data and ("p" in data or "2" in data):
        data = from_pyiso8583(data, name=data.get("name", "pyiso8583"))
    base: dict[str, Any] = {}
    if "extends" in data:
        parent = load_spec(data["extends"])
        base = parent.to_dict()
    merged = _merge(base, {k: v for k, v in data.items() if k != "extends"})
    try:
        return _build(merged, origin)
    except SpecError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise SpecError(f"{origin}: malformed spec: {exc}") from None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if key == "fields" and isinstance(value, Mapping):
            fields = out.setdefault("fields", {})
            for number, fdef in value.items():
                fields[str(number)] = copy.deepcopy(fdef)  # a field given replaces the inherited one
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = {**out[key], **value}
        else:
            out[key] = copy.deepcopy(value)
    return out


def _build(data: dict[str, Any], origin: str) -> Spec:
    name = str(data.get("name") or Path(origin).stem)
    mti_enc = (data.get("mti") or {}).get("encoding", "ascii")
    if mti_enc not in MTI_ENCODINGS:
        raise SpecError(f"{origin}: mti.encoding must be one of {', '.join(MTI_ENCODINGS)}, got {mti_enc!r}")
    bitmap = data.get("bitmap") or {}
    bm_enc = bitmap.get("encoding", "hex")
    if bm_enc == "ascii":
        bm_enc = "hex"
    if bm_enc == "ebcdic":
        bm_enc = "hex-ebcdic"
    if bm_enc not in BITMAP_ENCODINGS:
        raise SpecError(f"{origin}: bitmap.encoding must be one of {', '.join(BITMAP_ENCODINGS)}, got {bm_enc!r}")
    tertiary = bool(bitmap.get("tertiary", False))
    defaults = dict(data.get("defaults") or {})
    fields: dict[int, FieldSpec] = {}
    for key, fdef in (data.get("fields") or {}).items():
        try:
            number = int(key)
        except (TypeError, ValueError):
            raise SpecError(f"{origin}: field key {key!r} is not a number") from None
        limit = 192 if tertiary else 128
        if not 2 <= number <= limit or number in (65, 129):
            raise SpecError(f"{origin}: field {number} out of range 2..{limit} (1, 65 and 129 are bitmaps)")
        if not isinstance(fdef, Mapping):
            raise SpecError(f"{origin}: field {number} must be a table, got {type(fdef).__name__}")
        fields[number] = field_from_dict(number, fdef, defaults)
    wire = data.get("wire") or {}
    if not isinstance(wire, Mapping):
        raise SpecError(f"{origin}: [wire] must be a table")
    return Spec(name=name, fields=fields, mti_encoding=mti_enc, bitmap_encoding=bm_enc, tertiary=tertiary,
                family=str(data.get("family", "iso87")), description=str(data.get("description", "")),
                wire=dict(wire), defaults=defaults, source=data)


def field_from_dict(number: int | str, fdef: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> FieldSpec:
    """One :class:`FieldSpec` (compiled) from its dict form; ``defaults`` fill unspecified attributes."""
    unknown = set(fdef) - _FIELD_KEYS
    if unknown:
        raise SpecError(f"field {number}: unknown key(s) {', '.join(sorted(unknown))} "
                        f"(known: {', '.join(sorted(_FIELD_KEYS))})")
    defaults = defaults or {}
    kind = fdef.get("type", "ans")
    attrs: dict[str, Any] = {"number": number, "name": str(fdef.get("name", "")), "type": kind,
                             "max": fdef.get("max", 0), "length": fdef.get("length", "fixed")}
    for key in _INHERITED:
        if key in fdef:
            attrs[key] = fdef[key]
        elif key in defaults:
            attrs[key] = defaults[key]
    # type-dependent defaults: numerics may follow a dialect-wide numeric encoding (bcd), binary
    # fields are raw bytes unless told otherwise, text stays text
    if "encoding" not in fdef:
        if kind in ("n", "z", "x+n") and "numeric_encoding" in defaults:
            attrs["encoding"] = defaults["numeric_encoding"]
        elif kind == "b":
            attrs["encoding"] = defaults.get("binary_encoding", "binary")
        elif kind not in ("n", "z", "x+n") and attrs.get("encoding") == "bcd":
            attrs["encoding"] = defaults.get("text_encoding", "ascii")
    if "pad" not in fdef:
        if attrs.get("length", "fixed") != "fixed" and "variable_pad" in defaults:
            attrs["pad"] = defaults["variable_pad"]
        elif kind == "z" and "track_pad" in defaults:
            attrs["pad"] = defaults["track_pad"]
    composite = None
    if "composite" in fdef:
        sub_defaults = {"encoding": "ascii", "prefix": "ascii"}
        if kind == "b":
            sub_defaults = {"encoding": "binary", "prefix": "binary"}
        subs: dict[str, FieldSpec] = {}
        kind_c = fdef["composite"]
        for sub_key, sub_def in (fdef.get("subfields") or {}).items():
            key = str(sub_key) if kind_c == "tlv" else f"{number}.{sub_key}"
            if not isinstance(sub_def, Mapping):
                raise SpecError(f"field {number}: subfield {sub_key} must be a table")
            label = f"{number}.{sub_key}"
            sub = FieldSpec(number=label, **_sub_attrs(label, sub_def, sub_defaults, kind))
            subs[key] = sub
        if kind_c != "tlv":
            subs = dict(sorted(subs.items(), key=lambda kv: _sub_order(kv[0])))
        composite = Composite(kind=kind_c, subfields=subs,
                              bitmap_bytes=int(fdef.get("bitmap_bytes", 8)),
                              bitmap_encoding=fdef.get("bitmap_encoding", "binary" if kind == "b" else "ascii"),
                              tag_length=int(fdef.get("tag_length", 2)), len_length=int(fdef.get("len_length", 3)))
        if composite.bitmap_encoding == "hex":
            composite.bitmap_encoding = "ascii"
    fs = FieldSpec(**attrs, composite=composite)
    return compile_field(fs)


def _sub_order(key: str) -> tuple[int, str]:
    short = key.rsplit(".", 1)[-1]
    return (int(short), "") if short.isdigit() else (1 << 30, short)


def _sub_attrs(key: str, sub_def: Mapping[str, Any], defaults: Mapping[str, Any], parent_type: str) -> dict[str, Any]:
    unknown = set(sub_def) - (_FIELD_KEYS - {"composite", "subfields"})
    if unknown:
        raise SpecError(f"subfield {key}: unknown key(s) {', '.join(sorted(unknown))}")
    attrs = {"name": str(sub_def.get("name", "")), "type": sub_def.get("type", "b" if parent_type == "b" else "ans"),
             "max": sub_def.get("max", 0), "length": sub_def.get("length", "fixed")}
    for k in _INHERITED:
        if k in sub_def:
            attrs[k] = sub_def[k]
        elif k in defaults:
            attrs[k] = defaults[k]
    if parent_type == "b" and attrs["type"] != "b" and "encoding" not in sub_def:
        attrs["encoding"] = "ascii"
    return attrs


# ------------------------------------------------------------------------------------------------
# pyiso8583 migration
# ------------------------------------------------------------------------------------------------
def _pyiso_enc(value: str, where: str) -> str:
    value = value.lower()
    if value in ("ascii", "latin-1", "latin1", "utf-8", "utf8"):
        return "ascii"
    if value in ("cp500", "cp037", "ebcdic"):
        return "ebcdic"
    if value == "b":
        return "binary"
    if value == "bcd":
        return "bcd"
    raise SpecError(f"{where}: unsupported pyiso8583 encoding {value!r}")


def from_pyiso8583(spec: Mapping[str, Any], name: str = "pyiso8583") -> dict[str, Any]:
    """Translate a pyiso8583 spec dict into our spec-dict form.

    pyiso8583 has no field types: text fields become ``ans``; ``b`` fields counting nibbles with a
    pad become packed ``n`` (BCD); other ``b`` fields become ``b`` (bytes values, where pyiso8583
    uses hex strings). An optional ``"type"`` key per field overrides the guess.
    """
    out: dict[str, Any] = {"name": name, "family": "iso87"}
    header = spec.get("h", {})
    if header and header.get("max_len", 0):
        raise SpecError("pyiso8583 spec has a message header ('h'); headers belong to the wire layer "
                        "(set it in the spec's [wire] table) — remove 'h' or set its max_len to 0")
    mti = spec["t"]
    out["mti"] = {"encoding": "bcd" if mti.get("data_enc") == "b" else _pyiso_enc(mti.get("data_enc", "ascii"), "t")}
    prim = spec.get("p", {"data_enc": "b"})
    bm = _pyiso_enc(prim.get("data_enc", "b"), "p")
    out["bitmap"] = {"encoding": {"binary": "binary", "ascii": "hex", "ebcdic": "hex-ebcdic"}[bm]}
    fields: dict[str, Any] = {}
    for key, fdef in spec.items():
        if not str(key).isdigit() or int(key) in (1, 65):
            continue
        where = f"field {key}"
        len_type = int(fdef.get("len_type", 0))
        max_len = int(fdef["max_len"])
        data_enc = _pyiso_enc(fdef.get("data_enc", "ascii"), where)
        len_enc = _pyiso_enc(fdef.get("len_enc", "ascii"), where)
        count = fdef.get("len_count", "bytes")
        entry: dict[str, Any] = {"name": fdef.get("desc", "")}
        if len_type == 0:
            entry["length"] = "fixed"
        elif len_enc in ("ascii", "ebcdic"):
            entry["length"] = "L" * len_type
            entry["prefix"] = len_enc
        elif len_enc == "bcd":
            entry["length"] = "L" * min(4, len_type * 2)
            entry["prefix"] = "bcd"
        else:
            entry["length"] = "LL" if len_type == 1 else "LLLL"
            entry["prefix"] = "binary"
            entry["prefix_bytes"] = len_type
        pad = ""
        if fdef.get("left_pad"):
            pad = "left" + str(fdef["left_pad"])[:1].upper()
        elif fdef.get("right_pad"):
            pad = "right" + str(fdef["right_pad"])[:1].upper()
        kind = fdef.get("type")
        if data_enc == "binary":
            if kind in ("n", "z") or (kind is None and count == "nibbles"):
                entry["type"] = kind or "n"
                entry["encoding"] = "bcd"
                entry["count"] = "nibbles" if count == "nibbles" else "bytes"
                entry["max"] = max_len if count == "nibbles" else max_len * 2
                if pad:
                    if pad[-1] not in "0F":
                        raise SpecError(f"{where}: pad nibble must be 0 or F, got {pad[-1]!r}")
                    entry["pad"] = pad
            else:
                entry["type"] = "b"
                entry["encoding"] = "binary"
                entry["max"] = max_len // 2 if count == "nibbles" else max_len
        else:
            entry["type"] = kind or "ans"
            entry["encoding"] = data_enc
            entry["max"] = max_len
            if count == "nibbles":
                raise SpecError(f"{where}: a text field cannot count nibbles")
        fields[str(int(key))] = entry
    out["fields"] = fields
    return out
