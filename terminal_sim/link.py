"""The terminal's side of the wire: Message <-> frame, MAC stamping/verification, PIN blocks, keys.

Everything dialect- and crypto-specific the terminal needs sits behind this one small interface,
so the transaction state machine (``terminal.py``) reads like the flow in DESIGN §3 and tests can
swap in a stand-in when they exercise only the state machine.
"""

from __future__ import annotations

import random
from typing import Any, Protocol

from iso8583.message import Message
from iso8583.transactions import Family, family_of


class LinkError(Exception):
    """A frame that cannot be decoded (the terminal treats it as a malformed response)."""


class WireLink(Protocol):
    family: Family

    def supports(self, field: int) -> bool: ...
    def pack(self, msg: Message, keys: Any | None) -> bytes: ...
    def unpack(self, frame: bytes, keys: Any | None) -> tuple[Message, bool | None]: ...
    def unwrap_keys(self, field62: Any) -> Any: ...
    def pin_block(self, pin: str, pan: str, keys: Any) -> bytes: ...


class Link:
    """The real link: ``iso8583`` codec + wire envelope + ``iso8583.security`` for one dialect."""

    def __init__(self, dialect: str, *, tmk: bytes, mac_algorithm: str | None = None, pin_format: int = 0,
                 rng: random.Random | None = None) -> None:
        from iso8583.wire import Wire

        from iso8583 import load_spec

        self.spec = load_spec(dialect)
        self.wire = Wire(self.spec)
        self.family: Family = family_of(self.spec if hasattr(self.spec, "family") else dialect)
        self._fields = set(self.spec.fields)
        self._tmk = tmk
        self._mac_algorithm = mac_algorithm  # None: the dialect's default (iso8583.security.mac)
        self._pin_format = pin_format
        self._rng = rng

    def supports(self, field: int) -> bool:
        return field in self._fields

    def pack(self, msg: Message, keys: Any | None) -> bytes:
        from iso8583.security import mac

        if keys is not None:
            msg = mac.stamp(msg, self.spec, keys.mac_key, self._mac_algorithm)
        return self.wire.pack(msg)

    def unpack(self, frame: bytes, keys: Any | None) -> tuple[Message, bool | None]:
        from iso8583.errors import ISO8583Error
        from iso8583.security import mac

        try:
            msg, _envelope = self.wire.unpack(frame)
        except ISO8583Error as exc:
            raise LinkError(str(exc)) from None
        if keys is None or (64 not in msg and 128 not in msg):
            return msg, None
        try:
            ok = bool(mac.verify(msg, self.spec, keys.mac_key, self._mac_algorithm))
        except ISO8583Error:
            ok = False
        return msg, ok

    def unwrap_keys(self, field62: Any) -> Any:
        from iso8583.security import keys

        return keys.WorkingKeys.unpack(field62, self._tmk)

    def pin_block(self, pin: str, pan: str, keys: Any) -> bytes:
        from iso8583.security import pin as pinmod

        return pinmod.encrypt(pin, pan, keys.pin_key, fmt=self._pin_format, rng=self._rng)



def terminal_master_key(name_or_hex: str) -> Any:
    """The TMK: ``"tmk"`` is the TEST ONLY key of fixtures/keys/test_keys.toml, else hex key material."""
    from iso8583.security import keys

    if name_or_hex == "tmk":
        return keys.load_test_keys().tmk
    return keys.Key.from_hex(name_or_hex)
