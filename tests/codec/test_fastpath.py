"""Whole-message fast paths (:mod:`iso8583.fastpath`) agree with the general path, byte for byte.

A recurring layout gets one generated function for the whole message. It may only *accept* what
the general path accepts, with the same result, and must hand everything else back (``None``) so
that the general path raises its precise error. These tests compile the fast functions for
generated messages of every dialect and compare, on the valid message and on mutated ones (bytes
flipped, cut, extended; values of the wrong type, length or characters):

* decode: ``fast(data)`` is ``None`` or equals ``decode`` by the general path, which must succeed;
* encode: ``fast(fields, mti)`` is ``None`` or equals the general path's bytes, which must succeed;
* and through the public API, a warm spec (fast paths live) raises exactly the cold spec's errors.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iso8583 import DecodeError, EncodeError, Message, decode, encode
from iso8583.codec import _codec_for, _decode_general
from iso8583.fastpath import compile_fast_decoder, compile_fast_encoder
from iso8583.strategies import messages

from .test_properties import NAMES, SPECS, decode_outcome, fresh

_BAD_VALUES = ["", "x" * 1000, "12\u00e9", "\u0663\u0663", "12 34", "1=2D", b"\x00", b"", bytearray(b"12"), 7, None,
               "ab", "\x7f", "0" * 19]


def _general_decode(spec: Any, data: bytes) -> Any:
    try:
        return _decode_general(_codec_for(spec), data)
    except DecodeError as exc:
        return ("error", str(exc), exc.field, exc.offset)


def _general_encode(spec: Any, msg: Message) -> Any:
    cold = fresh(spec)
    try:
        return encode(msg, cold)   # a cold spec has no fast path: the first encode is the general one
    except EncodeError as exc:
        return ("error", str(exc), exc.field)


def _fast_functions(spec: Any, msg: Message) -> tuple[Any, Any, bytes]:
    codec = _codec_for(spec)
    data = encode(msg, spec)
    numbers = sorted(msg.fields)
    entry = codec.enc_plans[tuple(msg.fields)]
    raw_bitmap = entry[0]
    fast_dec = compile_fast_decoder(codec, raw_bitmap, numbers)
    fast_enc = compile_fast_encoder(codec, raw_bitmap, numbers)
    decode(data, spec)  # fills the MTI caches the fast functions read
    return fast_dec, fast_enc, data


def _mutations(data: bytes, draw: Any) -> list[bytes]:
    raw = bytearray(data)
    out = []
    for _ in range(3):
        flipped = bytearray(raw)
        index = draw(st.integers(0, len(raw) - 1))
        flipped[index] = draw(st.sampled_from([flipped[index] ^ (1 << draw(st.integers(0, 7))), 0x20, 0x30, 0x3D,
                                               0x41, 0x44, 0xB2, 0xFF, 0x00]))
        out.append(bytes(flipped))
    cut = draw(st.integers(0, len(raw)))
    out += [bytes(raw[:cut]), bytes(raw) + b"0", bytes(raw[:cut]) + bytes(raw[cut + 1:])]
    return out


@pytest.mark.parametrize("name", NAMES)
def test_fast_decode_accepts_only_what_the_general_path_accepts_with_the_same_message(name: str) -> None:
    spec = SPECS[name]

    @settings(max_examples=60)
    @given(messages(spec), st.data())
    def check(msg: Message, data: st.DataObject) -> None:
        warm = fresh(spec)
        fast_dec, _, encoded = _fast_functions(warm, msg)
        assert fast_dec(encoded) == msg == _general_decode(warm, encoded)
        codec = _codec_for(warm)
        key = slice(codec.mti_size, codec.mti_size + codec.bitmap_unit)
        for mutated in _mutations(encoded, data.draw):
            if mutated[key] != encoded[key]:
                continue  # decode looks the fast function up by the primary bitmap
            got = fast_dec(mutated)
            if got is not None:
                assert got == _general_decode(warm, mutated)
                assert [type(v) for v in got.fields.values()] == [type(v) for v in decode(mutated, fresh(spec)).fields.values()]

    check()


@pytest.mark.parametrize("name", NAMES)
def test_fast_encode_gives_the_general_bytes_or_hands_over(name: str) -> None:
    spec = SPECS[name]

    @settings(max_examples=60)
    @given(messages(spec), st.data())
    def check(msg: Message, data: st.DataObject) -> None:
        warm = fresh(spec)
        _, fast_enc, encoded = _fast_functions(warm, msg)
        mti = _codec_for(warm).mti_enc[msg.mti]
        assert fast_enc(msg.fields, mti) == encoded
        if not msg.fields:
            return
        for _ in range(3):
            bad = msg.copy()
            number = data.draw(st.sampled_from(sorted(msg.fields)))
            bad.fields[number] = data.draw(st.sampled_from(_BAD_VALUES))
            got = fast_enc(bad.fields, mti)
            if got is not None:
                assert got == _general_encode(spec, bad)

    check()


@pytest.mark.parametrize("name", NAMES)
def test_warm_spec_raises_exactly_the_cold_errors(name: str) -> None:
    """Through the public API: with the fast paths live, every outcome is the cold spec's."""
    spec = SPECS[name]

    @settings(max_examples=40)
    @given(messages(spec), st.data())
    def check(msg: Message, data: st.DataObject) -> None:
        warm = fresh(spec)
        encoded = encode(msg, warm)
        for _ in range(4):   # warm: per-bitmap plans, then the whole-message functions
            assert encode(msg, warm) == encoded
            assert decode(encoded, warm) == msg
        for mutated in _mutations(encoded, data.draw):
            assert decode_outcome(warm, mutated) == decode_outcome(fresh(spec), mutated)
        if msg.fields:
            bad = msg.copy()
            bad.fields[data.draw(st.sampled_from(sorted(msg.fields)))] = data.draw(st.sampled_from(_BAD_VALUES))
            assert _general_encode(warm, bad) == _general_encode(spec, bad)
            try:
                warm_out: Any = encode(bad, warm)
            except EncodeError as exc:
                warm_out = ("error", str(exc), exc.field)
            assert warm_out == _general_encode(spec, bad)

    check()


