"""Framing: how ISO 8583 messages are delimited on a byte stream (TCP, serial), separate from the codec.

Three layers, as in jPOS (packager vs channel):

* **Length headers** (:class:`LengthPrefix`): ``binary2`` (2-byte big-endian, the UnionPay/most
  common form), ``binary4``, ``ascii4`` (4 ASCII digits) and ``bcd2`` (2 bytes packed BCD). Some
  hosts count the header itself in the length (``inclusive=True``).
* **Envelopes** (:class:`Tpdu`, :class:`AppHeader`, :class:`Envelope`): the 5-byte TPDU
  (``60 dddd ssss``: id, destination NII, source NII) and the 6-byte UnionPay application header
  that precede the MTI in the UnionPay POS dialect.
* **Serial frames** (:func:`build_serial_frame`, :class:`SerialDeframer`):
  ``STX | LEN(2, BCD) | DATA | ETX | LRC`` where ``LRC`` is the XOR of every byte after STX up to and
  including ETX; the receiver answers ``ACK`` (0x06) or ``NAK`` (0x15).

The byte layouts are declared once with :mod:`construct` (``*_FORMAT`` below) and used for building
and parsing. The incremental :class:`Deframer` sits on every received byte of every connection, so
it decodes the length with a precomputed plain-Python reader that the tests check against the
construct declaration for every value (construct costs ~3 µs per parse; the hot path cannot).

Errors are :class:`FramingError` with the stream ``offset``, ``expected`` and ``found`` — e.g.
``length header at offset 130: expected 4 ASCII digits, found b'00A1'``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import construct as cs

from .errors import ISO8583Error

__all__ = [
    "ACK",
    "ETX",
    "NAK",
    "STX",
    "AppHeader",
    "Deframer",
    "Envelope",
    "FrameTooLarge",
    "FramingError",
    "LengthPrefix",
    "SerialAck",
    "SerialBadFrame",
    "SerialDeframer",
    "SerialFrame",
    "SerialNak",
    "Tpdu",
    "build_serial_frame",
    "length_prefix",
    "lrc",
    "parse_serial_frame",
]

DEFAULT_MAX_FRAME = 8192


class FramingError(ISO8583Error, ValueError):
    """Bytes on the wire do not form a valid frame; says where (stream offset) and what was found."""

    def __init__(self, message: str, *, offset: int | None = None, expected: str | None = None,
                 found: str | None = None) -> None:
        self.offset = offset
        self.expected = expected
        self.found = found
        self.reason = message
        text = message
        if offset is not None and "offset" not in message:
            text = f"{message} (at offset {offset})"
        super().__init__(text)


class FrameTooLarge(FramingError):
    """A length header announces more bytes than the configured maximum (``max_frame``).

    Raised *before* reading the body, so a hostile or corrupted header cannot make us buffer megabytes.
    """

    def __init__(self, length: int, maximum: int, offset: int | None = None) -> None:
        self.length = length
        self.maximum = maximum
        super().__init__(f"frame length {length} exceeds the maximum of {maximum} bytes",
                         offset=offset, expected=f"<= {maximum}", found=str(length))


# ---------------------------------------------------------------------------------------------------
# Length headers
# ---------------------------------------------------------------------------------------------------

def _bcd_decode(data: bytes) -> int:
    value = 0
    for byte in data:
        hi, lo = byte >> 4, byte & 0x0F
        if hi > 9 or lo > 9:
            raise ValueError(f"not packed BCD: {data.hex().upper()}")
        value = value * 100 + hi * 10 + lo
    return value


def _bcd_encode(value: int, size: int) -> bytes:
    digits = f"{value:0{size * 2}d}"
    if len(digits) != size * 2:
        raise ValueError(f"{value} does not fit in {size} BCD bytes")
    return bytes.fromhex(digits)


def _ascii_decode(data: bytes) -> int:
    if not data.isdigit():
        raise ValueError(f"not ASCII digits: {data!r}")
    return int(data)


def _ascii_encode(value: int, size: int) -> bytes:
    text = f"{value:0{size}d}"
    if len(text) != size:
        raise ValueError(f"{value} does not fit in {size} ASCII digits")
    return text.encode("ascii")


def _checked(fn, *args):  # construct adapters must raise construct errors to be reported nicely
    try:
        return fn(*args)
    except ValueError as exc:
        raise cs.ValidationError(str(exc)) from None


#: Construct declarations of every length header kind: the single source of truth for the layouts.
LENGTH_FORMATS: dict[str, cs.Construct] = {
    "binary2": cs.Int16ub,
    "binary4": cs.Int32ub,
    "ascii4": cs.ExprAdapter(cs.Bytes(4), decoder=lambda obj, ctx: _checked(_ascii_decode, obj),
                             encoder=lambda obj, ctx: _checked(_ascii_encode, obj, 4)),
    "bcd2": cs.ExprAdapter(cs.Bytes(2), decoder=lambda obj, ctx: _checked(_bcd_decode, obj),
                           encoder=lambda obj, ctx: _checked(_bcd_encode, obj, 2)),
}
_LENGTH_SIZES = {"binary2": 2, "binary4": 4, "ascii4": 4, "bcd2": 2}
_LENGTH_MAX = {"binary2": 0xFFFF, "binary4": 0xFFFFFFFF, "ascii4": 9999, "bcd2": 9999}
_LENGTH_EXPECTED = {"binary2": "2-byte binary length", "binary4": "4-byte binary length",
                    "ascii4": "4 ASCII digits", "bcd2": "2 bytes of packed BCD"}
_FAST_DECODE = {
    "binary2": lambda b: (b[0] << 8) | b[1],
    "binary4": lambda b: int.from_bytes(b, "big"),
    "ascii4": _ascii_decode,
    "bcd2": _bcd_decode,
}
_FAST_ENCODE = {
    "binary2": lambda n: n.to_bytes(2, "big"),
    "binary4": lambda n: n.to_bytes(4, "big"),
    "ascii4": lambda n: _ascii_encode(n, 4),
    "bcd2": lambda n: _bcd_encode(n, 2),
}
#: Names users may write in a dialect's ``[wire]`` table, mapped to the canonical kind.
_ALIASES = {
    "binary2": "binary2", "b2": "binary2", "2": "binary2", "binary": "binary2", "hex2": "binary2",
    "binary4": "binary4", "b4": "binary4",
    "ascii4": "ascii4", "a4": "ascii4", "4": "ascii4", "ascii": "ascii4",
    "bcd2": "bcd2", "bcd": "bcd2",
}


@dataclass(frozen=True)
class LengthPrefix:
    """A length header kind: ``binary2``, ``binary4``, ``ascii4`` or ``bcd2``.

    ``inclusive``: the announced length counts the header bytes too (some hosts do this).
    """

    kind: str = "binary2"
    inclusive: bool = False

    def __post_init__(self) -> None:
        if self.kind not in LENGTH_FORMATS:
            raise ValueError(f"unknown length header kind {self.kind!r}; expected one of "
                             f"{sorted(LENGTH_FORMATS)}")

    # Cached (in the instance's dict, which a frozen dataclass still has): channels and links read
    # them for every connection and frame.
    @functools.cached_property
    def size(self) -> int:
        """Bytes taken by the header itself."""
        return _LENGTH_SIZES[self.kind]

    @functools.cached_property
    def max_length(self) -> int:
        """Largest frame (without header) this kind can announce."""
        return _LENGTH_MAX[self.kind] - (self.size if self.inclusive else 0)

    @property
    def format(self) -> cs.Construct:
        """The construct declaration of this header."""
        return LENGTH_FORMATS[self.kind]

    def build(self, length: int) -> bytes:
        """Header bytes announcing a frame of ``length`` bytes."""
        if not 0 <= length <= self.max_length:
            raise FramingError(f"cannot frame {length} bytes with a {self.kind} length header",
                               expected=f"0..{self.max_length}", found=str(length))
        return _FAST_ENCODE[self.kind](length + (self.size if self.inclusive else 0))

    def parse(self, header: bytes, offset: int | None = None) -> int:
        """Frame length announced by ``header`` (exactly :attr:`size` bytes)."""
        if len(header) != self.size:
            raise FramingError(f"length header needs {self.size} bytes, got {len(header)}",
                               offset=offset, expected=f"{self.size} bytes", found=str(len(header)))
        try:
            value = _FAST_DECODE[self.kind](header)
        except ValueError:
            raise FramingError(f"bad length header {header!r}: expected {_LENGTH_EXPECTED[self.kind]}",
                               offset=offset, expected=_LENGTH_EXPECTED[self.kind],
                               found=repr(bytes(header))) from None
        if self.inclusive:
            if value < self.size:
                raise FramingError(f"inclusive length {value} is shorter than its own header",
                                   offset=offset, expected=f">= {self.size}", found=str(value))
            value -= self.size
        return value

    def wrap(self, frame: bytes) -> bytes:
        """``header + frame``: what goes on the wire for one message."""
        return self.build(len(frame)) + frame

    def deframer(self, max_frame: int = DEFAULT_MAX_FRAME) -> Deframer:
        return Deframer(self, max_frame=max_frame)


def length_prefix(spec: str | LengthPrefix | None, *, inclusive: bool = False) -> LengthPrefix:
    """Normalize a header description (``"binary2"``, ``"ascii4"``, ``"bcd"``, a LengthPrefix...)."""
    if isinstance(spec, LengthPrefix):
        return spec
    if spec is None:
        return LengthPrefix("binary2", inclusive)
    kind = _ALIASES.get(str(spec).strip().lower())
    if kind is None:
        raise ValueError(f"unknown length header {spec!r}; expected one of {sorted(LENGTH_FORMATS)}")
    return LengthPrefix(kind, inclusive)


class Deframer:
    """Incremental reassembly of length-prefixed frames from arbitrary byte fragments.

    ``feed(data)`` returns every frame completed by ``data`` (possibly none, possibly several), in
    order. A header announcing more than ``max_frame`` bytes raises :class:`FrameTooLarge` before
    the body is buffered; a malformed header raises :class:`FramingError`. Either error leaves the
    stream unusable (there is no way to find the next frame boundary), so the channel closes.
    ``offset`` is the stream position of the next unconsumed byte, for error messages.
    """

    __slots__ = ("_buf", "_decode", "_hsize", "_inclusive", "_need", "max_frame", "offset", "prefix")

    def __init__(self, prefix: LengthPrefix | str = "binary2", max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.prefix = length_prefix(prefix)
        self.max_frame = max_frame
        self.offset = 0
        self._buf = bytearray()
        self._hsize = self.prefix.size
        self._decode = _FAST_DECODE[self.prefix.kind]
        self._inclusive = self.prefix.inclusive
        self._need = -1  # body length of the frame in progress, -1 while reading a header

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame (its header included)."""
        return len(self._buf) + (self._hsize if self._need >= 0 else 0)

    def feed(self, data: bytes) -> list[bytes]:
        """Frames completed by ``data``. On a bad header the error carries ``frames``: the complete
        frames that preceded it in this chunk, which a channel still delivers before failing."""
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        try:
            pos = self._cut(buf, frames)
        except FramingError as exc:
            exc.frames = frames  # type: ignore[attr-defined]
            raise
        if pos:
            del buf[:pos]
        return frames

    def _cut(self, buf: bytearray, frames: list[bytes]) -> int:
        pos = 0
        hsize = self._hsize
        end = len(buf)
        while True:
            need = self._need
            if need < 0:
                if end - pos < hsize:
                    break
                header = bytes(buf[pos:pos + hsize])
                try:
                    need = self._decode(header)
                except ValueError:
                    expected = _LENGTH_EXPECTED[self.prefix.kind]
                    raise FramingError(f"length header at offset {self.offset}: expected {expected}, "
                                       f"found {header!r}", offset=self.offset, expected=expected,
                                       found=repr(header)) from None
                if self._inclusive:
                    need -= hsize
                    if need < 0:
                        raise FramingError(f"length header at offset {self.offset}: inclusive length "
                                           f"shorter than the header", offset=self.offset,
                                           expected=f">= {hsize}", found=str(need + hsize))
                if need > self.max_frame:
                    raise FrameTooLarge(need, self.max_frame, self.offset)
                pos += hsize
                self.offset += hsize
                self._need = need
            if end - pos < need:
                break
            frames.append(bytes(buf[pos:pos + need]))
            pos += need
            self.offset += need
            self._need = -1
        return pos


