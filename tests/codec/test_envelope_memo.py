"""The TPDU / application header memo must be invisible: same values and bytes as the construct
definitions give, for any header, and bounded however many different headers arrive."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from iso8583 import framing
from iso8583.framing import APP_HEADER_FORMAT, TPDU_FORMAT, AppHeader, Envelope, Tpdu

raw5 = st.binary(min_size=5, max_size=5)


@given(raw5)
def test_tpdu_parse_matches_construct_fresh_and_memoized(raw: bytes) -> None:
    obj = TPDU_FORMAT.parse(raw)
    expected = Tpdu(obj.id, obj.destination.hex().upper(), obj.source.hex().upper())
    assert Tpdu.parse(raw) == expected
    assert Tpdu.parse(raw) == expected          # second time from the memo
    assert Tpdu.parse(raw).build() == raw
    assert Tpdu.parse(raw).build() == raw


@given(st.binary(min_size=6, max_size=6))
def test_app_header_parse_matches_construct(raw: bytes) -> None:
    obj = APP_HEADER_FORMAT.parse(raw)
    expected = AppHeader(obj.app_type.hex().upper(), obj.version.hex().upper(), obj.status.terminal_status,
                         obj.status.processing, obj.reserved.hex().upper())
    for _ in range(2):
        assert AppHeader.parse(raw) == expected
        assert AppHeader.parse(raw).build() == raw


def test_changed_header_builds_its_own_bytes() -> None:
    env = Envelope(Tpdu(0x60, "0001", "0002"), AppHeader())
    before = env.build()
    asked = env.reply(processing=3)
    assert asked.build() != before
    assert AppHeader.parse(asked.build()[5:]).processing == 3
    assert Envelope.parse(env.build(), tpdu=True, header=True) == env
    assert env.reply().tpdu == Tpdu(0x60, "0002", "0001")


def test_memo_is_bounded_under_varying_headers() -> None:
    for i in range(framing._MEMO_LIMIT * 3):
        raw = bytes([0x60]) + i.to_bytes(4, "big")
        assert Tpdu.parse(raw).build() == raw
    assert len(framing._PARSED) <= framing._MEMO_LIMIT
    assert len(framing._BUILT) <= framing._MEMO_LIMIT


def test_short_input_still_names_offset() -> None:
    try:
        Tpdu.parse(b"\x60\x00", offset=7)
    except framing.FramingError as exc:
        assert "offset 7" in str(exc)
    else:  # pragma: no cover - the assertion is the test
        raise AssertionError("a 2-byte TPDU must be refused")
