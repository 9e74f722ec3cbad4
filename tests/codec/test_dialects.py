"""Built-in dialects: exact byte layouts users rely on, and round trips of the messages the flows use."""

from __future__ import annotations

import pytest

from iso8583 import BUILTIN_SPECS, DecodeError, EncodeError, Message, decode, encode, load_spec

PAN = "4761739001010010"
TRACK2 = "4761739001010010=25122010000012345"


def sale(extra: dict | None = None) -> Message:
    fields = {2: PAN, 3: "000000", 4: "000000010000", 11: "000001", 12: "091500", 13: "1123", 14: "2512",
              22: "051", 23: "001", 25: "00", 35: TRACK2, 41: "10000001", 42: "100000000000001",
              52: bytes.fromhex("0123456789ABCDEF"), 55: bytes.fromhex("9F2608A1B2C3D4E5F60718" + "9F2701" + "80"),
              64: bytes.fromhex("1122334455667788")}
    fields.update(extra or {})
    return Message("0200", fields)


@pytest.mark.parametrize("name", BUILTIN_SPECS)
def test_builtin_specs_load_with_name_and_wire(name: str) -> None:
    spec = load_spec(name)
    assert spec.name == name
    assert isinstance(spec.wire, dict) and "length" in spec.wire
    assert spec.fields[4].name.startswith("Amount")
    assert load_spec(name) is spec  # cached


def test_unionpay_wire_table_is_passed_through() -> None:
    assert load_spec("unionpay_pos").wire == {"length": "binary2", "tpdu": "6000030000", "header": "603100000000"}
    assert load_spec("iso87ascii").wire == {"length": "ascii4"}


ISO87_FLOWS = [
    sale({7: "1123091500", 18: "5411", 32: "12345678", 37: "000000000001",
           43: "POSFAULT TEST MERCHANT   SHANGHAI     CN", 49: "156"}),
    Message("0210", {3: "000000", 4: "000000010000", 7: "1123091500", 11: "000001", 37: "123456789012",
                     38: "A1B2C3", 39: "00", 41: "10000001", 42: "100000000000001", 54: "1002156C000000010000"}),
    Message("0800", {7: "1123091500", 11: "000002", 41: "10000001", 42: "100000000000001", 70: "001"}),
    Message("0810", {7: "1123091500", 11: "000002", 39: "00", 62: "A" * 40 + "1234", 70: "001"}),
    Message("0400", {2: PAN, 3: "000000", 4: "000000010000", 11: "000003", 39: "98", 41: "10000001",
                     42: "100000000000001", 90: "020000000111230915000000000000000000000000"}),
    Message("0500", {3: "920000", 11: "000009", 41: "10000001", 42: "100000000000001", 60: "000001",
                     74: "0000000001", 76: "0000000003", 86: "0000000000001000", 88: "0000000000030000",
                     63: "OPERATOR 01", 128: bytes(8)}),
    Message("0200", {3: "000000", 28: "D00000100", 48: "anything |~ printable", 61: "x", 53: "2600000000000000"}),
]


@pytest.mark.parametrize("name", ["iso87ascii", "iso87binary"])
@pytest.mark.parametrize("index", range(len(ISO87_FLOWS)))
def test_iso87_flow_messages_round_trip(name: str, index: int) -> None:
    spec = load_spec(name)
    msg = ISO87_FLOWS[index]
    data = encode(msg, spec)
    assert decode(data, spec) == msg
    assert encode(decode(data, spec), spec) == data


def test_iso87ascii_layout_is_ascii_with_hex_bitmap() -> None:
    msg = Message("0800", {7: "1123091500", 11: "000001", 70: "301"})
    data = encode(msg, "iso87ascii")
    # bit 1 (secondary), 7, 11 -> 82200000 00000000; bit 70 -> secondary 04000000 00000000
    assert data == b"0800" + b"8220000000000000" + b"0400000000000000" + b"1123091500" + b"000001" + b"301"


def test_iso87ascii_binary_fields_are_hex_text_with_char_counts() -> None:
    msg = Message("0200", {52: bytes.fromhex("0123456789abcdef"), 55: b"\x9f\x26\x01\xaa"})
    data = encode(msg, "iso87ascii")
    assert data.endswith(b"0123456789ABCDEF" + b"008" + b"9F2601AA")


def test_iso87binary_layout_is_bcd() -> None:
    msg = Message("0200", {2: "476173900101001", 3: "000000", 4: "000000010000", 35: "4761739001010010=251220"})
    data = encode(msg, "iso87binary")
    assert data[:2] == b"\x02\x00"                      # BCD MTI
    assert data[2:10] == bytes.fromhex("7000000020000000")  # binary bitmap: 2, 3, 4, 35
    assert data[10:19] == bytes.fromhex("15" + "0476173900101001")  # LL BCD, 15 digits, left 0 pad
    assert data[19:22] == b"\x00\x00\x00"
    assert data[22:28] == bytes.fromhex("000000010000")
    assert data[28:] == bytes.fromhex("23" + "4761739001010010D251220F")  # z: '=' -> D, right F pad


