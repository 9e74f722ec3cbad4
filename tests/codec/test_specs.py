"""Specs as data: user specs from TOML/JSON/dict, extends, every layout feature, and clear SpecErrors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iso8583 import DecodeError, EncodeError, Message, SpecError, decode, encode, load_spec

SMALL = {
    "name": "small", "mti": {"encoding": "ascii"}, "bitmap": {"encoding": "hex"},
    "fields": {"3": {"type": "n", "max": 6}, "48": {"type": "ans", "length": "LLL", "max": 99}},
    "wire": {"length": "ascii4"},
}


def test_user_spec_from_toml_json_and_dict(tmp_path: Path) -> None:
    toml = tmp_path / "small.toml"
    toml.write_text('name = "small"\n[mti]\nencoding = "ascii"\n[bitmap]\nencoding = "hex"\n[wire]\nlength = "ascii4"\n'
                    '[fields]\n3 = { type = "n", max = 6 }\n48 = { type = "ans", length = "LLL", max = 99 }\n')
    as_json = tmp_path / "small.json"
    as_json.write_text(json.dumps(SMALL))
    msg = Message("0200", {3: "000000", 48: "hello"})
    expected = b"0200" + b"2000000000010000" + b"000000" + b"005hello"
    for source in (toml, str(toml), as_json, SMALL):
        spec = load_spec(source)
        assert spec.name == "small" and spec.wire == {"length": "ascii4"}
        assert encode(msg, spec) == expected
        assert decode(expected, spec) == msg


def test_spec_round_trips_through_to_dict() -> None:
    for name in ("iso87binary", "unionpay_pos"):
        spec = load_spec(name)
        again = load_spec(spec.to_dict())
        msg = Message("0200", {3: "000000", 4: "000000000001", 60: "22000001"} if name == "unionpay_pos" else
                      {3: "000000", 35: "123=45"})
        assert encode(msg, again) == encode(msg, spec)


def test_extends_overrides_fields_and_keeps_the_rest() -> None:
    spec = load_spec({"extends": "iso87ascii", "name": "my-switch",
                      "fields": {"48": {"name": "Loyalty", "type": "an", "length": "LL", "max": 20}}})
    assert spec.name == "my-switch" and spec.fields[48].name == "Loyalty"
    assert spec.fields[2].length == "LL" and spec.wire == {"length": "ascii4"}
    assert encode(Message("0200", {48: "ABC12"}), spec).endswith(b"05ABC12")


def test_extends_keeps_the_parent_defaults_for_new_fields() -> None:
    """A UnionPay extension's new numeric field is BCD with a BCD length, like every UnionPay numeric."""
    spec = load_spec({"extends": "unionpay_pos", "name": "my-acquirer",
                      "fields": {"48": {"name": "Extra", "type": "n", "length": "LLL", "max": 30}}})
    assert (spec.fields[48].encoding, spec.fields[48].prefix) == ("bcd", "bcd")
    assert encode(Message("0200", {48: "1234"}), spec).endswith(bytes.fromhex("00041234"))
    assert load_spec(spec.to_dict()).to_dict() == spec.to_dict()


def test_ebcdic_mti_bitmap_prefix_and_data() -> None:
    spec = load_spec({"name": "ebcdic", "mti": {"encoding": "ebcdic"}, "bitmap": {"encoding": "hex-ebcdic"},
                      "defaults": {"encoding": "ebcdic", "prefix": "ebcdic"},
                      "fields": {"2": {"type": "n", "length": "LL", "max": 19}, "43": {"type": "ans", "max": 5}}})
    data = encode(Message("0100", {2: "4761739001010010", 43: "AB c!"}), spec)
    assert data == ("0100" + "4000000000200000" + "16" + "4761739001010010" + "AB c!").encode("cp500")
    assert decode(data, spec)[43] == "AB c!"


def test_tertiary_bitmap() -> None:
    spec = load_spec({"extends": "iso93ascii", "name": "tertiary", "bitmap": {"tertiary": True},
                      "fields": {"150": {"type": "ans", "length": "LL", "max": 20}}})
    msg = Message("1200", {3: "000000", 150: "third"})
    data = encode(msg, spec)
    assert data[4:52] == b"A000000000000000" + b"8000000000000000" + b"0000040000000000"
    assert decode(data, spec) == msg
    with pytest.raises(DecodeError) as info:
        decode(data, "iso93ascii")
    assert info.value.field == 65 and info.value.offset == 20


def test_bcd_length_counting_bytes_vs_digits() -> None:
    base = {"name": "bcd", "mti": {"encoding": "bcd"}, "bitmap": {"encoding": "binary"}}
    digits = load_spec({**base, "fields": {"2": {"type": "n", "length": "LL", "max": 19, "encoding": "bcd",
                                                 "prefix": "bcd", "pad": "rightF"}}})
    nbytes = load_spec({**base, "fields": {"2": {"type": "n", "length": "LL", "max": 19, "encoding": "bcd",
                                                 "prefix": "bcd", "pad": "rightF", "count": "bytes"}}})
    msg = Message("0200", {2: "123"})
    assert encode(msg, digits)[10:] == bytes.fromhex("03123F")
    assert encode(msg, nbytes)[10:] == bytes.fromhex("02123F")
    assert decode(encode(msg, nbytes), nbytes) == msg


