"""ANSI X9.24-1 TDES DUKPT against the standard's published test data."""

from __future__ import annotations

import pytest

from iso8583.security import DukptError, dukpt, pin
from iso8583.security._crypto import tdes_cbc_encrypt

BDK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")  # X9.24-1 Annex A test BDK (public)
PAN = "4012345678909"


def test_ipek_x9_24_vector() -> None:
    # Source: ANSI X9.24-1:2004/2009 Annex A.4: BDK 0123456789ABCDEFFEDCBA9876543210,
    # KSN FFFF9876543210E00000 -> initial key 6AC292FAA1315B4D858AB3A3D7D5933A.
    assert dukpt.derive_ipek(BDK, "FFFF9876543210E00000").hex().upper() == "6AC292FAA1315B4D858AB3A3D7D5933A"
    # The counter bits of the KSN do not change the IPEK.
    assert dukpt.derive_ipek(BDK, "FFFF9876543210E00001") == dukpt.derive_ipek(BDK, "FFFF9876543210E00000")


def test_transaction_key_x9_24_vector() -> None:
    # Source: X9.24-1 Annex A.4, KSN FFFF9876543210E00001: key 042666B49184CFA368DE9628D0397BC9.
    ipek = dukpt.derive_ipek(BDK, "FFFF9876543210E00000")
    key = dukpt.derive_transaction_key(ipek, "FFFF9876543210E00001")
    assert key.hex().upper() == "042666B49184CFA368DE9628D0397BC9"


@pytest.mark.parametrize(("ksn", "block"), [
    # Source: ANSI X9.24-1:2009 Annex A.4 test data, PIN 1234, PAN 4012345678909, ISO format 0,
    # encrypted PIN block per KSN.
    ("FFFF9876543210E00001", "1B9C1845EB993A7A"),
    ("FFFF9876543210E00002", "10A01C8D02C69107"),
    ("FFFF9876543210E00003", "18DC07B94797B466"),
    ("FFFF9876543210E00004", "0BC79509D5645DF7"),
    ("FFFF9876543210E00005", "5BC0AF22AD87B327"),
    ("FFFF9876543210E00006", "A16DF70AE36158D8"),
    ("FFFF9876543210E00007", "27711C16CB257F8E"),
    ("FFFF9876543210E00010", "D5D9638559EF53D6"),
])
def test_pin_blocks_x9_24_vectors(ksn: str, block: str) -> None:
    key = dukpt.pin_key(BDK, ksn)
    assert pin.encrypt("1234", PAN, key, 0).hex().upper() == block
    assert pin.decrypt(bytes.fromhex(block), PAN, key) == "1234"


def test_data_keys_against_dukpt_net_vectors() -> None:
    # Source: Dukpt.NET (github.com/sgbj/Dukpt.NET) DukptTests: BDK as above, KSN FFFF9876543210E00008,
    # TDES-CBC (zero IV) of a track-1 string under the PIN key and under the data key.
    keys = dukpt.derive_keys(BDK, "FFFF9876543210E00008")
    clear = b"%B5452300551227189^HOGAN/PAUL      ^08043210000000725000000?\0\0\0\0"
    assert tdes_cbc_encrypt(bytes(keys.pin_key), clear).hex().upper() == (
        "C25C1D1197D31CAA87285D59A892047426D9182EC11353C051ADD6D0F072A6CB"
        "3436560B3071FC1FD11D9F7E74886742D9BEE0CFD1EA1064C213BB55278B2F12")
    assert tdes_cbc_encrypt(bytes(keys.data_request_key), clear).hex().upper() == (
        "411D405D7DEDB9D84797F045559721E8C06A5565FFB3B4050509277E5F80072E"
        "2410E0E6ADCBB614419700A9173807BA27C4E9D80BE67A2C32498032B200A7E3")


def test_variants_differ_from_each_other_and_ipek_path_matches_bdk_path() -> None:
    ksn = "FFFF9876543210E00005"
    keys = dukpt.derive_keys(BDK, ksn)
    tk = bytes(keys.transaction_key)
    assert bytes(keys.pin_key) == bytes(a ^ b for a, b in zip(tk, dukpt.PIN_VARIANT))
    assert bytes(keys.mac_request_key) == bytes(a ^ b for a, b in zip(tk, dukpt.MAC_REQUEST_VARIANT))
    assert bytes(keys.mac_response_key) == bytes(a ^ b for a, b in zip(tk, dukpt.MAC_RESPONSE_VARIANT))
    all_keys = {bytes(k) for k in (keys.pin_key, keys.mac_request_key, keys.mac_response_key,
                                   keys.data_request_key, keys.data_response_key)}
    assert len(all_keys) == 5
    ipek = dukpt.derive_ipek(BDK, ksn)
    assert dukpt.derive_keys(ipek=ipek, ksn=ksn) == keys
    assert dukpt.mac_key(BDK, ksn) == keys.mac_request_key
    assert dukpt.mac_key(BDK, ksn, response=True) == keys.mac_response_key
    assert "0123456789ABCDEF" not in repr(keys) and bytes(keys.pin_key).hex().upper() not in repr(keys)


def test_next_ksn_skips_counters_with_more_than_ten_one_bits_and_stops_at_exhaustion() -> None:
    assert dukpt.next_ksn("FFFF9876543210E00000").hex().upper() == "FFFF9876543210E00001"
    assert dukpt.next_ksn("FFFF9876543210E00009").hex().upper() == "FFFF9876543210E0000A"
    # 0x0007FE has ten one-bits; 0x0007FF (eleven) is skipped -> 0x000800.
    assert dukpt.next_ksn("FFFF9876543210E007FE").hex().upper() == "FFFF9876543210E00800"
    # Counter 0x1FF800 has ten one-bits; every larger 21-bit counter has more, so the device is spent.
    with pytest.raises(DukptError, match="exhausted"):
        dukpt.next_ksn("FFFF9876543210FFF800")
    assert dukpt.counter(dukpt.next_ksn("FFFF9876543210E00000")) == 1


def test_bad_ksn_and_bdk() -> None:
    with pytest.raises(DukptError, match="10 bytes"):
        dukpt.derive_ipek(BDK, "FFFF98765432")
    with pytest.raises(DukptError, match="double-length"):
        dukpt.derive_ipek(BDK[:8], "FFFF9876543210E00000")
    with pytest.raises(DukptError, match="hexadecimal"):
        dukpt.parse_ksn("XYZ")
    assert dukpt.parse_ksn("9876543210E00001") == bytes.fromhex("FFFF9876543210E00001")