# ---------------------------------------------------------------------------------------------------
# TPDU and UnionPay application header
# ---------------------------------------------------------------------------------------------------

TPDU_FORMAT = cs.Struct("id" / cs.Int8ub, "destination" / cs.Bytes(2), "source" / cs.Bytes(2))
APP_HEADER_FORMAT = cs.Struct(
    "app_type" / cs.Bytes(1),
    "version" / cs.Bytes(1),
    "status" / cs.BitStruct("terminal_status" / cs.Nibble, "processing" / cs.Nibble),
    "reserved" / cs.Bytes(3),
)


#: Envelope parts seen before: a link repeats the same TPDU and application header on every frame,
#: and running their construct definitions per frame cost ~40 µs each way (15x the rest of a
#: UnionPay pack). Both parts are frozen values, so a parse or build is a pure function of its input;
#: the maps are bounded (cleared when full) so hostile traffic with varying headers cannot grow them.
_MEMO_LIMIT = 1024
_BUILT: dict[Any, bytes] = {}
_PARSED: dict[tuple[type, bytes], Any] = {}


def _remember(memo: dict[Any, Any], key: Any, value: Any) -> None:
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[key] = value


def _hex4(value: str, what: str) -> str:
    text = value.upper()
    if len(text) != 4 or any(ch not in "0123456789ABCDEF" for ch in text):
        raise ValueError(f"TPDU {what} must be 4 hex digits (2 bytes), got {value!r}")
    return text