def test_binary_prefix_and_x_plus_n() -> None:
    spec = load_spec({"name": "bin", "mti": {"encoding": "ascii"}, "bitmap": {"encoding": "binary"},
                      "fields": {"28": {"type": "x+n", "max": 8},
                                 "62": {"type": "b", "length": "LLL", "max": 512, "prefix": "binary"}}})
    data = encode(Message("0200", {28: "D00000150", 62: b"\x01" * 300}), spec)
    assert data[12:21] == b"D00000150"
    assert data[21:23] == (300).to_bytes(2, "big")
    with pytest.raises(EncodeError, match="'C' or 'D'"):
        encode(Message("0200", {28: "X00000150"}), spec)


def test_tlv_composite() -> None:
    spec = load_spec({"name": "tlv", "fields": {"48": {
        "type": "ans", "length": "LLL", "max": 200, "composite": "tlv", "tag_length": 2, "len_length": 3,
        "subfields": {"01": {"name": "Loyalty id", "type": "n", "max": 6}}}}})
    msg = Message("0200", {48: {"01": "123456", "ZZ": "free text"}})
    data = encode(msg, spec)
    assert data.endswith(b"025" + b"01006123456" + b"ZZ009free text")
    assert decode(data, spec) == msg
    with pytest.raises(DecodeError) as info:
        decode(data.replace(b"01006123456", b"0100612345A"), spec)
    assert info.value.field == "48.01"


def test_bitmapped_composite() -> None:
    spec = load_spec({"name": "bm", "fields": {"127": {
        "type": "ans", "length": "LLL", "max": 200, "composite": "bitmap", "bitmap_bytes": 2,
        "subfields": {"2": {"type": "an", "max": 4}, "12": {"type": "ans", "length": "LL", "max": 20}}}}})
    msg = Message("0200", {127: {"127.2": "AB12", "127.12": "hello"}})
    data = encode(msg, spec)
    assert data.endswith(b"015" + b"4010" + b"AB12" + b"05hello")
    assert decode(data, spec) == msg


@pytest.mark.parametrize(("spec", "text"), [
    ({"fields": {"2": {"type": "q", "max": 3}}}, "unknown type"),
    ({"fields": {"2": {"type": "n", "max": 3, "colour": "red"}}}, "unknown key"),
    ({"fields": {"2": {"type": "n", "length": "LL", "max": 120}}}, "does not fit"),
    ({"fields": {"65": {"type": "n", "max": 3}}}, "out of range"),
    ({"fields": {"2": {"type": "an", "max": 3, "encoding": "bcd"}}}, "bcd encoding"),
    ({"fields": {"2": {"type": "n", "max": 0}}}, "max > 0"),
    ({"mti": {"encoding": "utf16"}}, "mti.encoding"),
    ({"fields": {"60": {"type": "n", "length": "LLL", "max": 9, "composite": "zigzag"}}}, "composite kind"),
])
def test_malformed_specs_raise_spec_error_naming_the_problem(spec: dict, text: str) -> None:
    with pytest.raises(SpecError, match=text):
        load_spec(spec)


def test_unknown_spec_name() -> None:
    with pytest.raises(SpecError, match="no such spec"):
        load_spec("iso87-nonexistent")


@pytest.mark.parametrize("junk", ["0200", None, 42, ["x"]])
def test_decode_of_non_bytes_raises_decode_error(junk: object) -> None:
    with pytest.raises(DecodeError):
        decode(junk, "iso87ascii")  # type: ignore[arg-type]


def test_bytearray_and_memoryview_decode() -> None:
    data = encode(Message("0800", {70: "301"}), "iso87binary")
    assert decode(bytearray(data), "iso87binary") == decode(memoryview(data), "iso87binary")


def test_pyiso8583_style_binary_spec_dict() -> None:
    """A pyiso8583 spec with BCD numerics (b + nibbles + pad), binary bitmap and b fields."""
    pyiso = {
        "h": {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 0, "desc": "Header"},
        "t": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 2, "desc": "Message Type"},
        "p": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8, "desc": "Bitmap"},
        "2": {"data_enc": "b", "len_enc": "bcd", "len_type": 1, "max_len": 19, "len_count": "nibbles",
              "right_pad": "F", "desc": "PAN"},
        "3": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 6, "len_count": "nibbles",
              "desc": "Processing code"},
        "52": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8, "desc": "PIN"},
        "62": {"data_enc": "ascii", "len_enc": "b", "len_type": 2, "max_len": 512, "desc": "Private"},
    }
    spec = load_spec(pyiso)
    assert spec.mti_encoding == "bcd" and spec.bitmap_encoding == "binary"
    assert spec.fields[2].type == "n" and spec.fields[2].pad == "rightF" and spec.fields[2].name == "PAN"
    assert spec.fields[52].type == "b"
    msg = Message("0200", {2: "476173900101001", 3: "000000", 52: bytes(8), 62: "x" * 300})
    data = encode(msg, spec)
    assert data[:12] == bytes.fromhex("0200" + "6000000000001004" + "15" + "47")
    assert data[10:18] == bytes.fromhex("15476173900101001F"[:16])
    assert decode(data, spec) == msg
