"""Message-level MAC: which bytes each dialect MACs, stamping field 64/128, verifying received bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iso8583 import Message, encode, load_spec
from iso8583.security import mac
from iso8583.security.keys import load_test_keys

KEYS = load_test_keys()
MAK = KEYS.working_keys.mac_key
SALE = {3: "000000", 4: "000000010000", 11: "000123", 22: "051", 25: "00", 41: "10000001",
        42: "100000000000001", 49: "156"}

# A UnionPay POS 0200 frame posted with the MAC its production system generated, B3A092AE, in a cnblogs
# Q&A (q.cnblogs.com/q/128930); MAK 0723C80DB5F4CD3D0723C80DB5F4CD3D. Layout: length 007F, TPDU,
# 6-byte application header, then the message from the MTI.
CUP_FRAME = bytes.fromhex(
    "007F600003000060321032007202003020048000C0801500000000000000123400000203009930303030303030313935"
    "3237313831383232313738373531353600192600000100060000000000435F0112323834343132333435363738393031"
    "3233345F03063136303033365F04063230303832365C0230314233413039324145"
)


@pytest.mark.parametrize(("dialect", "algorithm", "mac_size"), [
    ("iso87ascii", "retail", 16),      # b8 travels as 16 hex characters
    ("iso87binary", "retail", 8),
    ("iso93ascii", "retail", 16),
    ("unionpay_pos", "unionpay_ecb", 8),
])
def test_stamp_macs_mti_through_the_field_before_64_with_the_dialect_default(
        dialect: str, algorithm: str, mac_size: int) -> None:
    spec = load_spec(dialect)
    msg = Message("1200" if dialect == "iso93ascii" else "0200", dict(SALE))
    if dialect == "iso93ascii":  # 1993: 22 is an12, 25 is n4
        msg[22] = "510101511344"
        msg[25] = "1500"
    if dialect == "unionpay_pos":
        msg[60] = {"60.1": "22", "60.2": "000001", "60.3": "000"}
    stamped = mac.stamp(msg, spec, MAK)
    assert mac.algorithm_for(spec) == algorithm
    data = encode(stamped, spec)
    independent = mac.compute(algorithm, MAK, data[:-mac_size])   # from the MTI up to field 64
    wire = data[-mac_size:]
    assert stamped[64] == independent
    assert wire == (independent if mac_size == 8 else independent.hex().upper().encode())
    assert mac.verify(data, spec, MAK)
    assert mac.verify(stamped, spec, MAK)
    assert msg.get(64) is None  # stamp returns a copy


def test_unionpay_published_frame_verifies() -> None:
    # The capture's field 60 has 19 digits (60.1-60.7 plus two more), longer than unionpay_pos's
    # 17-digit composite; a user spec extending the dialect carries it as plain LLL n.
    spec = load_spec({"name": "cup-capture", "extends": "unionpay_pos", "fields": {
        "60": {"name": "Custom field", "type": "n", "length": "LLL", "max": 100, "pad": "right0",
               "prefix": "bcd", "encoding": "bcd"}}})
    message = CUP_FRAME[2 + 5 + 6:]
    mak = bytes.fromhex("0723C80DB5F4CD3D0723C80DB5F4CD3D")
    assert mac.algorithm_for(spec) == "unionpay_ecb"  # by family, though the name is not built in
    assert mac.verify(message, spec, mak)
    tampered = bytearray(message)
    tampered[message.index(bytes.fromhex("000000001234")) + 5] = 0x35   # amount 12.34 -> 12.35
    assert not mac.verify(bytes(tampered), spec, mak)
    assert not mac.verify(message, spec, MAK)


def test_secondary_bitmap_messages_carry_the_mac_in_128() -> None:
    spec = load_spec("iso87ascii")
    msg = Message("0800", {7: "1123091500", 11: "000001", 70: "301"})
    stamped = mac.stamp(msg, spec, MAK)
    assert 128 in stamped and 64 not in stamped
    data = encode(stamped, spec)
    assert stamped[128] == mac.retail_mac(MAK, data[:-16])
    assert mac.verify(data, spec, MAK)


def test_tampering_wrong_key_and_missing_mac_fail_verification() -> None:
    spec = load_spec("iso87ascii")
    data = encode(mac.stamp(Message("0200", dict(SALE)), spec, MAK), spec)
    amount_at = data.index(b"000000010000")
    tampered = data[:amount_at] + b"000000090000" + data[amount_at + 12:]
    assert not mac.verify(tampered, spec, MAK)
    assert not mac.verify(data, spec, KEYS.working_keys.pin_key)
    assert not mac.verify(encode(Message("0200", dict(SALE)), spec), spec, MAK)
    assert mac.verify(data, spec, MAK, algorithm="x9.19")
    assert not mac.verify(data, spec, MAK, algorithm="cbc")


def test_explicit_algorithm_and_a_spec_security_table() -> None:
    spec = load_spec({"name": "switch-x", "extends": "iso87binary", "security": {"mac_algorithm": "aes_cmac"}})
    aes = KEYS.aes_pin_key  # any AES key will do for the MAC
    stamped = mac.stamp(Message("0200", dict(SALE)), spec, aes)
    data = encode(stamped, spec)
    assert stamped[64] == mac.aes_cmac(aes, data[:-8], length=8)
    assert mac.verify(data, spec, aes)
    cbc = mac.stamp(Message("0200", dict(SALE)), load_spec("iso87binary"), MAK, algorithm="cbc")
    assert cbc[64] == mac.cbc_mac(MAK, encode(cbc, load_spec("iso87binary"))[:-8])


@given(amount=st.integers(0, 10**12 - 1), stan=st.integers(0, 999999),
       dialect=st.sampled_from(["iso87ascii", "iso87binary", "unionpay_pos"]))
def test_stamp_then_verify_round_trips_and_any_field_change_is_caught(amount: int, stan: int, dialect: str) -> None:
    spec = load_spec(dialect)
    msg = Message("0200", {**SALE, 4: f"{amount:012d}", 11: f"{stan:06d}"})
    data = encode(mac.stamp(msg, spec, MAK), spec)
    assert mac.verify(data, spec, MAK)
    changed = Message("0200", {**SALE, 4: f"{(amount + 1) % 10**12:012d}", 11: f"{stan:06d}"})
    changed[64] = mac.stamp(msg, spec, MAK)[64]   # the old MAC on a new amount
    assert not mac.verify(encode(changed, spec), spec, MAK)


@pytest.mark.parametrize("dialect", ["iso87ascii", "iso87binary", "unionpay_pos"])
def test_fallback_for_specs_without_compiled_field_codecs_agrees(dialect: str, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_spec(dialect)
    msg = Message("0200", dict(SALE))
    fast = mac.stamp(msg, spec, MAK)
    data = encode(fast, spec)
    monkeypatch.setattr(mac, "_field_size", lambda *args: None)   # force the double-encoding path
    assert mac.stamp(msg, spec, MAK) == fast
    assert mac.verify(data, spec, MAK) and mac.verify(fast, spec, MAK)
    assert mac.mac_input(msg, spec) == data[:len(data) - (16 if dialect == "iso87ascii" else 8)]


def test_spec_may_be_given_by_name() -> None:
    msg = Message("0200", dict(SALE))
    stamped = mac.stamp(msg, "unionpay_pos", MAK)
    assert stamped == mac.stamp(msg, load_spec("unionpay_pos"), MAK)
    assert mac.verify(encode(stamped, load_spec("unionpay_pos")), "unionpay_pos", MAK)
    assert mac.algorithm_for("iso87binary") == "retail"


def test_unionpay_has_no_field_128_so_secondary_fields_cannot_be_maced() -> None:
    msg = Message("0800", {7: "1123091500", 11: "000001", 70: "301"})
    with pytest.raises(mac.MacError, match="no field 128"):
        mac.stamp(msg, "unionpay_pos", MAK)