@dataclass(frozen=True)
class Tpdu:
    """Transport Protocol Data Unit: ``id`` (0x60), ``destination`` and ``source`` NII (4 hex digits).

    A host answers with the addresses swapped (:meth:`reply`), which is how a front-end routes the
    response back to the terminal that asked.
    """

    id: int = 0x60
    destination: str = "0000"
    source: str = "0000"

    SIZE = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "destination", _hex4(self.destination, "destination"))
        object.__setattr__(self, "source", _hex4(self.source, "source"))
        if not 0 <= self.id <= 0xFF:
            raise ValueError(f"TPDU id must be one byte, got {self.id}")

    def build(self) -> bytes:
        built = _BUILT.get(self)
        if built is None:
            built = TPDU_FORMAT.build({"id": self.id, "destination": bytes.fromhex(self.destination),
                                       "source": bytes.fromhex(self.source)})
            _remember(_BUILT, self, built)
        return built

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> Tpdu:
        if len(data) < cls.SIZE:
            raise FramingError(f"TPDU at offset {offset}: expected 5 bytes, found {len(data)}",
                               offset=offset, expected="5 bytes", found=f"{len(data)} bytes")
        raw = bytes(data[:cls.SIZE])
        parsed = _PARSED.get((cls, raw))
        if parsed is None:
            obj = TPDU_FORMAT.parse(raw)
            parsed = cls(obj.id, obj.destination.hex().upper(), obj.source.hex().upper())
            _remember(_PARSED, (cls, raw), parsed)
        return parsed

    @classmethod
    def from_hex(cls, text: str) -> Tpdu:
        raw = bytes.fromhex(text)
        if len(raw) != cls.SIZE:
            raise ValueError(f"TPDU must be 10 hex digits, got {text!r}")
        return cls.parse(raw)

    def reply(self) -> Tpdu:
        return Tpdu(self.id, self.source, self.destination)

    def __str__(self) -> str:
        return self.build().hex().upper()


