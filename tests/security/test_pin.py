"""ISO 9564-1 PIN blocks: published vectors, round trips, and clear errors for bad blocks."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iso8583.security import Key, PinBlockError, pin
from iso8583.security._crypto import tdes_ecb_decrypt

TDES_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")  # ANSI X9.24 public test key
AES_KEY = Key("62CB437131C129DF001D42676011975150506E2A382145FD9BDEA7EC5A339F63", "aes")


# -- published vectors --------------------------------------------------------------------------------

def test_format0_vector_eftlab_bp_tools() -> None:
    # Source: EFTlab BP-Tools "PIN blocks" example, reproduced in the ID TECH knowledge base
    # (atlassian.idtechproducts.com, ISO 9564 Format 0): PAN 43219876543210987, PIN 1234
    # -> clear PIN block 0412AC89ABCDEF67.
    block = pin.make_pin_block("1234", "43219876543210987", 0)
    assert block.hex().upper() == "0412AC89ABCDEF67"
    assert pin.parse_pin_block(bytes.fromhex("0412AC89ABCDEF67"), "43219876543210987") == "1234"


def test_format3_vector_ibm_cca() -> None:
    # Source: IBM Linux on Z CCA documentation, "ISO Format 3": PIN 123456, intermediate PIN block
    # 36123456AFBECDDC, PAN block 0000222333444555 -> PIN block 361216759CFA8889. IBM's PAN block
    # holds the 12 digits 222333444555; a PAN with those 12 digits before its check digit is used.
    pan = "1112223334445558"
    assert pin.pan_field(pan).hex().upper() == "0000222333444555"
    assert pin.parse_pin_block(bytes.fromhex("361216759CFA8889"), pan) == "123456"
    fill = iter("AFBECDDC")
    rng = random.Random()
    rng.choice = lambda seq: next(fill)  # type: ignore[method-assign]
    assert pin.make_pin_block("123456", pan, 3, rng=rng).hex().upper() == "361216759CFA8889"


def test_format4_vector_wpay_developer_hub() -> None:
    # Source: WPAY developer hub, "AES 128-bit PIN block or ISO Format 4": AES-256 PIN key
    # 62CB4371...5A339F63, PAN 5237481234567895, PIN 1234, plaintext PIN field
    # 441234AAAAAAAAAAFFC853BBF9685D5E; full-PAN block 060E768D21D709B5D2A3F9660A704B9D.
    assert pin.pan_field("5237481234567895", 4).hex().upper() == "45237481234567895000000000000000"
    random_part = iter(bytes.fromhex("FFC853BBF9685D5E"))
    rng = random.Random()
    rng.getrandbits = lambda k: next(random_part)  # type: ignore[method-assign]
    assert pin.make_pin_block("1234", "5237481234567895", 4, rng=rng).hex().upper() == \
        "441234AAAAAAAAAAFFC853BBF9685D5E"
    random_part = iter(bytes.fromhex("FFC853BBF9685D5E"))
    block = pin.encrypt("1234", "5237481234567895", AES_KEY, 4, rng=rng)
    assert block.hex().upper() == "060E768D21D709B5D2A3F9660A704B9D"
    assert pin.decrypt(block, "5237481234567895", AES_KEY) == "1234"
    # Same source, 12-digit-PAN variant (PAN field 0748123456789000...): 225EF53C962E6AD84AC671C160A44627.
    assert pin.decrypt(bytes.fromhex("225EF53C962E6AD84AC671C160A44627"), "748123456789", AES_KEY) == "1234"


def test_format0_under_dukpt_key_vector_x9_24() -> None:
    # Source: ANSI X9.24-1:2009 Annex A.4 test data: PIN 1234, PAN 4012345678909, KSN
    # FFFF9876543210E00001 -> encrypted PIN block 1B9C1845EB993A7A. The key is that KSN's
    # transaction key 042666B49184CFA368DE9628D0397BC9 (published there) XOR the PIN variant
    # 00000000000000FF00000000000000FF; tests/security/test_dukpt.py derives it from the BDK.
    key = bytes.fromhex("042666B49184CF5C68DE9628D0397B36")
    assert pin.encrypt("1234", "4012345678909", key, 0).hex().upper() == "1B9C1845EB993A7A"
    assert pin.decrypt(bytes.fromhex("1B9C1845EB993A7A"), "4012345678909", key) == "1234"


# -- behaviour ----------------------------------------------------------------------------------------

@given(pin_=st.text("0123456789", min_size=4, max_size=12),
       pan=st.text("0123456789", min_size=13, max_size=19),
       fmt=st.sampled_from([0, 1, 3]), seed=st.integers(0, 2**32))
def test_tdes_formats_round_trip(pin_: str, pan: str, fmt: int, seed: int) -> None:
    block = pin.encrypt(pin_, pan, TDES_KEY, fmt, rng=random.Random(seed))
    assert len(block) == 8
    assert pin.decrypt(block, pan, TDES_KEY) == pin_
    assert pin.verify_pin(block, pan, TDES_KEY, pin_)
    clear = tdes_ecb_decrypt(TDES_KEY, block)
    assert clear[0] >> 4 == fmt


@given(pin_=st.text("0123456789", min_size=4, max_size=12),
       pan=st.text("0123456789", min_size=1, max_size=19), seed=st.integers(0, 2**32))
def test_format4_round_trip(pin_: str, pan: str, seed: int) -> None:
    block = pin.encrypt(pin_, pan, AES_KEY, 4, rng=random.Random(seed))
    assert len(block) == 16
    assert pin.decrypt(block, pan, AES_KEY) == pin_


def test_format3_fill_is_random_a_to_f_and_format1_needs_no_pan() -> None:
    blocks = {pin.make_pin_block("1234", "6217000000000014", 3, rng=random.Random(i)) for i in range(20)}
    assert len(blocks) > 1
    for block in blocks:
        assert pin.parse_pin_block(block, "6217000000000014") == "1234"
    block1 = pin.encrypt("987654", None, TDES_KEY, 1, rng=random.Random(1))
    assert pin.decrypt(block1, None, TDES_KEY) == "987654"


def test_wrong_pin_is_false_but_wrong_pan_or_key_is_an_error() -> None:
    pan = "6217000000000014"
    block = pin.encrypt("1234", pan, TDES_KEY, 0)
    assert pin.verify_pin(block, pan, TDES_KEY, "1234")
    assert not pin.verify_pin(block, pan, TDES_KEY, "4321")
    with pytest.raises(PinBlockError, match="wrong key, wrong PAN"):
        pin.decrypt(block, "6217000000009999", TDES_KEY)
    with pytest.raises(PinBlockError):
        pin.decrypt(block, pan, bytes.fromhex("FEDCBA98765432100123456789ABCDEF"))
    aes_block = pin.encrypt("1234", pan, AES_KEY, 4)
    with pytest.raises(PinBlockError):
        pin.decrypt(aes_block, "6217000000000022", AES_KEY)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: pin.make_pin_block("123", "6217000000000014"), "4 to 12 digits"),
    (lambda: pin.make_pin_block("1234567890123", "6217000000000014"), "4 to 12 digits"),
    (lambda: pin.make_pin_block("12a4", "6217000000000014"), "decimal digits"),
    (lambda: pin.make_pin_block("1234", None, 0), "needs the PAN"),
    (lambda: pin.make_pin_block("1234", "6217", 2), "unsupported PIN block format 2"),
    (lambda: pin.decrypt(b"\x00" * 7, "6217000000000014", TDES_KEY), "must be 8 bytes"),
    (lambda: pin.parse_pin_block(bytes.fromhex("0412AC89ABCDEF67"), "43219876543210987", fmt=3),
     "expected format 3"),
    (lambda: pin.parse_pin_block(bytes.fromhex("0D12AC89ABCDEF67"), "43219876543210987"), "outside 4..12"),
    (lambda: pin.parse_pin_block(bytes.fromhex("5412AC89ABCDEF67"), "43219876543210987"),
     "no supported format"),
])
def test_malformed_input_gives_a_clear_error(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PinBlockError, match=message):
        call()


def test_errors_never_contain_the_pin_or_clear_block() -> None:
    pan = "6217000000000014"
    block = pin.encrypt("8642", pan, TDES_KEY, 0)
    clear = tdes_ecb_decrypt(TDES_KEY, block).hex().upper()
    for wrong_pan in ("6217000000000022", "6217000000000030", "4000000000000002"):
        try:
            pin.decrypt(block, wrong_pan, TDES_KEY)
        except PinBlockError as exc:
            text = str(exc) + repr(exc)
            assert "8642" not in text and clear not in text and TDES_KEY.hex().upper() not in text


@given(block=st.binary(min_size=8, max_size=8) | st.binary(min_size=16, max_size=16),
       pan=st.text("0123456789", min_size=1, max_size=19))
def test_random_blocks_only_ever_raise_pin_block_error(block: bytes, pan: str) -> None:
    for key in (TDES_KEY, AES_KEY):
        try:
            result = pin.decrypt(block, pan, key)
        except PinBlockError:
            continue
        assert result.isdigit() and 4 <= len(result) <= 12
