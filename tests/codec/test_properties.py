"""Property tests for every built-in dialect and for a user spec that uses every codec feature.

* decode(encode(m)) == m for generated messages; encode(decode(b)) == b for generated encodings;
* robustness: random bytes, truncations, bit flips and rewritten length prefixes only ever raise
  DecodeError, and the error points at the right element (field and offset).
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iso8583 import BUILTIN_SPECS, DecodeError, EncodeError, Message, decode, encode, load_spec
from iso8583.codec import _codec_for
from iso8583.strategies import encodings, messages

from .specs import kitchen_sink

SPECS = {name: load_spec(name) for name in BUILTIN_SPECS}
SPECS["kitchen_sink"] = load_spec(kitchen_sink())
SPECS["kitchen_sink_bcd_binary"] = load_spec({**kitchen_sink(mti="bcd", bitmap="binary"), "name": "ks2"})
SPECS["kitchen_sink_ascii_hex"] = load_spec({**kitchen_sink(mti="ascii", bitmap="hex"), "name": "ks3"})
NAMES = sorted(SPECS)


def elements(msg: Message, spec) -> list[tuple[int, int, int]]:
    """(field, start, end) of the MTI (0), the bitmaps (1) and each field in an encoding of msg."""
    codec = _codec_for(spec)
    data = encode(msg, spec)
    _, after = codec.read_bitmap(data, codec.mti_size)
    spans = [(0, 0, codec.mti_size), (1, codec.mti_size, after)]
    pos = after
    for number in sorted(msg.fields):
        size = len(spec.fields[number].encode(msg[number]))
        spans.append((number, pos, pos + size))
        pos += size
    assert pos == len(data)
    return spans


def secrets(msg: Message) -> list[str]:
    """Sensitive values of msg (long enough not to appear by chance), in the forms an error could show."""
    out = []
    for number in (2, 34, 35, 36, 45, 52, 55, 62, 64):
        value = msg.get(number)
        if isinstance(value, bytes):
            value = value.hex()
        if isinstance(value, str) and len(value) >= 12 and len(set(value)) > 3:
            out += [value[:12], value[-12:], value[:12].upper(), value[:12].lower()]
    return out


@pytest.mark.parametrize("name", NAMES)
def test_decode_encode_round_trip(name: str) -> None:
    spec = SPECS[name]

    @given(messages(spec))
    def check(msg: Message) -> None:
        data = encode(msg, spec)
        assert decode(data, spec) == msg

    check()


@pytest.mark.parametrize("name", NAMES)
def test_encode_decode_round_trip(name: str) -> None:
    spec = SPECS[name]

    @given(encodings(spec))
    def check(data: bytes) -> None:
        assert encode(decode(data, spec), spec) == data

    check()


@pytest.mark.parametrize("name", NAMES)
def test_random_bytes_raise_only_decode_error(name: str) -> None:
    spec = SPECS[name]
    codec = _codec_for(spec)
    mti = encode(Message("0200"), spec)[:codec.mti_size]

    @given(st.binary(max_size=300), st.booleans())
    def check(data: bytes, with_mti: bool) -> None:
        if with_mti:
            data = mti + data
        try:
            msg = decode(data, spec)
        except DecodeError as exc:
            assert exc.offset is None or 0 <= exc.offset <= len(data)
        else:
            assert encode(msg, spec) is not None

    check()


@pytest.mark.parametrize("name", NAMES)
def test_truncation_fails_in_the_element_that_was_cut(name: str) -> None:
    spec = SPECS[name]

    @given(messages(spec), st.data())
    def check(msg: Message, data: st.DataObject) -> None:
        raw = encode(msg, spec)
        cut = data.draw(st.integers(0, len(raw) - 1))
        with pytest.raises(DecodeError) as info:
            decode(raw[:cut], spec)
        field, start, _end = next(span for span in elements(msg, spec) if span[2] > cut)
        err = info.value
        top = err.field if isinstance(err.field, int) or err.field is None else int(str(err.field).split(".")[0])
        if top == 65:  # tertiary-bitmap indicator errors belong to the bitmap element
            top = 1
        assert top == field, (err, field, start, cut)
        assert err.offset is not None and start <= err.offset <= cut

    check()


@pytest.mark.parametrize("name", NAMES)
def test_bit_flips_fail_at_or_after_the_flipped_element(name: str) -> None:
    spec = SPECS[name]

    @given(messages(spec), st.data())
    def check(msg: Message, data: st.DataObject) -> None:
        raw = bytearray(encode(msg, spec))
        index = data.draw(st.integers(0, len(raw) - 1))
        raw[index] ^= 1 << data.draw(st.integers(0, 7))
        start = next(span[1] for span in elements(msg, spec) if span[2] > index)
        try:
            back = decode(bytes(raw), spec)
        except DecodeError as exc:
            assert exc.offset is not None and exc.offset >= start, (exc, start, index)
            for secret in secrets(msg):
                assert secret not in str(exc)
        else:
            assert isinstance(back, Message)

    check()


@pytest.mark.parametrize("name", NAMES)
def test_wrong_length_prefixes_fail_at_or_after_that_field(name: str) -> None:
    spec = SPECS[name]
    variable = [n for n, fs in spec.fields.items() if not fs.fixed]

    @settings(max_examples=60)
    @given(messages(spec, required=[variable[0]]), st.data())
    def check(msg: Message, data: st.DataObject) -> None:
        candidates = [n for n in msg.fields if not spec.fields[n].fixed]
        number = data.draw(st.sampled_from(candidates))
        span = next(s for s in elements(msg, spec) if s[0] == number)
        raw = encode(msg, spec)
        from iso8583.fields import _prefix_size
        size = _prefix_size(spec.fields[number])
        junk = data.draw(st.binary(min_size=size, max_size=size))
        mutated = raw[:span[1]] + junk + raw[span[1] + size:]
        try:
            decode(mutated, spec)
        except DecodeError as exc:
            assert exc.offset is not None and exc.offset >= span[1], (exc, span)
        # a prefix that is no length at all (0xFF.. is neither digits nor BCD nor a binary length
        # within the field's maximum) is reported exactly there
        broken = raw[:span[1]] + b"\xff" * size + raw[span[1] + size:]
        with pytest.raises(DecodeError) as info:
            decode(broken, spec)
        assert info.value.field == number and info.value.offset == span[1], (info.value, span)

    check()


def fresh(spec):
    """The same spec with empty plan caches (cold: no generated code yet)."""
    return dataclasses.replace(spec, _codec=None)


def decode_outcome(spec, data: bytes):
    """What ``decode`` gives for ``data``: the message, or the error's text, field and offset."""
    try:
        return decode(data, spec)
    except DecodeError as exc:
        return ("error", str(exc), exc.field, exc.offset)


