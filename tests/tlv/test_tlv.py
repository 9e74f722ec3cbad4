"""BER-TLV for field 55: exact decoding, round trips, masking, and only TLVError on bad input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iso8583 import DecodeError, tlv
from iso8583.mask import SECRET_EMV_TAGS
from iso8583.tlv import TLV, TLVError

# A field 55 as a UnionPay/EMV chip terminal builds it for an ARQC (values made up, layout per EMV
# Book 3 Annex A; 9F10 is a Visa CVN 10 IAD shape).
FIELD55 = bytes.fromhex(
    "9F2608C2C12B098F3DA6E3"      # Application Cryptogram
    "9F2701"  "80"                 # CID: ARQC
    "9F1007" "06011103A00000"      # Issuer Application Data
    "9F3704" "9BADBCAB"            # Unpredictable Number
    "9F3602" "0001"                # ATC
    "9505" "0000000000"            # TVR
    "9A03" "261123"                # Transaction Date
    "9C01" "00"                    # Transaction Type
    "9F0206" "000000010000"        # Amount Authorised
    "5F2A02" "0156"                # Currency
    "8202" "7C00"                  # AIP
    "9F1A02" "0156"                # Terminal Country Code
    "9F0306" "000000000000"        # Amount Other
    "9F3303" "E0F1C8"              # Terminal Capabilities
    "9F3403" "420300"              # CVM Results
    "9F3501" "22"                  # Terminal Type
    "9F1E08" "3132333435363738"    # IFD Serial Number
    "8407" "A0000003330101"        # DF Name (UnionPay debit AID)
    "9F0902" "0030"                # Application Version Number
    "9F4104" "00000001"            # Transaction Sequence Counter
    "5A08" "6212345678901234"      # PAN
    "5F3401" "01"                  # PAN Sequence Number
)


def test_decodes_a_field_55_tag_by_tag_with_names() -> None:
    items = tlv.decode(FIELD55)
    values = {i.tag: i.value.hex().upper() for i in items}
    assert values["9F26"] == "C2C12B098F3DA6E3"
    assert values["9F27"] == "80"
    assert values["9F02"] == "000000010000"
    assert values["5F2A"] == "0156"
    assert values["84"] == "A0000003330101"
    assert [i.tag for i in items][:4] == ["9F26", "9F27", "9F10", "9F37"]
    assert tlv.tag_name("9F26") == "Application Cryptogram"
    assert tlv.tag_name(0x9F36) == "Application Transaction Counter (ATC)"
    assert tlv.tag_name("5f2a") == "Transaction Currency Code"
    assert tlv.tag_name("9F7F") == "Unknown tag"
    assert items[1].offset == 11
    assert tlv.encode(items) == FIELD55


def test_every_commonly_sent_tag_has_a_name() -> None:
    for tag in ["9F26", "9F27", "9F10", "9F37", "9F36", "95", "9A", "9C", "9F02", "5F2A", "82", "9F1A", "9F03",
                "9F33", "9F34", "9F35", "9F1E", "84", "9F09", "9F41", "57", "5A", "5F20", "5F24", "5F34",
                "9F1F", "9F6B"]:
        assert tlv.EMV_TAGS[tag] != "Unknown tag"


def test_constructed_tags_are_decoded_recursively() -> None:
    data = bytes.fromhex("700E" "5A086212345678901234" "9F3401" "AA")
    (template,) = tlv.decode(data)
    assert template.constructed and template.tag == "70"
    assert [c.tag for c in template.children] == ["5A", "9F34"]
    assert template.children[1].offset == 12
    assert tlv.find(data, "9F34").value == b"\xaa"
    assert tlv.to_dict(data) == {"5A": bytes.fromhex("6212345678901234"), "9F34": b"\xaa"}
    assert tlv.encode([TLV("70", children=template.children)]) == data
    assert tlv.encode([("70", [("5A", bytes.fromhex("6212345678901234")), ("9F34", b"\xaa")])]) == data


def test_long_form_lengths_both_ways() -> None:
    value = bytes(range(200))
    encoded = tlv.encode([("9F10", value)])
    assert encoded[:4] == bytes.fromhex("9F1081C8")
    assert tlv.decode(encoded)[0].value == value
    big = bytes(300)
    assert tlv.encode({"DF31": big})[:5] == bytes.fromhex("DF3182012C")
    # Non-minimal long form is accepted on decode (some kernels send 81 05).
    assert tlv.decode(bytes.fromhex("9F27810180"))[0].value == b"\x80"
    assert tlv.decode(bytes.fromhex("9F2782000180")) == [TLV("9F27", b"\x80")]


def test_zero_padding_between_objects_is_skipped() -> None:
    data = bytes.fromhex("00009F2701800000" "9C0100" "00")
    assert [(i.tag, i.value) for i in tlv.decode(data)] == [("9F27", b"\x80"), ("9C", b"\x00")]
    with pytest.raises(TLVError, match="tag 00"):
        tlv.decode(data, skip_padding=False)


@pytest.mark.parametrize(("data", "offset", "fragment"), [
    ("9F", 0, "multi-byte tag 9F is truncated"),
    ("9F26", 2, "length is missing"),
    ("9F2608AABB", 0, "value of 8 bytes runs past the end"),
    ("9F2780", 2, "indefinite length"),
    ("9F2782 01".replace(" ", ""), 2, "long-form length needs 2 bytes"),
    ("9F2785 0000000001".replace(" ", ""), 2, "long-form length uses 5 bytes"),
    ("9FFFFFFF01 00".replace(" ", ""), 0, "tag longer than 4 bytes"),
    ("9C0100 7003 9F2709".replace(" ", ""), 5, "value of 9 bytes runs past"),
])
def test_malformed_input_names_tag_offset_and_problem(data: str, offset: int, fragment: str) -> None:
    with pytest.raises(TLVError) as info:
        tlv.decode(bytes.fromhex(data))
    assert info.value.offset == offset
    assert fragment in str(info.value)
    assert isinstance(info.value, DecodeError)


def test_error_offsets_are_relative_to_the_message_and_carry_the_field() -> None:
    with pytest.raises(TLVError) as info:
        tlv.decode(bytes.fromhex("9C01009F2608AA"), base_offset=120, field=55)
    err = info.value
    assert (err.field, err.offset, err.tag) == (55, 123, "9F26")
    assert str(err).startswith("field 55: BER-TLV tag 9F26 at offset 123")


def test_deep_nesting_is_rejected_not_a_recursion_error() -> None:
    data = b""
    for _ in range(40):
        data = bytes([0x70]) + tlv._encode_length(len(data)) + data
    with pytest.raises(TLVError, match="nested deeper"):
        tlv.decode(data)


def test_describe_and_repr_mask_cardholder_data() -> None:
    data = tlv.encode([
        ("57", bytes.fromhex("6212345678901234D29122010000012300000F")),
        ("5A", bytes.fromhex("6212345678901234")),
        ("5F20", b"ZHANG/SAN"),
        ("5F24", bytes.fromhex("291231")),
        ("9F6B", bytes.fromhex("6212345678901234D29121")),
        ("9F26", bytes.fromhex("C2C12B098F3DA6E3")),
    ])
    text = tlv.describe(data)
    assert "621234******1234" in text
    assert "6212345678901234" not in text
    assert "ZHANG" not in text and "5A48414E47" not in text
    assert "D2912" not in text and "291231" not in text
    assert "9F26 Application Cryptogram (8): C2C12B098F3DA6E3" in text
    assert "6212345678901234" not in repr(tlv.decode(data))
    assert SECRET_EMV_TAGS <= tlv.SENSITIVE_TAGS


def test_primitive_tag_with_children_and_bad_tags_are_encode_errors() -> None:
    from iso8583 import EncodeError
    with pytest.raises(EncodeError):
        TLV("9F26", children=())
    with pytest.raises(EncodeError):
        tlv.normalize_tag("9F")          # says "more bytes follow" but has none
    with pytest.raises(EncodeError):
        tlv.normalize_tag("zz")
    with pytest.raises(EncodeError):
        tlv.normalize_tag("9F2601")      # three bytes, but the tag ends after two


# -- properties ---------------------------------------------------------------------------------------

@st.composite
def tags(draw: st.DrawFn, constructed: bool | None = None) -> str:
    klass = draw(st.sampled_from([0x00, 0x40, 0x80, 0xC0]))
    cons = draw(st.booleans()) if constructed is None else constructed
    if draw(st.booleans()):
        first = klass | (0x20 if cons else 0) | draw(st.integers(1, 30))
        return f"{first:02X}"
    first = klass | (0x20 if cons else 0) | 0x1F
    middle = draw(st.lists(st.integers(0x81, 0xFF), max_size=2))
    last = draw(st.integers(0x01, 0x7F))
    return bytes([first, *middle, last]).hex().upper()


primitives = st.builds(lambda t, v: TLV(t, v), tags(constructed=False), st.binary(max_size=300))
trees = st.recursive(
    primitives,
    lambda kids: st.builds(lambda t, c: TLV(t, children=tuple(c)), tags(constructed=True),
                           st.lists(kids, max_size=4)),
    max_leaves=12,
)


@given(st.lists(trees, max_size=6))
def test_round_trip_decode_of_encode(items: list[TLV]) -> None:
    encoded = tlv.encode(items)
    # Empty constructed templates re-decode to children=() — the same object.
    assert tlv.decode(encoded, skip_padding=False) == items
    assert tlv.encode(tlv.decode(encoded, skip_padding=False)) == encoded


@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_tlverror(data: bytes) -> None:
    try:
        items = tlv.decode(data)
    except TLVError as exc:
        assert 0 <= exc.offset <= len(data)
    else:
        tlv.describe(items)


@given(st.lists(trees, min_size=1, max_size=4), st.data())
def test_truncations_and_bit_flips_raise_tlverror_within_the_data(items: list[TLV], data: st.DataObject) -> None:
    encoded = bytearray(tlv.encode(items))
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(encoded) - 1))
        encoded = encoded[:cut]
    else:
        pos = data.draw(st.integers(0, len(encoded) - 1))
        encoded[pos] ^= 1 << data.draw(st.integers(0, 7))
    try:
        tlv.decode(bytes(encoded))
    except TLVError as exc:
        assert 0 <= exc.offset <= len(encoded)


def test_summary_and_lenient_describe_never_raise_and_stay_masked() -> None:
    data = tlv.encode([("9F27", b"\x80"), ("70", [("5A", bytes.fromhex("6212345678901234"))])])
    assert tlv.summary(data) == "9F27=80 5A=621234******1234"
    broken = data[:-3]
    note = tlv.summary(broken)
    assert note.startswith("<malformed BER-TLV, ") and "offset" in note
    assert tlv.describe(broken, strict=False) == note
    assert "6212345678" not in note
    with pytest.raises(TLVError):
        tlv.describe(broken)


def test_every_card_fixture_emv_field_decodes() -> None:
    import tomllib
    from pathlib import Path

    cards = tomllib.loads((Path(__file__).resolve().parents[2] / "fixtures/cards/test_cards.toml")
                          .read_text(encoding="utf-8"))["cards"]
    emv = {name: card["emv"] for name, card in cards.items() if card.get("emv")}
    assert emv
    for name, hex_text in emv.items():
        values = tlv.to_dict(bytes.fromhex(hex_text))
        assert "9F26" in values and "9F02" in values, name
