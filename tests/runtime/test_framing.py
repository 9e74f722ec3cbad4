"""Framing: length headers, TPDU/app header, serial STX frames, incremental reassembly."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iso8583.framing import (
    ACK,
    NAK,
    AppHeader,
    Deframer,
    Envelope,
    FrameTooLarge,
    FramingError,
    LengthPrefix,
    SerialAck,
    SerialBadFrame,
    SerialDeframer,
    SerialFrame,
    SerialNak,
    Tpdu,
    build_serial_frame,
    length_prefix,
    lrc,
    parse_serial_frame,
)

KINDS = ["binary2", "binary4", "ascii4", "bcd2"]


@pytest.mark.parametrize(("kind", "length", "wire"), [
    ("binary2", 300, b"\x01\x2c"),
    ("binary4", 300, b"\x00\x00\x01\x2c"),
    ("ascii4", 300, b"0300"),
    ("bcd2", 300, b"\x03\x00"),
])
def test_length_headers_known_bytes(kind: str, length: int, wire: bytes) -> None:
    prefix = LengthPrefix(kind)
    assert prefix.build(length) == wire
    assert prefix.parse(wire) == length
    assert prefix.format.build(length) == wire  # the construct declaration agrees


@given(st.sampled_from(KINDS), st.integers(0, 9999))
def test_fast_header_codec_matches_construct_declaration(kind: str, length: int) -> None:
    prefix = LengthPrefix(kind)
    wire = prefix.build(length)
    assert wire == prefix.format.build(length)
    assert prefix.parse(wire) == prefix.format.parse(wire) == length


def test_inclusive_length_counts_the_header() -> None:
    prefix = length_prefix("ascii4", inclusive=True)
    assert prefix.wrap(b"abc") == b"0007abc"
    assert Deframer(prefix).feed(b"0007abc0004") == [b"abc", b""]


def test_header_too_small_for_frame() -> None:
    with pytest.raises(FramingError, match="10000"):
        LengthPrefix("bcd2").build(10000)


def test_bad_ascii_header_names_offset_and_found() -> None:
    d = Deframer("ascii4")
    assert d.feed(b"0003abc") == [b"abc"]
    with pytest.raises(FramingError) as info:
        d.feed(b"00A1xyz")
    assert info.value.offset == 7
    assert "00A1" in str(info.value)


def test_over_max_rejected_before_body_arrives() -> None:
    d = Deframer("binary2", max_frame=100)
    with pytest.raises(FrameTooLarge) as info:
        d.feed(b"\x00\x65")  # 101, no body yet
    assert info.value.length == 101 and info.value.maximum == 100 and info.value.offset == 0
    assert "101" in str(info.value) and "100" in str(info.value)


@given(
    kind=st.sampled_from(KINDS),
    frames=st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=20),
    cuts=st.lists(st.integers(0, 10_000), max_size=40),
)
def test_reassembly_under_random_fragmentation(kind: str, frames: list[bytes], cuts: list[int]) -> None:
    prefix = LengthPrefix(kind)
    stream = b"".join(prefix.wrap(f) for f in frames)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    d = Deframer(prefix, max_frame=300)
    out: list[bytes] = []
    for a, b in itertools.pairwise(points):
        out.extend(d.feed(stream[a:b]))
    assert out == frames
    assert d.buffered == 0 and d.offset == len(stream)


@given(st.binary(max_size=64), st.integers(1, 63))
def test_partial_frame_stays_buffered(frame: bytes, keep: int) -> None:
    wire = LengthPrefix("binary2").wrap(frame)
    keep = min(keep, len(wire) - 1)
    d = Deframer("binary2")
    assert d.feed(wire[:keep]) == []
    assert d.buffered == keep
    assert d.feed(wire[keep:]) == [frame]


def test_tpdu_and_reply_swap() -> None:
    tpdu = Tpdu.from_hex("6000030000")
    assert (tpdu.destination, tpdu.source) == ("0003", "0000")
    assert tpdu.reply().build() == bytes.fromhex("6000000003")
    assert str(tpdu) == "6000030000"
    with pytest.raises(FramingError, match="5 bytes"):
        Tpdu.parse(b"\x60\x00", 0)
    with pytest.raises(ValueError, match="4 hex digits"):
        Tpdu(destination="12345")


def test_app_header_fields() -> None:
    header = AppHeader.from_hex("603103000000")
    assert header.app_type == "60" and header.version == "31"
    assert header.terminal_status == 0 and header.processing == 3
    assert header.build() == bytes.fromhex("603103000000")
    with pytest.raises(ValueError, match="processing"):
        AppHeader(processing=16)


def test_envelope_round_trip_and_reply() -> None:
    frame = bytes.fromhex("6000030000" "603100000000") + b"0800..."
    env = Envelope.parse(frame, tpdu=True, header=True)
    assert env.size == 11 and env.build() == frame[:11]
    reply = env.reply(processing=1)
    assert str(reply.tpdu) == "6000000003" and reply.header is not None and reply.header.processing == 1


def test_serial_frame_layout_and_lrc() -> None:
    frame = build_serial_frame(b"\x01\x02\x03")
    assert frame[0] == 0x02 and frame[1:3] == b"\x00\x03" and frame[-2] == 0x03
    assert frame[-1] == lrc(frame[1:-1])
    assert parse_serial_frame(frame) == b"\x01\x02\x03"
    bad = frame[:-1] + bytes([frame[-1] ^ 0xFF])
    with pytest.raises(FramingError, match="LRC"):
        parse_serial_frame(bad)


@given(
    payloads=st.lists(st.binary(max_size=80), min_size=1, max_size=8),
    noise=st.binary(max_size=5).filter(lambda b: not set(b) & {0x02, 0x06, 0x15}),
    cuts=st.lists(st.integers(0, 2000), max_size=20),
)
def test_serial_deframer_reassembles_with_acks_and_noise(payloads, noise, cuts) -> None:
    stream = noise + bytes([ACK]) + b"".join(build_serial_frame(p) for p in payloads) + bytes([NAK])
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    d = SerialDeframer()
    events = []
    for a, b in itertools.pairwise(points):
        events.extend(d.feed(stream[a:b]))
    assert isinstance(events[0], SerialAck) and isinstance(events[-1], SerialNak)
    assert [e.payload for e in events if isinstance(e, SerialFrame)] == payloads
    assert d.noise == len(noise)


def test_serial_deframer_bad_lrc_then_recovers() -> None:
    good = build_serial_frame(b"hello")
    corrupt = bytearray(build_serial_frame(b"world"))
    corrupt[4] ^= 0x01
    events = SerialDeframer().feed(bytes(corrupt) + good)
    assert isinstance(events[0], SerialBadFrame) and "LRC" in events[0].reason
    assert events[1] == SerialFrame(b"hello")


def test_serial_deframer_rejects_oversized() -> None:
    events = SerialDeframer(max_frame=10).feed(build_serial_frame(b"x" * 11) + build_serial_frame(b"ok"))
    assert isinstance(events[0], SerialBadFrame) and "exceeds" in events[0].reason
    assert events[-1] == SerialFrame(b"ok")
