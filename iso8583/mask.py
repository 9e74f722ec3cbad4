"""Masking of sensitive values (PAN, track data, PIN blocks, CVV, keys, MACs).

Every place that turns a field value into text — ``repr(Message)``, error messages, logs, traces,
reports — goes through :func:`mask_value`, so there is one place that decides what is shown.
PCI DSS allows at most the first 6 and last 4 digits of a PAN to be displayed.
"""

from __future__ import annotations

import re
from typing import Any

#: Fields whose whole value is secret: shown only as a length.
SECRET_FIELDS = frozenset({35, 36, 45, 52, 53, 64, 96, 128})
#: Fields holding a PAN: first 6 / last 4 digits shown.
PAN_FIELDS = frozenset({2, 34})
#: Field 55 (ICC data) is TLV; these EMV tags are secret inside it.
SECRET_EMV_TAGS = frozenset({"57", "5A", "5F20", "5F24", "9F1F", "9F20", "9F6B", "56", "99", "DF8104"})

_PAN_RE = re.compile(r"(?<![0-9])([0-9]{6})([0-9]{3,9})([0-9]{4})(?![0-9])")


def mask_pan(pan: str) -> str:
    """``4761739001010010`` -> ``476173******0010``; short or non-numeric values fully masked."""
    digits = pan.strip()
    if len(digits) < 13 or not digits.isdigit():
        return "*" * len(digits)
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


def mask_value(field: int | None, value: Any) -> str:
    """Text safe to show for ``value`` of ``field`` (any field; non-sensitive ones pass through)."""
    if field in PAN_FIELDS and isinstance(value, str):
        return mask_pan(value)
    if field in SECRET_FIELDS:
        size = len(value) if isinstance(value, (str, bytes, bytearray)) else "?"
        return f"<masked {size}{' bytes' if isinstance(value, (bytes, bytearray)) else ' chars'}>"
    if field == 55:
        size = len(value) if isinstance(value, (str, bytes, bytearray)) else "?"
        return f"<ICC data {size} bytes>"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {scrub_text(repr(v))}" for k, v in value.items()) + "}"
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex().upper()
    return scrub_text(str(value))


def scrub_text(text: str) -> str:
    """Mask anything in free text that looks like a PAN (13–19 digits), as a last line of defence."""
    return _PAN_RE.sub(lambda m: m.group(1) + "*" * len(m.group(2)) + m.group(3), text)