@dataclass(frozen=True)
class AppHeader:
    """UnionPay POS application header (6 bytes): application type (``"60"``), software version
    (``"31"``), terminal status (0 normal, 1 test), processing requirement (0 none, 1 download
    parameters, 2 upload status, 3 sign on again, 4 public keys, 5 IC parameters, 6 TMS ...) and
    3 reserved bytes. The host sets ``processing`` to ask the terminal for an action.
    """

    app_type: str = "60"
    version: str = "31"
    terminal_status: int = 0
    processing: int = 0
    reserved: str = "000000"

    SIZE = 6

    def __post_init__(self) -> None:
        for name, size in (("app_type", 2), ("version", 2), ("reserved", 6)):
            value = getattr(self, name)
            try:
                ok = len(value) == size and len(bytes.fromhex(value)) * 2 == size
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"application header {name} must be {size} hex digits, got {value!r}")
        for name in ("terminal_status", "processing"):
            if not 0 <= getattr(self, name) <= 15:
                raise ValueError(f"application header {name} must be 0..15, got {getattr(self, name)}")

    def build(self) -> bytes:
        built = _BUILT.get(self)
        if built is None:
            built = APP_HEADER_FORMAT.build({
                "app_type": bytes.fromhex(self.app_type), "version": bytes.fromhex(self.version),
                "status": {"terminal_status": self.terminal_status, "processing": self.processing},
                "reserved": bytes.fromhex(self.reserved)})
            _remember(_BUILT, self, built)
        return built

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> AppHeader:
        if len(data) < cls.SIZE:
            raise FramingError(f"application header at offset {offset}: expected 6 bytes, found "
                               f"{len(data)}", offset=offset, expected="6 bytes", found=f"{len(data)} bytes")
        raw = bytes(data[:cls.SIZE])
        parsed = _PARSED.get((cls, raw))
        if parsed is None:
            obj = APP_HEADER_FORMAT.parse(raw)
            parsed = cls(obj.app_type.hex().upper(), obj.version.hex().upper(), obj.status.terminal_status,
                         obj.status.processing, obj.reserved.hex().upper())
            _remember(_PARSED, (cls, raw), parsed)
        return parsed

    @classmethod
    def from_hex(cls, text: str) -> AppHeader:
        raw = bytes.fromhex(text)
        if len(raw) != cls.SIZE:
            raise ValueError(f"application header must be 12 hex digits, got {text!r}")
        return cls.parse(raw)

    def __str__(self) -> str:
        return self.build().hex().upper()


