"""pcap export of a trace's network events: open a simulated (or proxied) run in Wireshark.

Each :class:`~posfault.faults.link.FaultLink` connection becomes two TCP conversations, as a capture
on both sides of a proxy would show them:

* leg A ``terminal 10.83.0.1:<20000+n>  <->  proxy 10.83.0.2:<port>`` — what the terminal sent
  (``recv to_host``) and what the fault layer delivered to it (``deliver to_terminal``);
* leg B ``proxy 10.83.0.2:<40000+n>  <->  host 10.83.0.3:<port>`` — what reached the host (after
  faults) and what the host answered.

So a dropped 0210 appears on leg B and is missing on leg A; a duplicated 0200 appears once on A and
twice on B. Timestamps are the trace's ``t`` plus ``epoch`` (virtual time in a simulation).

Wireshark's ISO 8583 dissector (``iso8583``) only understands a 2-byte length header and a message
starting with the MTI, so by default (``exact=False``) every message is re-framed that way — the
dialect's real header (4 ASCII digits, BCD...) and the UnionPay TPDU/application header are
removed. Open with::

    tshark -r run.pcap -d tcp.port==8583,iso8583 -o 'iso8583.len_endian:Big endian' \\
           -o 'iso8583.charset:Digits represented as ASCII Characters' \\
           -o 'iso8583.binencode:Bin data represented as Hex Ascii characters'

(:func:`tshark_options` gives the options for a dialect: BCD dialects use ``charset: ...nibbles``
and ``binencode: Bin data not encoded``.) ``exact=True`` keeps the bytes exactly as written
(original headers, fragments as separate segments) for byte-level forensics.

Masking (default ``mask=True``): PAN keeps first 6 / last 4 digits (the rest become ``0``, so it
still decodes), track data, PIN block, MAC and field 55 are zeroed. Frames that do not decode get
every run of 13+ ASCII or packed-BCD digits zeroed in the middle.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iso8583.framing import Deframer, FramingError, LengthPrefix
from iso8583.message import Message

__all__ = ["mask_frame", "tshark_options", "write_pcap"]

TERMINAL_IP, PROXY_IP, HOST_IP = "10.83.0.1", "10.83.0.2", "10.83.0.3"
_MAC_A, _MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
_BE2 = LengthPrefix("binary2")
_SECRET_TEXT_FIELDS = (35, 36, 45)
_SECRET_BINARY_FIELDS = (52, 53, 55, 64, 96, 128)


def tshark_options(port: int = 8583, *, bcd: bool = False) -> list[str]:
    """tshark arguments that make its ISO 8583 dissector read our pcap (``bcd`` for BCD dialects)."""
    return [
        "-d", f"tcp.port=={port},iso8583",
        "-o", "iso8583.len_endian:Big endian",
        "-o", "iso8583.charset:" + ("Digits represented in nibbles" if bcd else
                                    "Digits represented as ASCII Characters"),
        "-o", "iso8583.binencode:" + ("Bin data not encoded" if bcd else
                                      "Bin data represented as Hex Ascii characters"),
    ]


# ---------------------------------------------------------------------------------------------------
# masking
# ---------------------------------------------------------------------------------------------------

def _zero_digits(text: str, keep_head: int = 0, keep_tail: int = 0) -> str:
    out = []
    n = len(text)
    for i, ch in enumerate(text):
        out.append(ch if (i < keep_head or i >= n - keep_tail or not ch.isdigit()) else "0")
    return "".join(out)


def _mask_message(msg: Message) -> Message:
    masked = msg.copy()
    for number in (2, 34):
        value = masked.get(number)
        if isinstance(value, str):
            masked[number] = _zero_digits(value, 6, 4) if len(value) >= 13 else _zero_digits(value)
    for number in _SECRET_TEXT_FIELDS:
        value = masked.get(number)
        if isinstance(value, str):
            masked[number] = _zero_digits(value)
    for number in _SECRET_BINARY_FIELDS:
        value = masked.get(number)
        if isinstance(value, (bytes, bytearray)):
            masked[number] = bytes(len(value))
        elif isinstance(value, str):
            masked[number] = re.sub(r"[0-9A-Za-z]", "0", value)
    return masked


_ASCII_PAN = re.compile(rb"[0-9]{13,19}")


def _scrub_bytes(data: bytes) -> bytes:
    """Zero the middle of anything that looks like a PAN: 13-19 ASCII digits, or 7+ bytes of packed
    BCD (runs made mostly of ASCII digit bytes are text, already handled by the first rule)."""
    out = bytearray(data)
    for m in _ASCII_PAN.finditer(data):
        for i in range(m.start() + 6, m.end() - 4):
            out[i] = 0x30
    start = 0
    n = len(data)
    while start < n:
        end = start
        while end < n and (data[end] >> 4) <= 9 and (data[end] & 0x0F) <= 9:
            end += 1
        run = data[start:end]
        if len(run) >= 7 and sum(0x30 <= b <= 0x39 for b in run) * 2 < len(run):
            for j in range(start + 3, end - 2):
                out[j] = 0
        start = end + 1
    return bytes(out)


def mask_frame(frame: bytes, wire: Any) -> bytes:
    """``frame`` with sensitive field values replaced (still decodable); scrubbed bytes otherwise."""
    if wire is not None:
        peek = wire.peek(frame)
        if peek.message is not None:
            try:
                return wire.pack(_mask_message(peek.message), peek.envelope)
            except Exception:
                pass
    return _scrub_bytes(frame)


# ---------------------------------------------------------------------------------------------------
# packets
# ---------------------------------------------------------------------------------------------------

def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ip(addr: str) -> bytes:
    return bytes(int(p) for p in addr.split("."))


@dataclass
class _Side:
    ip: str
    port: int
    seq: int


@dataclass
class _Leg:
    client: _Side
    server: _Side
    opened: bool = False
    closed: bool = False
    streams: dict[str, Deframer] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)


class _Writer:
    def __init__(self, epoch: float) -> None:
        self.epoch = epoch
        self.packets: list[bytes] = []
        self.ip_id = 0

    def packet(self, t: float, src: _Side, dst: _Side, flags: int, payload: bytes = b"") -> None:
        tcp = struct.pack("!HHIIBBHHH", src.port, dst.port, src.seq & 0xFFFFFFFF, dst.seq & 0xFFFFFFFF,
                          5 << 4, flags, 65535, 0, 0)
        pseudo = _ip(src.ip) + _ip(dst.ip) + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
        csum = _checksum(pseudo + tcp + payload)
        tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), self.ip_id, 0x4000, 64, 6, 0,
                         _ip(src.ip), _ip(dst.ip))
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        ether = (_MAC_B + _MAC_A if src.ip == TERMINAL_IP else _MAC_A + _MAC_B) + b"\x08\x00"
        frame = ether + ip + tcp + payload
        ts = self.epoch + t
        sec = int(ts)
        usec = round((ts - sec) * 1_000_000)
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        self.packets.append(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
        src.seq += len(payload) + (1 if flags & 0x03 else 0)  # SYN/FIN consume one sequence number

    def handshake(self, t: float, leg: _Leg) -> None:
        self.packet(t, leg.client, leg.server, 0x02)                      # SYN
        self.packet(t, leg.server, leg.client, 0x12)                      # SYN-ACK
        self.packet(t, leg.client, leg.server, 0x10)                      # ACK
        leg.opened = True

    def data(self, t: float, leg: _Leg, from_client: bool, payload: bytes) -> None:
        if not leg.opened:
            self.handshake(t, leg)
        src, dst = (leg.client, leg.server) if from_client else (leg.server, leg.client)
        self.packet(t, src, dst, 0x18, payload)                           # PSH+ACK

    def close(self, t: float, leg: _Leg, reset: bool) -> None:
        if not leg.opened or leg.closed:
            return
        if reset:
            self.packet(t, leg.server, leg.client, 0x14)                  # RST+ACK
        else:
            self.packet(t, leg.client, leg.server, 0x11)                  # FIN+ACK
            self.packet(t, leg.server, leg.client, 0x11)
            self.packet(t, leg.client, leg.server, 0x10)
        leg.closed = True

    def bytes(self) -> bytes:
        header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # LINKTYPE_ETHERNET
        return header + b"".join(self.packets)


def write_pcap(trace: Any, path: str | Path | None = None, *, wire: Any = None, port: int = 8583,
               exact: bool = False, mask: bool = True, epoch: float | None = None,
               prefix: LengthPrefix | str | None = None) -> bytes:
    """Write (and return) a pcap of ``trace``'s network events; see the module docstring.

    ``wire`` (default ``trace.wire``) decodes/masks/strips envelopes; ``prefix`` is the length header
    the links used (default ``wire.prefix``, else binary2); ``epoch`` is added to every ``t``
    (default: the trace clock's epoch if it has one, else 2026-03-02 09:00 UTC).
    """
    wire = wire if wire is not None else getattr(trace, "wire", None)
    real_prefix = LengthPrefix(prefix) if isinstance(prefix, str) else (
        prefix or (wire.prefix if wire is not None else _BE2))
    if epoch is None:
        clock_epoch = getattr(getattr(trace, "clock", None), "epoch", None)
        epoch = clock_epoch.timestamp() if clock_epoch is not None else 1772442000.0  # 2026-03-02T09:00Z
    env_size = wire.envelope.size if (wire is not None and getattr(wire, "envelope", None)) else 0
    writer = _Writer(epoch)
    legs: dict[tuple[int, str], _Leg] = {}

    def leg_of(conn: int, which: str) -> _Leg:
        key = (conn, which)
        if key not in legs:
            n = conn % 20000
            if which == "A":
                legs[key] = _Leg(_Side(TERMINAL_IP, 20000 + n, 1000), _Side(PROXY_IP, port, 5000))
            else:
                legs[key] = _Leg(_Side(PROXY_IP, 40000 + n, 9000), _Side(HOST_IP, port, 13000))
        return legs[key]

    def emit(t: float, leg: _Leg, from_client: bool, stream_bytes: bytes) -> None:
        """Bytes as they went over the real stream; re-framed/masked unless exact and unmasked."""
        if exact and not mask:
            writer.data(t, leg, from_client, stream_bytes)
            return
        key = "c" if from_client else "s"
        if key in leg.broken:
            writer.data(t, leg, from_client, _scrub_bytes(stream_bytes) if mask else stream_bytes)
            return
        deframer = leg.streams.setdefault(key, Deframer(real_prefix, max_frame=1 << 20))
        try:
            frames = deframer.feed(stream_bytes)
        except FramingError as exc:  # the stream is desynchronised (e.g. a truncation keeping its header)
            leg.broken.add(key)
            frames = list(getattr(exc, "frames", []))
        for frame in frames:
            body = mask_frame(frame, wire) if mask else frame
            if exact:
                writer.data(t, leg, from_client, real_prefix.wrap(body))
            else:
                writer.data(t, leg, from_client, _BE2.wrap(body[env_size:]))

    for event in _net_events(trace.events if hasattr(trace, "events") else trace):
        conn, kind, direction, t = event["conn"], event["kind"], event.get("direction"), float(event.get("t", 0.0))
        if kind == "recv" and isinstance(event.get("frame"), (bytes, bytearray)):
            data = real_prefix.wrap(bytes(event["frame"]))
            if direction == "to_host":
                emit(t, leg_of(conn, "A"), True, data)       # terminal -> proxy
            else:
                emit(t, leg_of(conn, "B"), False, data)      # host -> proxy
        elif kind == "deliver" and isinstance(event.get("wire_bytes") or event.get("frame"), (bytes, bytearray)):
            raw = event.get("wire_bytes")
            data = bytes(raw) if raw is not None else real_prefix.wrap(bytes(event["frame"]))
            if direction == "to_host":
                emit(t, leg_of(conn, "B"), True, data)       # proxy -> host
            else:
                emit(t, leg_of(conn, "A"), False, data)      # proxy -> terminal
        elif kind in ("closed", "reset"):
            for which in ("A", "B"):
                if (conn, which) in legs:
                    writer.close(t, legs[(conn, which)], reset=(kind == "reset"))
    data = writer.bytes()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def _net_events(events: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for event in events:
        if event.get("actor") == "net" and event.get("conn") is not None:
            yield event


def frames_to_pcap(frames: Iterable[tuple[float, str, bytes]], *, dialect: Any = None, wire: Any = None,
                   port: int = 8583, mask: bool = True, epoch: float | None = None) -> bytes:
    """A pcap from ``(t, direction, frame)`` tuples (frames as delivered), one TCP conversation
    ``terminal 10.83.0.1 <-> host 10.83.0.3`` — for callers that record frames themselves instead
    of running a :class:`~posfault.faults.link.FaultLink` (e.g. ``Simulation.capture_frames``).

    ``dialect`` (name/spec) or ``wire`` decodes frames for masking and envelope stripping.
    """
    if wire is None and dialect is not None:
        from iso8583.wire import Wire

        wire = Wire(dialect)
    env_size = wire.envelope.size if (wire is not None and wire.envelope is not None) else 0
    writer = _Writer(1772442000.0 if epoch is None else epoch)
    leg = _Leg(_Side(TERMINAL_IP, 20000, 1000), _Side(HOST_IP, port, 5000))
    for t, direction, frame in frames:
        body = mask_frame(bytes(frame), wire) if mask else bytes(frame)
        writer.data(float(t), leg, direction == "to_host", _BE2.wrap(body[env_size:]))
    return writer.bytes()
