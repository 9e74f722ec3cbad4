"""Key check values, parity, key wrapping and sign-on working keys (field 62)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iso8583.security import Key, KeyCheckError, SecurityError, WorkingKeys, adjust_parity, kcv
from iso8583.security._crypto import aes_cmac
from iso8583.security.keys import decrypt_key, encrypt_key, has_odd_parity, load_test_keys

X924_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


def test_tdes_kcv_published_value() -> None:
    # Source: EFTlab BP-Tools / Thales payShield manuals: KCV of 0123456789ABCDEFFEDCBA9876543210 is 08D7B4.
    assert kcv(X924_KEY).hex().upper() == "08D7B4"
    assert kcv(X924_KEY, length=4).hex().upper() == "08D7B4FB"
    assert Key(X924_KEY).kcv.hex().upper() == "08D7B4"


def test_aes_kcv_legacy_published_value() -> None:
    # Source: crypto.stackexchange.com/q/11872: AES key 48C3B4286FF421A4A328E68AD9E542A4 -> KCV 77DC84
    # (the legacy method: encrypt a zero block).
    key = Key("48C3B4286FF421A4A328E68AD9E542A4", "aes")
    assert kcv(key, method="zero").hex().upper() == "77DC84"


def test_aes_kcv_is_cmac_of_a_zero_block_five_bytes() -> None:
    # X9.24-1:2017 / PCI PIN requirement 15-1: AES check values by the CMAC method, at most 40 bits.
    # AES-CMAC itself is checked against RFC 4493 in test_mac.py.
    key = Key("2B7E151628AED2A6ABF7158809CF4F3C", "aes")
    assert kcv(key) == aes_cmac(bytes(key), bytes(16))[:5]
    assert len(kcv(key)) == 5


def test_parity_adjustment() -> None:
    # Source: the X9.24 test key is published with odd parity already; adjusting keeps it unchanged.
    assert has_odd_parity(X924_KEY)
    assert adjust_parity(X924_KEY) == X924_KEY
    assert adjust_parity(bytes.fromhex("0000000000000000")).hex().upper() == "0101010101010101"
    assert adjust_parity(bytes.fromhex("FEFEFEFEFEFEFEFE")).hex().upper() == "FEFEFEFEFEFEFEFE"
    assert adjust_parity(bytes.fromhex("FFFF")).hex().upper() == "FEFE"


@given(st.binary(min_size=8, max_size=8).map(lambda b: b * 2))
def test_parity_only_touches_the_low_bit_and_keeps_the_des_key_equivalent(raw: bytes) -> None:
    fixed = adjust_parity(raw)
    assert has_odd_parity(fixed)
    assert all((a ^ b) & 0xFE == 0 for a, b in zip(raw, fixed))
    assert kcv(raw) == kcv(fixed)  # DES ignores parity bits


def test_key_wrapping_under_a_master_key_published_unionpay_example() -> None:
    # Source: CSDN "MAC算法演示" (blog.csdn.net/zhu244912654/article/details/80005341): TMK
    # 70F2A84CCBC2AE8625CBB0F2C22AB923, TAK under TMK 96D605EA176B7E9E -> clear TAK C24A8FB57AA20123.
    tmk = bytes.fromhex("70F2A84CCBC2AE8625CBB0F2C22AB923")
    clear = decrypt_key(tmk, bytes.fromhex("96D605EA176B7E9E"))
    assert bytes(clear).hex().upper() == "C24A8FB57AA20123"
    assert encrypt_key(tmk, clear).hex().upper() == "96D605EA176B7E9E"


def test_working_keys_pack_unpack_all_layouts() -> None:
    rng = random.Random(7)
    tmk = Key.generate(rng=rng)
    for length, with_tdk, size in [(8, False, 24), (16, False, 40), (16, True, 60)]:
        wk = WorkingKeys.generate(length, with_data_key=with_tdk, rng=rng)
        payload = wk.pack(tmk)
        assert len(payload) == size
        # Layout: enc(PIK) | KCV4(PIK) | enc(MAK) | KCV4(MAK) [| enc(TDK) | KCV4(TDK)]
        assert payload[:length] == encrypt_key(tmk, wk.pin_key)
        assert payload[length:length + 4] == kcv(wk.pin_key, length=4)
        assert WorkingKeys.unpack(payload, tmk) == wk
        assert WorkingKeys.unpack(wk.pack_hex(tmk), tmk) == wk
        assert has_odd_parity(wk.pin_key) and has_odd_parity(wk.mac_key)


def test_single_length_mac_key_in_a_double_length_layout() -> None:
    keys = load_test_keys()
    wk = WorkingKeys(keys.working_keys.pin_key, keys.working_keys_single.mac_key)
    payload = wk.pack(keys.tmk)
    assert len(payload) == 40
    assert payload[20 + 8:20 + 16] == bytes(8)   # MAK slot: 8 encrypted bytes, 8 zero bytes
    back = WorkingKeys.unpack(payload, keys.tmk)
    assert back == wk and len(back.mac_key) == 8


def test_wrong_tmk_or_corrupted_field_62_is_a_key_check_error() -> None:
    keys = load_test_keys()
    payload = bytearray(keys.field62)
    with pytest.raises(KeyCheckError, match=r"PIN key.*wrong terminal master key"):
        WorkingKeys.unpack(bytes(payload), Key.generate())
    payload[22] ^= 0x01  # inside the encrypted MAK
    with pytest.raises(KeyCheckError, match="MAC key"):
        WorkingKeys.unpack(bytes(payload), keys.tmk)
    with pytest.raises(SecurityError, match="expected 24, 40 or 60 bytes, got 39"):
        WorkingKeys.unpack(bytes(payload[:39]), keys.tmk)
    with pytest.raises(SecurityError, match="not valid hexadecimal"):
        WorkingKeys.unpack("zz", keys.tmk)


def test_test_key_fixture_loads_and_is_self_consistent() -> None:
    keys = load_test_keys()
    assert WorkingKeys.unpack(keys.field62, keys.tmk) == keys.working_keys
    assert len(keys.field62_single) == 24
    assert bytes(keys.bdk).hex().upper() == "0123456789ABCDEFFEDCBA9876543210"
    assert bytes(keys.ipek).hex().upper() == "6AC292FAA1315B4D858AB3A3D7D5933A"
    assert keys.aes_pin_key.algorithm == "aes"


def test_unmarked_key_file_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "keys.toml"
    path.write_text('[terminal]\ntmk = "0123456789ABCDEFFEDCBA9876543210"\n')
    with pytest.raises(SecurityError, match="test_only"):
        load_test_keys(str(path))


def test_bad_key_lengths_are_clear_errors() -> None:
    with pytest.raises(SecurityError, match="TDES key must be 8, 16 or 24 bytes, got 10"):
        Key(bytes(10))
    with pytest.raises(SecurityError, match="AES key must be 16, 24 or 32 bytes, got 8"):
        Key(bytes(8), "aes")
    with pytest.raises(SecurityError, match="8 or 16 bytes"):
        WorkingKeys(Key(bytes(16)), Key(bytes(24)))


@given(st.binary(max_size=64) | st.sampled_from([24, 40, 60]).flatmap(lambda n: st.binary(min_size=n, max_size=n)))
def test_random_field_62_payloads_only_raise_security_errors(payload: bytes) -> None:
    tmk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    try:
        WorkingKeys.unpack(payload, tmk)
    except SecurityError:
        pass
