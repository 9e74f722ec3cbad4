"""`posfault security`: checks on captured traffic that never print keys or PINs."""

from __future__ import annotations

import pytest

from iso8583.security.keys import load_test_keys
from posfault.cli import main

CUP_CAPTURE = (  # q.cnblogs.com/q/128930, see test_mac.py; MAC B3A092AE under this MAK
    "007F600003000060321032007202003020048000C0801500000000000000123400000203009930303030303030313935"
    "3237313831383232313738373531353600192600000100060000000000435F0112323834343132333435363738393031"
    "3233345F03063136303033365F04063230303832365C0230314233413039324145")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["security", *argv])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_verify_mac_of_a_framed_capture(capsys: pytest.CaptureFixture[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "cup.toml"
    spec.write_text('name = "cup-capture"\nextends = "unionpay_pos"\n[fields.60]\nname = "Custom"\ntype = "n"\n'
                    'length = "LLL"\nmax = 100\npad = "right0"\nprefix = "bcd"\nencoding = "bcd"\n')
    code, out = _run(capsys, "verify-mac", CUP_CAPTURE, "-d", str(spec), "--framing", "length",
                     "--key", "0723C80DB5F4CD3D0723C80DB5F4CD3D")
    assert code == 0 and "MAC OK" in out and "algorithm unionpay_ecb" in out
    assert "0723C80DB5F4CD3D" not in out
    code, out = _run(capsys, "verify-mac", CUP_CAPTURE, "-d", str(spec), "--framing", "length", "--key", "mak")
    assert code == 1 and "MAC MISMATCH" in out


def test_field62_pin_and_kcv_checks(capsys: pytest.CaptureFixture[str]) -> None:
    keys = load_test_keys()
    code, out = _run(capsys, "field62", keys.field62.hex(), "--tmk", "tmk")
    assert code == 0 and f"kcv {keys.working_keys.mac_key.kcv.hex().upper()}" in out
    assert bytes(keys.working_keys.mac_key).hex().upper() not in out
    code, out = _run(capsys, "field62", keys.field62.hex(), "--tmk", "0123456789ABCDEFFEDCBA9876543210")
    assert code == 1 and "KCV MISMATCH" in out
    # X9.24-1 Annex A.4: PIN 1234 / PAN 4012345678909 under the KSN ...E00001 PIN key.
    pin_key = "042666B49184CF5C68DE9628D0397B36"
    code, out = _run(capsys, "check-pin", "1B9C1845EB993A7A", "--pan", "4012345678909", "--pin", "1234",
                     "--key", pin_key)
    assert code == 0 and "PIN matches" in out
    code, out = _run(capsys, "check-pin", "1B9C1845EB993A7A", "--pan", "4012345678909", "--pin", "9999",
                     "--key", pin_key)
    assert code == 1 and "does NOT match" in out and "9999" not in out and "1234" not in out
    code, out = _run(capsys, "kcv", "0123456789ABCDEFFEDCBA9876543210")
    assert code == 0 and "kcv 08D7B4" in out
    code, out = _run(capsys, "kcv", "nothex!")
    assert code == 2 and "must be hex" in out


def test_tlv_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(capsys, "tlv", "9F2701805A086217000000000014")
    assert code == 0 and "621700******0014" in out and "Cryptogram Information Data" in out
