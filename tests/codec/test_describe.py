"""describe(): one line per field with its name; nothing sensitive in clear."""

from __future__ import annotations

import pytest

from iso8583 import Message, describe, load_spec

PAN = "6222021234567890123"
TRACK2 = PAN + "=25122010000012345"
# 5A (PAN), 57 (track 2 equivalent), 5F20 (cardholder name), 9F26 (cryptogram, not secret)
EMV = bytes.fromhex("5A0A" + "6222021234567890123F" + "5712" + "6222021234567890123D25122010000012345F"[:36]
                    + "5F2006" + "5A48414E4720" + "9F2608A1B2C3D4E5F60718")


def message() -> Message:
    return Message("0200", {2: PAN, 3: "000000", 4: "000000010000", 11: "000123", 35: TRACK2,
                            41: "10000001", 52: bytes.fromhex("0123456789ABCDEF"), 53: "2600000000000000",
                            55: EMV, 60: {"60.1": "22", "60.2": "000001", "60.3": "000"},
                            64: bytes.fromhex("AABBCCDDEEFF0011")})


def test_describe_names_every_field_on_its_own_line() -> None:
    text = describe(message(), "unionpay_pos")
    lines = text.splitlines()
    assert lines[0].startswith("MTI  0200") and "financial request" in lines[0]
    spec = load_spec("unionpay_pos")
    for number in (2, 3, 4, 11, 35, 41, 52, 53, 60, 64):
        line = next(x for x in lines if x.startswith(f"{number:>3}  "))
        assert spec.fields[number].name in line
    assert any("60.1" in x and "Message type code" in x and "'22'" in x for x in lines)
    assert "000000010000" in text


def test_describe_masks_pan_track_pin_block_and_mac() -> None:
    text = describe(message(), "unionpay_pos")
    assert "622202*********0123" in text
    for secret in (PAN, PAN[6:15], "0123456789ABCDEF", "AABBCCDDEEFF0011", "25122010000012345", "HANG"):
        assert secret not in text, secret
    assert "<masked" in text


def test_describe_lists_icc_tags_with_sensitive_ones_masked() -> None:
    pytest.importorskip("iso8583.tlv")
    text = describe(message(), "unionpay_pos")
    assert "9F26" in text and "A1B2C3D4E5F60718" in text  # the cryptogram is not secret
    assert "5F20" in text
    assert "5A48414E4720" not in text


def test_describe_without_spec_and_with_odd_values_never_fails() -> None:
    msg = Message("0800", {55: b"\x9f", 60: {"x": b"\x01"}, 70: "301"})
    text = describe(msg)
    assert "70" in text and "301" in text
