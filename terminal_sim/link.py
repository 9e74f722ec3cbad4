"""The terminal's side of the wire: Message <-> frame, MAC stamping/verification, PIN blocks, keys.

Everything dialect- and crypto-specific the terminal needs sits behind this one small interface,
so the transaction state machine (``terminal.py``) reads like the flow in DESIGN §3 and tests can
swap in a stand-in when they exercise only the state machine.
"""

from __future__ import annotations

import functools
import hmac
import random
from typing import Any, Protocol

from iso8583.errors import ISO8583Error
from iso8583.message import Message
from iso8583.transactions import Family, family_of

from .errors import TerminalError

_MAC_PLACEHOLDER = bytes(8)


class LinkError(Exception):
    """A frame that cannot be decoded (the terminal treats it as a malformed response)."""


class WireLink(Protocol):
    family: Family

    def supports(self, field: int) -> bool: ...
    def field_size(self, field: int) -> int | None: ...
    def pack(self, msg: Message, keys: Any | None) -> bytes: ...
    def unpack(self, frame: bytes, keys: Any | None) -> tuple[Message, bool | None]: ...
    def unwrap_keys(self, field62: Any) -> Any: ...
    def pin_block(self, pin: str, pan: str, keys: Any) -> bytes: ...


class Link:
    """The real link: ``iso8583`` codec + wire envelope + ``iso8583.security`` for one dialect.

    MACs: the MAC field (64) is the last field of the message, so stamping encodes the message
    once with a placeholder and MACs the bytes before it, and verification MACs the received
    bytes before it — no re-encoding. Messages with secondary-bitmap fields (MAC in 128) go
    through ``iso8583.security.mac.stamp/verify``. Equivalence is tested.
    """

    def __init__(self, dialect: str, *, tmk: bytes, mac_algorithm: str | None = None, pin_format: int = 0,
                 rng: random.Random | None = None) -> None:
        self.spec = _load_spec(dialect)
        action_code = self.spec.fields.get(39)
        if action_code is not None and getattr(action_code, "max", 2) != 2:
            raise TerminalError(f"dialect {dialect!r}: field 39 is a {action_code.max}-digit action code (ISO 8583:1993);"
                                " the terminal speaks the ISO 8583:1987 family and UnionPay POS"
                                " (iso87ascii, iso87binary, unionpay_pos)")
        self.wire = _wire(dialect)
        self.family: Family = family_of(self.spec if hasattr(self.spec, "family") else dialect)
        self._fields, self._sizes, self.unsupported = _tables(dialect)
        self._tmk = tmk
        from iso8583 import encode
        from iso8583.security import mac
        from iso8583.security import pin as pinmod

        self._encode = encode
        self._mac = mac
        self._pinmod = pinmod   # bound once: an import statement per PIN entry costs a few µs
        self._mac_algorithm = mac.algorithm_for(self.spec, mac_algorithm)
        self._pin_format = pin_format
        self._rng = rng
        # Format 0 PIN blocks by (PIN, PAN), for the PIN key they were made under (see pin_block).
        self._pin_blocks: dict[tuple[str, str], tuple[Any, bytes]] = {}
        self._env_size = self.wire.envelope.size if self.wire.envelope is not None else 0
        # The terminal always sends the dialect's default envelope (TPDU / application header):
        # built once, not per message. Received envelopes are skipped, not parsed: the terminal
        # does not act on them, and parsing one costs more than decoding the message.
        self._env_bytes = _envelope_bytes(dialect)
        from iso8583 import decode

        self._decode = decode
        f64 = self.spec.fields.get(64)
        self._f64 = f64
        self._f64_size = len(f64.encode(b"\0" * 8)) if f64 is not None and getattr(f64, "max", 0) == 8 else None

    def supports(self, field: int) -> bool:
        return field in self._fields

    def field_size(self, field: int) -> int | None:
        """The dialect's (maximum) length of ``field``: tells e.g. 1987's MMDD field 13 from 1993's."""
        return self._sizes.get(field)

    def pack(self, msg: Message, keys: Any | None) -> bytes:
        if keys is None:
            return self._env_bytes + self._encode(msg, self.spec)
        size = self._f64_size
        if size is None or max(msg.fields, default=0) > 64:
            stamped = self._mac.stamp(msg, self.spec, keys.mac_key, self._mac_algorithm)
            return self._env_bytes + self._encode(stamped, self.spec)
        work = Message(msg.mti)                      # the encoder only reads: a shallow copy is enough
        work.fields = {**msg.fields, 64: _MAC_PLACEHOLDER}
        body = self._encode(work, self.spec)
        head = body[:-size]
        code = self._mac.compute(self._mac_algorithm, keys.mac_key, head)
        return self._env_bytes + head + self._f64.encode(code)

    def unpack(self, frame: bytes, keys: Any | None) -> tuple[Message, bool | None]:
        env_size = self._env_size
        if len(frame) < env_size:
            raise LinkError(f"frame of {len(frame)} bytes is shorter than its {env_size}-byte "
                            "TPDU/application header")
        try:
            msg = self._decode(frame[env_size:] if env_size else frame, self.spec)
        except ISO8583Error as exc:
            raise LinkError(str(exc)) from None
        if keys is None or (64 not in msg and 128 not in msg):
            return msg, None
        received = msg.get(64)
        size = self._f64_size
        try:
            if size is None or 128 in msg or max(msg.fields, default=0) > 64 or not isinstance(received, bytes):
                return msg, bool(self._mac.verify(frame[self._env_size:], self.spec, keys.mac_key,
                                                  self._mac_algorithm))
            code = self._mac.compute(self._mac_algorithm, keys.mac_key, frame[self._env_size:len(frame) - size])
        except ISO8583Error:
            return msg, False
        return msg, hmac.compare_digest(code, received)

    def unwrap_keys(self, field62: Any) -> Any:
        from iso8583.security import keys

        return keys.WorkingKeys.unpack(field62, self._tmk)

    def pin_block(self, pin: str, pan: str, keys: Any) -> bytes:
        """Field 52 for ``pin`` on ``pan`` under the working PIN key.

        A format 0 block is a pure function of PIN, PAN and key (no random fill, nothing drawn
        from ``rng``), so it is remembered per (PIN, PAN) for the key object it was made under: a
        simulation presents the same few cards thousands of times, and enciphering costs about a
        twentieth of a sale. Formats 1, 3 and 4 are enciphered every time (their fill is random).
        Only the enciphered block is kept besides what the caller already holds (the card's PIN
        and PAN); new working keys make every entry miss. Equivalence is tested.
        """
        key = keys.pin_key
        if self._pin_format != 0:
            return self._pinmod.encrypt(pin, pan, key, fmt=self._pin_format, rng=self._rng)
        found = self._pin_blocks.get((pin, pan))
        if found is not None and found[0] is key:
            return found[1]
        block = self._pinmod.encrypt(pin, pan, key, fmt=0, rng=self._rng)
        if len(self._pin_blocks) >= 64:
            self._pin_blocks.clear()
        self._pin_blocks[(pin, pan)] = (key, block)
        return block



