"""Key material, PINs and clear PIN blocks never show up in reprs, str() or exception text."""

from __future__ import annotations

import logging
import random

import pytest

from iso8583.security import Key, PinBlockError, SecurityError, WorkingKeys, dukpt, mac, pin
from iso8583.security.keys import load_test_keys

SECRET = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


def _forms(key_bytes: bytes) -> list[str]:
    h = key_bytes.hex()
    return [h.upper(), h.lower(), repr(key_bytes), h[:16].upper(), h[16:].upper()]


def test_key_repr_and_str_show_only_the_kcv() -> None:
    key = Key(SECRET)
    for text in (repr(key), str(key), f"{key}", repr([key]), repr({"k": key})):
        assert "08D7B4" in text
        for form in _forms(SECRET):
            assert form not in text


def test_working_keys_and_test_keys_reprs_are_masked() -> None:
    keys = load_test_keys()
    text = repr(keys) + repr(keys.working_keys) + repr(WorkingKeys.generate(rng=random.Random(1)))
    for key in (keys.tmk, keys.working_keys.pin_key, keys.working_keys.mac_key, keys.bdk, keys.ipek,
                keys.aes_pin_key, keys.data_key):
        for form in _forms(bytes(key)):
            assert form not in text


def test_exceptions_never_carry_keys_or_pins(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    keys = load_test_keys()
    failures: list[Exception] = []
    block = pin.encrypt("9137", "6217000000000014", keys.working_keys.pin_key)
    for call in (
        lambda: pin.decrypt(block, "6217000000000022", keys.working_keys.pin_key),
        lambda: pin.decrypt(block, "6217000000000014", keys.working_keys.mac_key),
        lambda: pin.verify_pin(block, "6217000000000014", keys.tmk, "9137"),
        lambda: WorkingKeys.unpack(keys.field62, keys.working_keys.pin_key),
        lambda: mac.retail_mac(bytes(keys.working_keys.mac_key)[:8], b"x"),
        lambda: Key(bytes(keys.tmk)[:15]),
        lambda: dukpt.derive_ipek(bytes(keys.bdk) + b"\x00", "FFFF9876543210E00000"),
    ):
        try:
            call()
        except (PinBlockError, SecurityError) as exc:
            failures.append(exc)
    assert len(failures) >= 5
    clear_block = pin.make_pin_block("9137", "6217000000000014").hex().upper()
    for exc in failures:
        text = str(exc) + repr(exc) + repr(exc.args)
        assert "9137" not in text and clear_block not in text
        for key in (keys.tmk, keys.working_keys.pin_key, keys.working_keys.mac_key, keys.bdk):
            for form in _forms(bytes(key)):
                assert form not in text
    assert caplog.records == []  # the library logs nothing at all
