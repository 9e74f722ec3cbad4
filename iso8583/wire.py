"""Wire: one dialect's ``Message <-> frame`` mapping (codec + TPDU/application header), CONTRACTS §2.

A *frame* is one message as a channel carries it, without the length header: for the ISO dialects
just the encoded message, for ``unionpay_pos`` ``TPDU(5) + application header(6) + message``. The
dialect's ``spec.wire`` table gives the defaults:

=====================  ==========================================================================
``length``             ``"binary2"`` (default), ``"binary4"``, ``"ascii4"`` or ``"bcd2"``
                       (``length_header`` is accepted as an alias)
``length_inclusive``   ``true`` when the length counts the header itself (default ``false``)
``tpdu``               default TPDU as 10 hex digits (``"6000030000"``); absent/empty: no TPDU
``header``             default application header, 12 hex digits (``"603100000000"``); absent:
                       none (``app_header`` is accepted as an alias)
``max_frame``          largest frame a channel accepts for this dialect (default 8192)
=====================  ==========================================================================

Example::

    wire = Wire(load_spec("unionpay_pos"))
    frame = wire.pack(Message("0800", {...}))            # TPDU + header + message
    msg, env = wire.unpack(frame)
    reply = wire.pack(response, env.reply())             # TPDU addresses swapped
    ch = await tcp.connect("127.0.0.1", 5000, header=wire.prefix)

:meth:`Wire.peek` is the forgiving reader used by traces and the fault layer: it never raises and
gives the MTI, STAN and TID when the frame decodes (``None`` and the error text otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .framing import DEFAULT_MAX_FRAME, AppHeader, Envelope, FramingError, LengthPrefix, Tpdu, length_prefix
from .message import Message

__all__ = ["Peek", "Wire", "wire_for"]


@dataclass(frozen=True)
class Peek:
    """What a frame says, if it decodes: ``message`` (or ``None``), its envelope and the error text."""

    message: Message | None
    envelope: Envelope | None
    error: str | None = None

    @property
    def mti(self) -> str | None:
        return self.message.mti if self.message is not None else None

    @property
    def stan(self) -> str | None:
        return self.message.get(11) if self.message is not None else None

    @property
    def tid(self) -> str | None:
        return self.message.get(41) if self.message is not None else None


def _opt_hex(value: Any) -> str | None:
    if value in (None, "", False):
        return None
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


class Wire:
    """``Message <-> frame`` for one spec; ``prefix`` is the length header channels should use.

    ``tpdu``/``app_header`` override the spec's defaults (hex strings, :class:`Tpdu`/:class:`AppHeader`
    objects, or ``None`` to send none); ``length_header`` overrides the header kind.
    """

    _UNSET: Any = object()

    def __init__(self, spec: Any, *, tpdu: Any = _UNSET, app_header: Any = _UNSET,
                 length_header: str | LengthPrefix | None = None,
                 encode: Any = None, decode: Any = None) -> None:
        if isinstance(spec, (str, dict)):
            from . import load_spec  # the codec; imported late so framing works without it
            spec = load_spec(spec)
        self.spec = spec
        wire: dict[str, Any] = dict(getattr(spec, "wire", None) or {})
        kind = length_header or wire.get("length", wire.get("length_header", "binary2"))
        self.prefix: LengthPrefix = length_prefix(kind,
                                                  inclusive=bool(wire.get("length_inclusive", False)))
        self.max_frame: int = int(wire.get("max_frame", DEFAULT_MAX_FRAME))
        tpdu_value = wire.get("tpdu") if tpdu is Wire._UNSET else tpdu
        header_value = wire.get("header", wire.get("app_header")) if app_header is Wire._UNSET else app_header
        self.tpdu: Tpdu | None = (tpdu_value if isinstance(tpdu_value, Tpdu) or tpdu_value is None
                                  else (Tpdu.from_hex(h) if (h := _opt_hex(tpdu_value)) else None))
        self.app_header: AppHeader | None = (
            header_value if isinstance(header_value, AppHeader) or header_value is None
            else (AppHeader.from_hex(h) if (h := _opt_hex(header_value)) else None))
        self.envelope: Envelope | None = (Envelope(self.tpdu, self.app_header)
                                          if (self.tpdu or self.app_header) else None)
        self._env_size = self.envelope.size if self.envelope else 0
        # The codec functions (``iso8583.encode/decode`` unless a custom codec is injected), bound on
        # first use so framing and channels import without the codec.
        self._encode = encode
        self._decode = decode

    def _codec(self) -> None:
        from . import decode, encode  # late: see above

        self._encode = self._encode or encode
        self._decode = self._decode or decode

    @property
    def name(self) -> str:
        return str(getattr(self.spec, "name", "spec"))

    def pack(self, msg: Message, envelope: Envelope | None = None) -> bytes:
        """The frame for ``msg``: envelope (given, else the dialect default) + encoded message."""
        if self._encode is None:
            self._codec()
        body = self._encode(msg, self.spec)
        if not self._env_size:
            if envelope is not None and (envelope.tpdu or envelope.header):
                raise FramingError(f"dialect {self.name} carries no TPDU/application header, but an "
                                   "envelope was given")
            return body
        env = envelope or self.envelope
        assert env is not None
        if (env.tpdu is None) != (self.tpdu is None) or (env.header is None) != (self.app_header is None):
            raise FramingError(f"envelope {env} does not match dialect {self.name} (TPDU "
                               f"{'yes' if self.tpdu else 'no'}, app header {'yes' if self.app_header else 'no'})")
        return env.build() + body

    def unpack(self, frame: bytes) -> tuple[Message, Envelope | None]:
        """``(message, envelope)``; raises :class:`FramingError` (envelope) or ``DecodeError`` (message).

        DecodeError offsets are relative to the MTI, as ``decode`` sees the bytes after the envelope.
        """
        if self._decode is None:
            self._codec()
        if not self._env_size:
            return self._decode(frame, self.spec), None
        if len(frame) < self._env_size:
            raise FramingError(f"frame of {len(frame)} bytes is shorter than its {self._env_size}-byte "
                               "TPDU/application header", offset=0, expected=f">= {self._env_size} bytes",
                               found=f"{len(frame)} bytes")
        env = Envelope.parse(frame, tpdu=self.tpdu is not None, header=self.app_header is not None)
        return self._decode(frame[self._env_size:], self.spec), env

    def unpack_message(self, frame: bytes) -> Message:
        return self.unpack(frame)[0]

    def peek(self, frame: bytes) -> Peek:
        """Decode without raising: for traces and fault rules, which must survive garbage."""
        try:
            msg, env = self.unpack(frame)
        except Exception as exc:  # any failure means "not a message": byte-level rules still apply
            return Peek(None, None, f"{type(exc).__name__}: {exc}")
        return Peek(msg, env)

    def wrap(self, msg: Message, envelope: Envelope | None = None) -> bytes:
        """The complete bytes on a stream: length header + frame."""
        return self.prefix.wrap(self.pack(msg, envelope))

    def __repr__(self) -> str:
        return (f"Wire({self.name}, header={self.prefix.kind}, tpdu={self.tpdu}, "
                f"app_header={self.app_header})")


def wire_for(spec: Any) -> Wire:
    """A :class:`Wire` for a spec object, name, path or dict."""
    return spec if isinstance(spec, Wire) else Wire(spec)
