"""describe(): a human-readable view of a message — one line per field, with its name, masked.

What a support engineer pastes into a ticket, what ``posfault decode`` prints, what traces show.
Masking follows :mod:`iso8583.mask`: PAN first 6 / last 4, track data, PIN block (52), field 53,
MACs (64/128) and field 62 (working keys on sign-on) shown only as lengths; field 55 is broken into its EMV tags (via
:mod:`iso8583.tlv` when available) with the sensitive tags (5A, 57, 5F20, 9F1F, ...) masked; composite
fields get one indented line per subfield. Free text is scrubbed of anything that looks like a PAN.
"""

from __future__ import annotations

from typing import Any

from .mask import mask_value, scrub_text
from .message import Message
from .spec import Spec, load_spec

_VERSIONS = {"0": "ISO 8583:1987", "1": "ISO 8583:1993", "2": "ISO 8583:2003"}
_CLASSES = {"1": "authorization", "2": "financial", "3": "file action", "4": "reversal", "5": "reconciliation",
            "6": "administrative", "7": "fee collection", "8": "network management"}
_FUNCTIONS = {"0": "request", "1": "response", "2": "advice", "3": "advice response", "4": "notification",
              "5": "notification acknowledgement"}
_ORIGINS = {"1": ", repeat", "3": ", repeat"}
_LABEL_WIDTH = 52


def mti_text(mti: str) -> str:
    """``0200`` -> ``financial request``; ``0401`` -> ``reversal request, repeat``."""
    if not (isinstance(mti, str) and len(mti) == 4):
        return "?"
    return f"{_CLASSES.get(mti[1], 'class ' + mti[1])} {_FUNCTIONS.get(mti[2], 'function ' + mti[2])}" \
           f"{_ORIGINS.get(mti[3], '')}"


def _icc_lines(value: Any, indent: str) -> list[str]:
    if not isinstance(value, (bytes, bytearray)):
        return []
    try:
        from . import tlv
    except ImportError:  # pragma: no cover - tlv ships with the package; keep describe usable without it
        return []
    try:
        text = tlv.describe(bytes(value))
    except Exception:  # malformed TLV: describe must never fail; say so instead
        return [f"{indent}(not valid BER-TLV)"]
    return [indent + line for line in text.splitlines()]


def _line(label: str, value: str) -> str:
    return f"{label:<{_LABEL_WIDTH}} {value}" if len(label) < _LABEL_WIDTH else f"{label}  {value}"


def describe(msg: Message, spec: Spec | str | None = None) -> str:
    """One line per field: number, name (from ``spec``), masked value; sub-lines for 55 and composites."""
    fields = load_spec(spec).fields if spec is not None else {}
    lines = [f"MTI  {msg.mti}  {mti_text(msg.mti)}"]
    for number, value in msg.items():
        fs = fields.get(number)
        name = fs.name if fs is not None else ""
        label = f"{number:>3}  {name}"
        if isinstance(value, dict):
            lines.append(_line(label, f"{len(value)} subfields"))
            subs = fs.composite.subfields if fs is not None and fs.composite is not None else {}
            for key, sub_value in value.items():
                sub = subs.get(key)
                sub_label = f"       {key}  {sub.name if sub is not None else ''}".rstrip()
                shown = sub_value.hex().upper() if isinstance(sub_value, (bytes, bytearray)) else repr(sub_value)
                lines.append(_line(sub_label, scrub_text(shown) if number not in (35, 36, 45, 52) else "<masked>"))
            continue
        if number == 55 and isinstance(value, (bytes, bytearray)):
            lines.append(_line(label, f"{len(value)} bytes"))
            lines.extend(_icc_lines(value, "       "))
            continue
        if number == 62 and isinstance(value, (bytes, bytearray, str)):  # working keys on sign-on
            lines.append(_line(label, f"<masked {len(value)} {'bytes' if not isinstance(value, str) else 'chars'}>"))
            continue
        lines.append(_line(label, mask_value(number, value)))
    return "\n".join(lines)
