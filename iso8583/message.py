"""The in-memory form of an ISO 8583 message, independent of any dialect's byte layout.

Values are plain Python: ``str`` for text types (n, a, an, ans, as, ns, z, x+n), ``bytes`` for
binary (b) fields, and a ``dict`` of subfield -> value for composite fields (e.g. UnionPay field
60). Field 1 (the bitmap) is never stored: the codec derives it from which fields are present.
``repr()`` masks sensitive fields, so a Message can be logged or put in an assertion safely.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from .mask import mask_value

FieldValue = str | bytes | dict

#: Request MTI -> response MTI, filled as MTIs are seen (a few dozen exist).
_RESPONSE_MTI: dict[str, str] = {}


class Message:
    """An ISO 8583 message: an MTI and numbered fields, iterated in field-number order."""

    __slots__ = ("fields", "mti")

    def __init__(self, mti: str, fields: Mapping[int, Any] | None = None) -> None:
        if not (isinstance(mti, str) and len(mti) == 4 and mti.isdigit()):
            raise ValueError(f"MTI must be 4 digits, got {mti!r}")
        self.mti = mti
        self.fields: dict[int, Any] = {}
        if fields:
            for number, value in fields.items():
                self[number] = value

    # -- mapping protocol -------------------------------------------------------------------
    def __getitem__(self, number: int) -> Any:
        return self.fields[number]

    def __setitem__(self, number: int, value: Any) -> None:
        if not isinstance(number, int) or not 2 <= number <= 192 or number in (1, 65, 129):
            raise KeyError(f"field number must be 2..192 (bitmaps 1/65/129 are derived), got {number!r}")
        self.fields[number] = value

    def __delitem__(self, number: int) -> None:
        del self.fields[number]

    def __contains__(self, number: object) -> bool:
        return number in self.fields

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self.fields))

    def __len__(self) -> int:
        return len(self.fields)

    def get(self, number: int, default: Any = None) -> Any:
        return self.fields.get(number, default)

    def items(self) -> list[tuple[int, Any]]:
        return [(n, self.fields[n]) for n in sorted(self.fields)]

    def pop(self, number: int, *default: Any) -> Any:
        return self.fields.pop(number, *default)

    # -- helpers -----------------------------------------------------------------------------
    def copy(self) -> Message:
        return Message(self.mti, {n: (dict(v) if isinstance(v, dict) else v) for n, v in self.fields.items()})

    @property
    def mti_class(self) -> str:
        """Second MTI digit: 1 auth, 2 financial, 3 file action, 4 reversal, 5 reconciliation, 8 network."""
        return self.mti[1]

    @property
    def is_request(self) -> bool:
        """Requests, advices and notifications (function digit 0, 2, 4) — anything that wants an answer."""
        return self.mti[2] in "024"

    @property
    def is_response(self) -> bool:
        return self.mti[2] in "13"

    @property
    def is_repeat(self) -> bool:
        return self.mti[3] in "13"

    def response_mti(self) -> str:
        """0200 -> 0210, 0401 -> 0410, 0220/0221 -> 0230 (a repeat's response drops the repeat digit)."""
        mti = self.mti
        response = _RESPONSE_MTI.get(mti)   # asked for every request sent and every answer matched
        if response is not None:
            return response
        if self.is_response:
            raise ValueError(f"{mti} is already a response")
        origin = "0" if mti[3] == "1" else ("2" if mti[3] == "3" else mti[3])
        response = mti[:2] + str(int(mti[2]) + 1) + origin
        if len(_RESPONSE_MTI) < 256:
            _RESPONSE_MTI[mti] = response
        return response

    def repeat_mti(self) -> str:
        """0400 -> 0401, 0220 -> 0221: the MTI for a retransmission of this request."""
        return self.mti[:3] + str(int(self.mti[3]) | 1)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self.mti == other.mti and self.fields == other.fields

    def __hash__(self) -> int:  # pragma: no cover - messages are mutable
        raise TypeError("Message is mutable and unhashable")

    def __repr__(self) -> str:
        body = ", ".join(f"{n}: {mask_value(n, self.fields[n])}" for n in sorted(self.fields))
        return f"Message({self.mti!r}, {{{body}}})"
