"""Sample messages in fixtures/messages decode with their dialect, and `posfault decode` shows them masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from iso8583 import decode, encode, load_spec
from posfault.cli import main

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "messages"
SAMPLES = sorted(p for p in FIXTURES.glob("*.hex") if ".framed" not in p.name)


def dialect_of(path: Path) -> str:
    return next(name for name in ("iso87ascii", "iso87binary", "iso93ascii", "unionpay_pos")
                if path.name.startswith(name))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_fixture_messages_decode_and_re_encode_identically(path: Path) -> None:
    spec = load_spec(dialect_of(path))
    data = bytes.fromhex(path.read_text())
    msg = decode(data, spec)
    assert encode(msg, spec) == data


def test_cli_decode_prints_masked_fields(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", str(FIXTURES / "iso87ascii_0200_sale.hex"), "--dialect", "iso87ascii"]) == 0
    out = capsys.readouterr().out
    assert "476173******0010" in out
    assert "4761739001010010" not in out
    assert "Primary account number" in out and "000000010000" in out


def test_cli_decode_strips_length_tpdu_and_header(capsys: pytest.CaptureFixture[str]) -> None:
    path = FIXTURES / "unionpay_pos_0200_sale.framed.hex"
    assert main(["decode", str(path), "--dialect", "unionpay_pos", "--framing", "length"]) == 0
    out = capsys.readouterr().out
    assert "TPDU: 6000030000" in out and "60.1" in out


def test_cli_decode_accepts_hex_argument_and_binary_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hex_text = (FIXTURES / "iso87binary_0200_sale.hex").read_text().strip()
    assert main(["decode", hex_text, "--dialect", "iso87binary"]) == 0
    binary = tmp_path / "msg.bin"
    binary.write_bytes(bytes.fromhex(hex_text))
    assert main(["decode", str(binary), "--dialect", "iso87binary"]) == 0
    assert capsys.readouterr().out.count("MTI  0200") == 2


def test_cli_decode_reports_bad_input_with_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "0200ZZ", "--dialect", "iso87ascii"]) == 2
    assert main(["decode", "30323030", "--dialect", "iso87ascii"]) == 2  # "0200" and no bitmap
    err = capsys.readouterr().err
    assert "bitmap" in err