@pytest.mark.parametrize("name", NAMES)
def test_generated_plans_behave_exactly_like_the_field_closures(name: str) -> None:
    """A bitmap seen often gets generated code; its results and errors must match the cold path."""
    spec = SPECS[name]

    @settings(max_examples=60)
    @given(messages(spec), st.data())
    def check(msg: Message, data: st.DataObject) -> None:
        warm = fresh(spec)
        cold_bytes = encode(msg, warm)
        for _ in range(3):  # warm up: the plan is generated after a couple of uses
            assert encode(msg, warm) == cold_bytes
            assert decode(cold_bytes, warm) == msg
        raw = bytearray(cold_bytes)
        index = data.draw(st.integers(0, len(raw) - 1))
        raw[index] ^= 1 << data.draw(st.integers(0, 7))
        mutated = bytes(raw)
        cold = fresh(spec)
        assert decode_outcome(warm, mutated) == decode_outcome(cold, mutated)
        bad = msg.copy()
        number = data.draw(st.sampled_from(sorted(msg.fields))) if msg.fields else None
        if number is not None:
            bad[number] = data.draw(st.sampled_from(["", "x" * 1000, "12\u00e9", b"\x00", 7, None]))
            def enc_outcome(spec_obj):
                try:
                    return encode(bad, spec_obj)
                except EncodeError as exc:
                    return ("error", str(exc), exc.field)
            assert enc_outcome(warm) == enc_outcome(fresh(spec))

    check()