@functools.lru_cache(maxsize=32)
def terminal_master_key(name_or_hex: str) -> Any:
    """The TMK: ``"tmk"`` is the TEST ONLY key of fixtures/keys/test_keys.toml, else hex key material.

    Cached: terminals are re-created after every simulated power cut and must be cheap to build.
    """
    from iso8583.security import keys

    if name_or_hex == "tmk":
        return keys.load_test_keys().tmk
    return keys.Key.from_hex(name_or_hex)


@functools.lru_cache(maxsize=32)
def _load_spec(dialect: str) -> Any:
    from iso8583 import load_spec

    return load_spec(dialect)


@functools.lru_cache(maxsize=32)
def _tables(dialect: str) -> tuple[frozenset[int], dict[int, int | None], frozenset[int]]:
    """(field numbers, their maximum lengths, the numbers 2..192 the dialect lacks) — per dialect, so
    that building a Link (after every simulated power cut) costs no per-field work."""
    fields = _load_spec(dialect).fields
    numbers = frozenset(fields)
    return numbers, {n: getattr(f, "max", None) for n, f in fields.items()}, frozenset(range(2, 193)) - numbers


@functools.lru_cache(maxsize=32)
def _envelope_bytes(dialect: str) -> bytes:
    envelope = _wire(dialect).envelope
    return envelope.build() if envelope is not None else b""


@functools.lru_cache(maxsize=32)
def _wire(dialect: str) -> Any:
    """Wires are immutable per dialect (envelope defaults parsed once)."""
    from iso8583.wire import Wire

    return Wire(_load_spec(dialect))