def test_unionpay_layout_pads_per_field() -> None:
    msg = Message("0200", {2: "6222021234567890123", 3: "000000", 22: "021", 23: "001",
                           60: {"60.1": "22", "60.2": "000001", "60.3": "003"}})
    data = encode(msg, "unionpay_pos")
    assert data[:2] == b"\x02\x00"
    assert data[2:10] == bytes.fromhex("6000060000000010")  # fields 2, 3, 22, 23, 60
    body = data[10:]
    assert body[:11] == bytes.fromhex("19" + "62220212345678901230")  # 19 digits, left-aligned, right 0
    assert body[11:14] == b"\x00\x00\x00"
    assert body[14:16] == bytes.fromhex("0210")   # field 22 n3 left-aligned
    assert body[16:18] == bytes.fromhex("0001")   # field 23 n3 right-aligned
    assert body[18:] == bytes.fromhex("0011" + "220000010030")  # LLL BCD 11 digits, 60.1-60.3
    assert decode(data, "unionpay_pos") == msg


def test_unionpay_field60_all_subfields_and_int_keys() -> None:
    spec = load_spec("unionpay_pos")
    full = {"60.1": "22", "60.2": "000123", "60.3": "000", "60.4": "5", "60.5": "0", "60.6": "1", "60.7": "000"}
    msg = Message("0200", {3: "000000", 60: full})
    assert decode(encode(msg, spec), spec)[60] == full
    same = Message("0200", {3: "000000", 60: {1: "22", "2": "000123", "60.3": "000", 4: "5", 5: "0", 6: "1", 7: "000"}})
    assert encode(same, spec) == encode(msg, spec)


def test_unionpay_field60_missing_middle_subfield_is_an_encode_error() -> None:
    with pytest.raises(EncodeError) as info:
        encode(Message("0200", {60: {"60.1": "22", "60.3": "003"}}), "unionpay_pos")
    assert info.value.field == 60
    assert "60.2" in str(info.value)


@pytest.mark.parametrize("mti", ["0200", "0210", "0220", "0400", "0401", "0500", "0800", "0810", "0820", "0320"])
def test_unionpay_flow_messages_round_trip(mti: str) -> None:
    spec = load_spec("unionpay_pos")
    msg = Message(mti, {2: PAN, 3: "000000", 4: "000000010000", 11: "000001", 12: "091500", 13: "1123",
                        14: "2512", 22: "051", 23: "001", 25: "00", 26: "12", 35: TRACK2, 37: "000000000001",
                        38: "123456", 39: "00", 41: "10000001", 42: "100000000000001", 44: "0000000000100000000",
                        48: "0000000010000000000001000000", 49: "156", 52: bytes(8), 53: "2600000000000000",
                        54: "1002156C000000010000", 55: bytes.fromhex("9F2608A1B2C3D4E5F60718"),
                        60: {"60.1": "22", "60.2": "000001", "60.3": "000", "60.4": "5", "60.5": "0"},
                        61: "00000100000111231", 62: bytes(range(40)), 63: "001", 64: bytes(8)})
    data = encode(msg, spec)
    assert decode(data, spec) == msg
    assert encode(decode(data, spec), spec) == data


def test_decode_error_names_field_offset_expected_and_found() -> None:
    spec = load_spec("iso87ascii")
    data = encode(Message("0200", {3: "000000", 4: "000000010000"}), spec)
    bad = data[:-12] + b"0000000A0000"
    with pytest.raises(DecodeError) as info:
        decode(bad, spec)
    err = info.value
    assert err.field == 4
    assert err.offset == len(data) - 12
    assert "expected 12 digits" in str(err)
    assert f"found 'A' (0x41) at offset {len(data) - 5}" in str(err)


def test_decode_error_never_shows_a_pan() -> None:
    spec = load_spec("iso87ascii")
    data = encode(Message("0200", {2: PAN}), spec)
    with pytest.raises(DecodeError) as info:
        decode(data[:-1] + b"X", spec)
    assert info.value.field == 2
    assert PAN not in str(info.value) and PAN[:12] not in str(info.value)


def test_truncated_message_reports_the_field_it_stopped_in() -> None:
    spec = load_spec("unionpay_pos")
    data = encode(Message("0200", {3: "000000", 4: "000000010000", 11: "000001"}), spec)
    with pytest.raises(DecodeError) as info:
        decode(data[:-2], spec)
    assert info.value.field == 11
    assert info.value.offset == len(data) - 3


def test_trailing_bytes_are_rejected() -> None:
    spec = load_spec("iso87binary")
    data = encode(Message("0800", {11: "000001"}), spec)
    with pytest.raises(DecodeError, match="unexpected bytes"):
        decode(data + b"\x00", spec)


@pytest.mark.parametrize(("field", "value", "text"), [
    (4, "10000", "exactly 12 digits"),
    (4, "00000001000A", "digits"),
    (4, 10000, "str"),
    (2, "4" * 20, "at most 19"),
    (41, "TID\u00e91234", "printable"),
    (52, "0123456789ABCDEF", "bytes"),
    (39, "0!", "letters/digits"),
])
def test_encode_errors_name_the_field(field: int, value: object, text: str) -> None:
    with pytest.raises(EncodeError) as info:
        encode(Message("0200", {field: value}), "iso87ascii")
    assert info.value.field == field
    assert text in str(info.value)


def test_field_not_in_spec_is_an_encode_error() -> None:
    with pytest.raises(EncodeError, match="not defined"):
        encode(Message("0200", {5: "000000000001"}), "unionpay_pos")