@dataclass(frozen=True)
class Envelope:
    """What precedes the MTI in a frame: an optional TPDU and an optional application header."""

    tpdu: Tpdu | None = None
    header: AppHeader | None = None

    @property
    def size(self) -> int:
        return (Tpdu.SIZE if self.tpdu else 0) + (AppHeader.SIZE if self.header else 0)

    def build(self) -> bytes:
        return (self.tpdu.build() if self.tpdu else b"") + (self.header.build() if self.header else b"")

    def reply(self, **header_changes: int | str) -> Envelope:
        """The envelope of the answer: TPDU addresses swapped, header kept (or changed as given)."""
        header = replace(self.header, **header_changes) if (self.header and header_changes) else self.header
        return Envelope(self.tpdu.reply() if self.tpdu else None, header)

    @classmethod
    def parse(cls, frame: bytes, *, tpdu: bool, header: bool) -> Envelope:
        pos = 0
        t = h = None
        if tpdu:
            t = Tpdu.parse(frame[pos:pos + Tpdu.SIZE], pos)
            pos += Tpdu.SIZE
        if header:
            h = AppHeader.parse(frame[pos:pos + AppHeader.SIZE], pos)
        return cls(t, h)


# ---------------------------------------------------------------------------------------------------
# Serial frames: STX | LEN | DATA | ETX | LRC, with ACK / NAK
# ---------------------------------------------------------------------------------------------------

STX, ETX, ACK, NAK = 0x02, 0x03, 0x06, 0x15


def lrc(data: Iterable[int]) -> int:
    """Longitudinal redundancy check: XOR of the bytes."""
    value = 0
    for byte in data:
        value ^= byte
    return value


def serial_frame_format(length: str = "bcd2") -> cs.Construct:
    """Construct declaration of one serial frame with the given length encoding."""
    return cs.Struct(
        "stx" / cs.Const(bytes([STX])),
        "length" / LENGTH_FORMATS[length],
        "data" / cs.Bytes(cs.this.length),
        "etx" / cs.Const(bytes([ETX])),
        "lrc" / cs.Int8ub,
    )


SERIAL_FRAME_FORMAT = serial_frame_format("bcd2")


