"""MAC algorithms against published vectors (sources named next to each), plus properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iso8583.security import SecurityError, mac

K1 = bytes.fromhex("0123456789ABCDEF")
K2 = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


# -- ISO 9797-1 algorithm 1 (CBC-MAC) ------------------------------------------------------------------

def test_cbc_mac_single_des_fips_113_vector() -> None:
    # Source: FIPS PUB 113 (Computer Data Authentication) example, also the RustCrypto `daa` crate's
    # doc test: key 0123456789ABCDEF, data "7654321 Now is the time for " -> F1D30F6849312CA4.
    assert mac.cbc_mac(K1, b"7654321 Now is the time for ").hex().upper() == "F1D30F6849312CA4"


def test_cbc_mac_double_length_key_one_block_is_the_published_kcv_block() -> None:
    # Source: the TDES check value of the ANSI X9.24 test key 0123456789ABCDEFFEDCBA9876543210 is
    # 08D7B4FB629D0885 (EFTlab BP-Tools / every HSM manual's KCV example); CBC-MAC of one zero block
    # under a double-length key is exactly that encryption.
    assert mac.cbc_mac(K2, bytes(8)).hex().upper() == "08D7B4FB629D0885"


def test_padding_methods() -> None:
    assert mac.pad(b"", 1) == bytes(8)
    assert mac.pad(b"12345678", 1) == b"12345678"
    assert mac.pad(b"123", 1) == b"123" + bytes(5)
    assert mac.pad(b"12345678", 2) == b"12345678\x80" + bytes(7)
    assert mac.pad(b"123", 2) == b"123\x80" + bytes(4)
    assert mac.pad(b"123", 3) == (24).to_bytes(8, "big") + b"123" + bytes(5)
    with pytest.raises(SecurityError, match="padding method 4"):
        mac.pad(b"", 4)


# -- ISO 9797-1 algorithm 3 (ANSI X9.19 retail MAC) -----------------------------------------------------

def test_retail_mac_bouncycastle_vector() -> None:
    # Source: Bouncy Castle ISO9797Alg3MacTest: key 7CA110454A1A6E570131D9619DC1376E,
    # "Hello World !!!!" -> F09B856213BAB83B.
    key = bytes.fromhex("7CA110454A1A6E570131D9619DC1376E")
    assert mac.retail_mac(key, b"Hello World !!!!").hex().upper() == "F09B856213BAB83B"


def test_retail_mac_padding_2_icao_9303_vector() -> None:
    # Source: ICAO Doc 9303 Part 11, worked example of Basic Access Control (MAC algorithm 3, padding
    # method 2): K_MAC 7962D9ECE03D1ACD4C76089DCE131543, E_IFD 72C29C23...76ED92F2 -> M_IFD 5F1448EEA8AD90A7.
    key = bytes.fromhex("7962D9ECE03D1ACD4C76089DCE131543")
    data = bytes.fromhex("72C29C2371CC9BDB65B779B8E8D37B29ECC154AA56A8799FAE2F498F76ED92F2")
    assert mac.retail_mac(key, data, padding=2).hex().upper() == "5F1448EEA8AD90A7"


@given(st.binary(max_size=100))
def test_retail_mac_with_equal_halves_is_des_cbc_mac(data: bytes) -> None:
    # ISO 9797-1: algorithm 3 with K' = K degenerates to algorithm 1 with single DES.
    assert mac.retail_mac(K1 + K1, data) == mac.cbc_mac(K1, data)


def test_retail_mac_needs_a_double_length_key() -> None:
    with pytest.raises(SecurityError, match="16-byte key, got 8"):
        mac.retail_mac(K1, b"data")


# -- UnionPay POS ECB MAC -------------------------------------------------------------------------------

# A UnionPay POS sale request frame posted with the MAC its production system generated ("correct MAC") in a
# cnblogs Q&A (q.cnblogs.com/q/128930): 2-byte length 007F, TPDU 6000030000, app header 603210320072,
# then the ISO message from MTI 0200 to field 63; field 64 = "B3A092AE" (ASCII). TAK (MAK)
# 0723C80DB5F4CD3D0723C80DB5F4CD3D (both halves equal: single-DES behaviour).
CUP_FRAME = bytes.fromhex(
    "007F600003000060321032007202003020048000C0801500000000000000123400000203009930303030303030313935"
    "3237313831383232313738373531353600192600000100060000000000435F0112323834343132333435363738393031"
    "3233345F03063136303033365F04063230303832365C0230314233413039324145"
)
CUP_MAK = bytes.fromhex("0723C80DB5F4CD3D0723C80DB5F4CD3D")


def test_unionpay_ecb_mac_matches_a_published_frame() -> None:
    assert len(CUP_FRAME) == 2 + 0x7F
    mab = CUP_FRAME[2 + 5 + 6:-8]      # MTI .. field 63: no length, TPDU, header or MAC
    assert mab[:2] == b"\x02\x00"
    assert mac.unionpay_ecb_mac(CUP_MAK, mab) == b"B3A092AE" == CUP_FRAME[-8:]
    assert mac.unionpay_ecb_mac(CUP_MAK[:8], mab) == b"B3A092AE"  # single DES gives the same


def test_unionpay_ecb_mac_steps_match_the_csdn_walkthrough() -> None:
    # Source: CSDN "MAC算法演示" (blog.csdn.net/zhu244912654/article/details/80005341): the MAB of a
    # UnionPay 0200 is XORed block by block; after M1..M4 the running XOR is 9A1753638ED222D9.
    mab = bytes.fromhex(
        "0200302004C020C0981100000000000000005100183402100006324392260009942820D131210112008439313636"
        "3838303134303030303030303030303030303031313536ACF46E73838A82F92600000000000000000822000001")
    acc = 0
    for i in range(0, 32, 8):
        acc ^= int.from_bytes(mab[i:i + 8], "big")
    assert f"{acc:016X}" == "9A1753638ED222D9"
    # A change anywhere in the MAB changes the MAC; the MAC is 8 upper-case hex characters.
    key = bytes.fromhex("C24A8FB57AA20123")
    good = mac.unionpay_ecb_mac(key, mab)
    assert len(good) == 8 and all(c in b"0123456789ABCDEF" for c in good)
    assert mac.unionpay_ecb_mac(key, mab[:-1] + b"\x02") != good


# -- AES-CMAC --------------------------------------------------------------------------------------------

RFC4493_KEY = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")
RFC4493_MSG = bytes.fromhex(
    "6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E51"
    "30C81C46A35CE411E5FBC1191A0A52EFF69F2445DF4F9B17AD2B417BE66C3710")


@pytest.mark.parametrize(("length", "expected"), [
    # Source: RFC 4493 section 4 (= NIST SP 800-38B Appendix D.1, AES-128) examples 1-4.
    (0, "BB1D6929E95937287FA37D129B756746"),
    (16, "070A16B46B4D4144F79BDD9DD04A287C"),
    (40, "DFA66747DE9AE63030CA32611497C827"),
    (64, "51F0BEBF7E3B9D92FC49741779363CFE"),
])
def test_aes_cmac_rfc_4493_vectors(length: int, expected: str) -> None:
    assert mac.aes_cmac(RFC4493_KEY, RFC4493_MSG[:length]).hex().upper() == expected
    assert mac.aes_cmac(RFC4493_KEY, RFC4493_MSG[:length], length=8).hex().upper() == expected[:16]


# -- dispatch -------------------------------------------------------------------------------------------

def test_compute_by_name_and_alias() -> None:
    data = b"0200 something to MAC"
    assert mac.compute("x9.19", K2, data) == mac.compute("retail", K2, data) == mac.retail_mac(K2, data)
    assert mac.compute("ecb", K1, data) == mac.unionpay_ecb_mac(K1, data)
    assert mac.compute("cbc", K2, data) == mac.cbc_mac(K2, data)
    assert mac.compute("aes_cmac", RFC4493_KEY, data) == mac.aes_cmac(RFC4493_KEY, data)[:8]
    with pytest.raises(SecurityError, match="unknown MAC algorithm 'sha1'"):
        mac.compute("sha1", K2, data)


@given(st.binary(max_size=64), st.integers(0, 63))
def test_every_algorithm_detects_a_flipped_bit(data: bytes, bit: int) -> None:
    data = data or b"\x00"
    flipped = bytearray(data)
    flipped[(bit // 8) % len(data)] ^= 1 << (bit % 8)
    for name, key in [("retail", K2), ("cbc", K2), ("aes_cmac", RFC4493_KEY)]:
        assert mac.compute(name, key, data) != mac.compute(name, key, bytes(flipped))
