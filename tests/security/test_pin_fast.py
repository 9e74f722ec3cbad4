"""The PIN block fast paths (format 0 under a TDES :class:`Key`) answer exactly as the general path.

``pin.encrypt`` / ``pin.decrypt`` take a shortcut for the common case and hand everything else to
``pin._encrypt`` / ``pin._decrypt``. These tests feed both the same inputs — valid ones, and PINs,
PANs, keys and blocks that are wrong in every way the general path checks — and require the same
block, the same PIN, or the same exception type and text.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from iso8583.security import Key, pin

_keys = st.sampled_from([Key(bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")),
                         Key(bytes.fromhex("0123456789ABCDEF")),
                         Key(bytes.fromhex("0123456789ABCDEFFEDCBA987654321089ABCDEF01234567")),
                         Key(bytes.fromhex("00112233445566778899AABBCCDDEEFF"), "aes"),
                         bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")])
_digits = st.text("0123456789", min_size=0, max_size=21)
_pins = st.one_of(_digits, st.sampled_from(["12a4", "１２３４", "12 34", "", None, 1234, "0000"]))
_pans = st.one_of(_digits, st.sampled_from(["6217000000000022", "4761739001010010", "٣٣٣٣", "62170000x", None, 5]))


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # the type and the text must match
        return ("error", type(exc).__name__, str(exc))


@given(_pins, _pans, _keys, st.sampled_from([0, 0, 0, 1, 3, 4, 7]))
def test_encrypt_fast_path_equals_general_path(pin_: Any, pan: Any, key: Any, fmt: int) -> None:
    if fmt in (1, 3, 4):  # random fill: the general path with the same seeded rng on both sides
        import random
        assert _outcome(lambda: pin.encrypt(pin_, pan, key, fmt, rng=random.Random(5))) == \
            _outcome(lambda: pin._encrypt(pin_, pan, key, fmt, random.Random(5)))
        return
    assert _outcome(pin.encrypt, pin_, pan, key, fmt) == _outcome(pin._encrypt, pin_, pan, key, fmt, None)


@given(st.one_of(st.binary(min_size=8, max_size=8), st.binary(max_size=17)), _pans, _keys,
       st.sampled_from([None, None, 0, 1, 3, 4]))
def test_decrypt_fast_path_equals_general_path_on_any_block(block: bytes, pan: Any, key: Any, fmt: Any) -> None:
    assert _outcome(pin.decrypt, block, pan, key, fmt) == _outcome(pin._decrypt, block, pan, key, fmt)


_tdes_keys = _keys.filter(lambda key: not (isinstance(key, Key) and key.algorithm == "aes"))


@given(st.text("0123456789", min_size=4, max_size=12), st.text("0123456789", min_size=1, max_size=19), _tdes_keys,
       st.integers(0, 63))
def test_decrypt_fast_path_on_real_blocks_and_one_bit_off(pin_: str, pan: str, key: Any, flip: int) -> None:
    block = pin._encrypt(pin_, pan, key, 0, None)
    assert pin.decrypt(block, pan, key) == pin_ == pin._decrypt(block, pan, key, None)
    other = pan[:-2] + str((int(pan[-2]) + 1) % 10) + pan[-1] if len(pan) >= 2 else pan
    assert _outcome(pin.decrypt, block, other, key, None) == _outcome(pin._decrypt, block, other, key, None)
    bad = (int.from_bytes(block, "big") ^ (1 << flip)).to_bytes(8, "big")
    assert _outcome(pin.decrypt, bad, pan, key, None) == _outcome(pin._decrypt, bad, pan, key, None)