def build_serial_frame(payload: bytes, length: str = "bcd2") -> bytes:
    """``STX | LEN | payload | ETX | LRC``; LRC = XOR of LEN, payload and ETX."""
    body = LengthPrefix(length).build(len(payload)) + payload + bytes([ETX])
    return bytes([STX]) + body + bytes([lrc(body)])


def parse_serial_frame(data: bytes, length: str = "bcd2") -> bytes:
    """The payload of one complete serial frame; raises :class:`FramingError` on a bad LRC/layout."""
    try:
        obj = serial_frame_format(length).parse(data)
    except cs.ConstructError as exc:
        raise FramingError(f"malformed serial frame: {exc}", offset=0) from None
    consumed = 1 + LengthPrefix(length).size + len(obj.data) + 2
    if consumed != len(data):
        raise FramingError(f"serial frame has {len(data) - consumed} trailing bytes", offset=consumed)
    expected = lrc(data[1:-1])
    if obj.lrc != expected:
        raise FramingError(f"serial frame LRC mismatch: expected {expected:02X}, found {obj.lrc:02X}",
                           offset=len(data) - 1, expected=f"{expected:02X}", found=f"{obj.lrc:02X}")
    return obj.data


@dataclass(frozen=True)
class SerialFrame:
    """A complete frame with a correct LRC (answer ACK)."""

    payload: bytes


@dataclass(frozen=True)
class SerialBadFrame:
    """A frame that failed its checks (answer NAK); ``reason`` says why, ``offset`` where."""

    reason: str
    offset: int


@dataclass(frozen=True)
class SerialAck:
    offset: int


@dataclass(frozen=True)
class SerialNak:
    offset: int


SerialEvent = SerialFrame | SerialBadFrame | SerialAck | SerialNak


class SerialDeframer:
    """Incremental parser of a serial line carrying STX frames and single-byte ACK/NAK.

    Bytes outside a frame that are neither STX, ACK nor NAK are line noise: they are skipped and
    counted in ``noise``. A frame whose length exceeds ``max_frame``, whose ETX is missing or whose
    LRC is wrong yields :class:`SerialBadFrame` and the parser resynchronises on the next STX.
    """

    def __init__(self, length: str = "bcd2", max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.prefix = LengthPrefix(length)
        self.max_frame = max_frame
        self.offset = 0  # stream offset of _buf[0]
        self.noise = 0
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[SerialEvent]:
        buf = self._buf
        buf += data
        events: list[SerialEvent] = []
        hsize = self.prefix.size
        pos = 0
        while pos < len(buf):
            byte = buf[pos]
            if byte == ACK:
                events.append(SerialAck(self.offset + pos))
                pos += 1
                continue
            if byte == NAK:
                events.append(SerialNak(self.offset + pos))
                pos += 1
                continue
            if byte != STX:
                self.noise += 1
                pos += 1
                continue
            if len(buf) - pos < 1 + hsize:
                break
            start = self.offset + pos
            try:
                length = self.prefix.parse(bytes(buf[pos + 1:pos + 1 + hsize]), start + 1)
            except FramingError as exc:
                events.append(SerialBadFrame(exc.reason, start + 1))
                pos += 1
                continue
            if length > self.max_frame:
                events.append(SerialBadFrame(f"frame length {length} exceeds the maximum of "
                                             f"{self.max_frame} bytes", start + 1))
                pos += 1
                continue
            total = 1 + hsize + length + 2
            if len(buf) - pos < total:
                break
            etx_at = pos + 1 + hsize + length
            if buf[etx_at] != ETX:
                events.append(SerialBadFrame(f"expected ETX (03) at offset {self.offset + etx_at}, found "
                                             f"{buf[etx_at]:02X}", self.offset + etx_at))
                pos += 1
                continue
            expected = lrc(buf[pos + 1:etx_at + 1])
            if buf[etx_at + 1] != expected:
                events.append(SerialBadFrame(f"LRC mismatch at offset {self.offset + etx_at + 1}: expected "
                                             f"{expected:02X}, found {buf[etx_at + 1]:02X}",
                                             self.offset + etx_at + 1))
                pos += total
                continue
            events.append(SerialFrame(bytes(buf[pos + 1 + hsize:etx_at])))
            pos += total
        if pos:
            del buf[:pos]
            self.offset += pos
        return events
