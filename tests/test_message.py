"""Message: the dialect-independent form every other part relies on."""

import pytest

from iso8583 import Message


def test_fields_iterate_in_number_order_and_compare_by_value() -> None:
    m = Message("0200", {11: "000001", 2: "6217000000000014", 4: "000000010000"})
    assert list(m) == [2, 4, 11]
    assert 2 in m and 3 not in m
    assert m == Message("0200", {2: "6217000000000014", 4: "000000010000", 11: "000001"})
    assert m != Message("0210", dict(m.items()))


@pytest.mark.parametrize(("mti", "response", "repeat"), [
    ("0200", "0210", "0201"), ("0400", "0410", "0401"), ("0401", "0410", "0401"),
    ("0220", "0230", "0221"), ("0800", "0810", "0801"), ("0500", "0510", "0501"),
])
def test_response_and_repeat_mti(mti: str, response: str, repeat: str) -> None:
    assert Message(mti).response_mti() == response
    assert Message(mti).repeat_mti() == repeat


def test_repr_masks_pan_track_pin_and_mac() -> None:
    m = Message("0200", {2: "6217000000000014", 35: "6217000000000014=28122201234", 52: b"\x01" * 8,
                         64: b"\xAA" * 8, 4: "000000010000"})
    text = repr(m)
    assert "6217000000000014" not in text and "621700******0014" in text
    assert "=2812" not in text and "0101010101" not in text and "AAAAAAAA" not in text
    assert "000000010000" in text


@pytest.mark.parametrize("bad", ["200", "02A0", "", "02000"])
def test_bad_mti_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="MTI"):
        Message(bad)


def test_bitmap_fields_cannot_be_set() -> None:
    with pytest.raises(KeyError):
        Message("0200", {1: "x"})
