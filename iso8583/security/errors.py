"""Errors of :mod:`iso8583.security`.

Their text names what was wrong (lengths, formats, check values, which field) and never contains key
material, PINs or clear PIN blocks: an exception ends up in logs, traces and CI output.
"""

from __future__ import annotations

from ..errors import ISO8583Error


class SecurityError(ISO8583Error, ValueError):
    """Base class: bad key length, unknown algorithm, malformed input to a security primitive."""


class PinBlockError(SecurityError):
    """A PIN block is malformed, or does not decode under the given key and PAN."""


class MacError(SecurityError):
    """A MAC could not be computed or placed (no MAC field in the dialect, wrong field size...)."""


class KeyCheckError(SecurityError):
    """A key did not match its key check value (wrong master key, corrupted sign-on field 62)."""


class DukptError(SecurityError):
    """A KSN is malformed or its transaction counter is exhausted."""