def test_a_sale_layout_takes_the_fast_path() -> None:
    """The layouts a terminal repeats do get whole-message functions (else the speed-up is lost)."""
    for name in ("iso87ascii", "unionpay_pos"):
        spec = fresh(SPECS[name])
        fields = {2: "6217000000000022", 3: "000000", 4: "000000000001", 11: "000002", 22: "021", 25: "00",
                  41: "10000001", 42: "100000000000001", 49: "156", 52: bytes(8)}
        msg = Message("0200", fields)
        data = encode(msg, spec)
        for _ in range(4):
            assert encode(msg, spec) == data
        for _ in range(4):   # the first comes from the round-trip memo, the others are parsed
            assert decode(data, spec) == msg
        codec = _codec_for(spec)
        assert codec.enc_plans[tuple(fields)][3] is not None
        fast = codec.fast_dec[data[codec.mti_size:codec.mti_size + codec.bitmap_unit]]
        assert fast(data) == msg


# -- the round-trip memo: bytes just encoded decode without parsing, to exactly the parsed result ----

def _warm_encoder(spec: Any, msg: Message) -> Any:
    """A spec whose fast encoder for ``msg``'s layout is live and whose MTI cache knows ``msg.mti``."""
    warm = fresh(spec)
    data = encode(msg, warm)
    for _ in range(3):
        assert encode(msg, warm) == data
    decode(data, warm)   # the MTI cache; this also takes any memo entry
    _codec_for(warm).memo.clear()
    return warm


@pytest.mark.parametrize("name", NAMES)
def test_memo_gives_exactly_what_parsing_gives(name: str) -> None:
    """Same MTI, same fields in the same (wire) order with the same types, and a dict of its own."""
    spec = SPECS[name]

    @settings(max_examples=60)
    @given(messages(spec))
    def check(msg: Message) -> None:
        warm = _warm_encoder(spec, msg)
        codec = _codec_for(warm)
        data = encode(msg, warm)
        parsed = _decode_general(_codec_for(fresh(spec)), data)
        if data not in codec.memo:
            return
        for value in msg.fields.values():   # the sender changes its message after sending it
            if isinstance(value, dict):
                value["x"] = "changed"
        msg.fields.clear()
        got = decode(data, warm)
        assert data not in codec.memo          # used once, then gone
        assert got.mti == parsed.mti
        assert list(got.fields.items()) == list(parsed.fields.items())
        assert [type(v) for v in got.fields.values()] == [type(v) for v in parsed.fields.values()]
        assert decode(data, warm) == parsed    # parsed this time

    check()


def test_memo_serves_sale_layouts_and_skips_values_that_do_not_come_back() -> None:
    """A sale's bytes are memoized in both dialects; a packed track holding 'D' (decoded as '=') is not."""
    track = "6217000000000022=25122010000000000"
    for name in ("iso87ascii", "unionpay_pos"):
        spec = SPECS[name]
        fields: dict[int, Any] = {3: "000000", 2: "6217000000000022", 4: "000000000001", 11: "000002", 22: "021",
                                  25: "00", 35: track, 41: "10000001", 42: "100000000000001", 49: "156", 52: bytes(8)}
        if name == "unionpay_pos":
            fields[60] = {"60.2": "000001", "60.1": "22"}   # decoding gives them in spec order
        msg = Message("0200", fields)
        warm = _warm_encoder(spec, msg)
        codec = _codec_for(warm)
        data = encode(msg, warm)
        assert data in codec.memo
        got = decode(data, warm)
        assert list(got.fields.items()) == list(decode(data, fresh(spec)).fields.items())
        if name == "unionpay_pos":
            assert list(got.fields[60]) == ["60.1", "60.2"]
            other_keys = Message("0200", {**fields, 60: {1: "22", "2": "000001"}})   # also accepted keys
            assert encode(other_keys, warm) == data == encode(other_keys, fresh(spec))
            assert list(decode(data, warm).fields.items()) == list(got.fields.items())
        with_d = Message("0200", {**fields, 35: track.replace("=", "D")})
        data_d = encode(with_d, warm)
        expected = decode(data_d, fresh(spec))
        assert (data_d in codec.memo) == (name == "iso87ascii")   # ASCII keeps the 'D'; BCD does not
        assert list(decode(data_d, warm).fields.items()) == list(expected.fields.items())


def test_memo_is_bounded_and_mutated_bytes_are_parsed() -> None:
    from iso8583.fastpath import MEMO_LIMIT

    spec = SPECS["iso87ascii"]
    msg = Message("0200", {2: "6217000000000022", 3: "000000", 4: "000000000001", 11: "000001", 41: "10000001"})
    warm = _warm_encoder(spec, msg)
    codec = _codec_for(warm)
    for stan in range(3 * MEMO_LIMIT):
        msg.fields[11] = f"{stan:06d}"
        data = encode(msg, warm)
        assert len(codec.memo) <= MEMO_LIMIT
    flipped = data[:-1] + b"X"
    assert decode_outcome(warm, flipped) == decode_outcome(fresh(spec), flipped)
    assert decode(data, warm) == msg
