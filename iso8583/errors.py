"""Errors raised by the codec.

Both carry the field number and byte offset where the problem was found, so a user holding a
capture from a real terminal can go straight to the bad bytes. Messages never contain sensitive
field values in clear: callers pass already-masked `found` text (see :mod:`iso8583.mask`).
"""

from __future__ import annotations


class ISO8583Error(Exception):
    """Base class of every error this package raises on purpose."""


class CodecError(ISO8583Error, ValueError):
    """A message could not be encoded or decoded.

    ``field`` is the field number (``None`` for the MTI/bitmap/whole message, ``"MTI"`` is not used:
    the MTI is field 0), ``offset`` the byte offset into the data where the faulty element starts.
    """

    def __init__(self, message: str, *, field: int | str | None = None, offset: int | None = None,
                 expected: str | None = None, found: str | None = None) -> None:
        self.field = field
        self.offset = offset
        self.expected = expected
        self.found = found
        self.reason = message
        where = []
        if field is not None:
            where.append(f"field {field}" if isinstance(field, int) else str(field))
        text = ": ".join([", ".join(where), message]) if where else message
        if offset is not None and "offset" not in message:
            text += f" (at offset {offset})"
        super().__init__(text)


class DecodeError(CodecError):
    """Raised by :func:`iso8583.decode`; the only exception type ``decode`` lets escape."""


class EncodeError(CodecError):
    """Raised by :func:`iso8583.encode` for a value that does not fit its field spec."""


class SpecError(ISO8583Error, ValueError):
    """A spec (dialect definition) is malformed; says which field and which key."""
