"""describe(): a human-readable, masked, one-line-per-field view of a message (placeholder, see below)."""

from __future__ import annotations

from .mask import mask_value
from .message import Message
from .spec import Spec, load_spec


def describe(msg: Message, spec: Spec | str | None = None) -> str:
    """One line per field: number, name, masked value."""
    spec_obj = load_spec(spec) if spec is not None else None
    lines = [f"MTI  {msg.mti}"]
    for number, value in msg.items():
        fs = spec_obj.fields.get(number) if spec_obj else None
        name = fs.name if fs else ""
        lines.append(f"{number:>3}  {name:<45} {mask_value(number, value)}")
    return "\n".join(lines)
