"""CLI exit codes and output: scenario run (0 match, 1 mismatch with the difference, 2 bad file),
--seed replay, report, campaign, and the demo."""

from __future__ import annotations

import json
import pathlib

import pytest

from posfault.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "fixtures" / "scenarios"


def test_scenario_run_matches_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["scenario", "run", str(SCENARIOS / "debited_no_receipt.faulty.toml"),
                 str(SCENARIOS / "debited_no_receipt.fixed.toml")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("MATCH: verdict is as expected") == 2 and "debited-no-receipt" in out


def test_scenario_run_mismatch_exit_1_with_the_difference(tmp_path: pathlib.Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    text = (SCENARIOS / "debited_no_receipt.faulty.toml").read_text(encoding="utf-8")
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(text.replace('terminal_profile = "no_reversal_on_timeout"', 'terminal_profile = "correct"'),
                     encoding="utf-8")
    code = main(["scenario", "run", str(wrong)])
    out = capsys.readouterr().out
    assert code == 1
    assert "MISMATCH" in out and "anomalies: expected ['debited-no-receipt'], got none" in out
    assert "attempt 1 cardholder_debit: expected 100.00, got 0.00" in out


def test_scenario_run_bad_file_exit_2(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nname = "x"\n[[steps]]\ndo = "teleport"\n', encoding="utf-8")
    assert main(["scenario", "run", str(bad)]) == 2
    assert "do = 'teleport'" in capsys.readouterr().err


def test_seed_replays_exactly_and_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(SCENARIOS / "swiped_not_charged.faulty.toml")
    outs = []
    for _ in range(2):
        assert main(["scenario", "run", path, "--seed", "99", "--json"]) == 0
        outs.append(json.loads(capsys.readouterr().out.split("\nMATCH")[0]))
    assert outs[0] == outs[1] and outs[0]["seed"] == 99 and outs[0]["matches"] is True


def test_report_command_writes_every_format(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["report", str(SCENARIOS / "double_charge.faulty.toml"), "--out", str(tmp_path), "--mermaid"])
    out = capsys.readouterr().out
    assert code == 0 and "sequenceDiagram" in out and "double-charge" in out
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["double_charge.html", "double_charge.jsonl", "double_charge.mmd", "double_charge.pcap"]
    # A trace from a previous run renders on its own.
    assert main(["report", str(tmp_path / "double_charge.jsonl"), "--out", str(tmp_path / "again")]) == 0


def test_campaign_command_finds_shrinks_and_writes_the_scenario(tmp_path: pathlib.Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["campaign", "--profile", "no_reversal_on_timeout", "--schedules", "32", "--workers", "1",
                 "--quiet", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1 and "FOUND debited-no-receipt" in out
    (written,) = tmp_path.iterdir()
    assert main(["scenario", "run", str(written)]) == 0


def test_campaign_command_clean_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["campaign", "--schedules", "16", "--workers", "1", "--quiet"]) == 0
    assert "no anomaly found" in capsys.readouterr().out


def test_demo_shows_both_incidents_and_the_fix(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "debited-no-receipt" in out and "receipt-not-charged" in out
    assert out.count("money is right") >= 2 and "✕ DROP 0210" in out and "✕ DELAY 0210" in out
    assert len(list(tmp_path.glob("*.html"))) == 4 and len(list(tmp_path.glob("*.pcap"))) == 4
