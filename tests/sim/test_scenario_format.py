"""Scenario files: every shipped file loads, errors name file/table/key, the writer round-trips."""

from __future__ import annotations

import pathlib
import tomllib

import pytest
from hypothesis import given, settings

from posfault.campaign import CampaignConfig, generate_schedule, schedules
from posfault.oracle import ANOMALY_KINDS, AttemptRecord, LedgerRecord, Oracle
from posfault.scenario import Expectation, Scenario, ScenarioError, Step

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "fixtures" / "scenarios").glob("*.toml"))
INCIDENTS = {"debited-no-receipt", "receipt-not-charged", "double-charge", "not-credited", "charged-no-receipt"}


def test_every_incident_ships_in_faulty_and_fixed_form() -> None:
    faulty, fixed = {}, {}
    for path in SCENARIOS:
        s = Scenario.load(path)
        assert s.expect.anomalies is not None, f"{path.name} states no expected verdict"
        assert s.incident in INCIDENTS, path.name
        target = faulty if path.name.endswith(".faulty.toml") else fixed
        assert path.name.endswith((".faulty.toml", ".fixed.toml")), path.name
        target.setdefault(s.incident, []).append(path.stem.split(".")[0])
        if target is faulty:
            assert s.incident in s.expect.anomalies, f"{path.name} must expect its own incident"
        else:
            assert s.expect.anomalies == [], f"{path.name}: the fixed form must be clean"
    assert set(faulty) == INCIDENTS == set(fixed)
    for incident, stems in faulty.items():
        assert sorted(stems) == sorted(fixed[incident]), f"{incident}: every faulty file needs its fixed twin"


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_round_trip_through_the_writer(path: pathlib.Path) -> None:
    s = Scenario.load(path)
    again = Scenario.from_dict(tomllib.loads(s.to_toml(comment="written back")))
    assert again.to_dict() == s.to_dict()


def write(tmp_path: pathlib.Path, text: str) -> pathlib.Path:
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    return path


BASE = '[scenario]\nname = "x"\n[[steps]]\ndo = "sale"\namount = "1.00"\n'


@pytest.mark.parametrize(("extra", "needle"), [
    ('[[faults]]\naction = "explode"\n', "[[faults]] #1: unknown action 'explode'"),
    ('[[faults]]\naction = "drop"\nmti = "210"\n', "4 digits"),
    ('[[faults]]\naction = "delay"\n', "needs seconds"),
    ('[[faults]]\naction = "drop"\nnth = 0\n', "nth must be positive"),
    ('[[faults]]\naction = "drop"\nwhen = 3\n', "unknown key(s) ['when']"),
    ('[[steps]]\ndo = "sael"\n', "[[steps]] #2 do = 'sael'"),
    ('[[steps]]\ndo = "sale"\namount = "1.234"\n', "amount must look like"),
    ('[[steps]]\ndo = "power_cycle"\nat = "mid-air"\n', "at = 'mid-air'"),
    ('[host]\nno_duplicate_detection = "yes"\n', "must be true or false"),
    ('[host]\nbe_careless = true\n', "unknown key 'be_careless'"),
    ('[expect]\nanomalies = ["lost-money"]\n', "unknown kind 'lost-money'"),
])
def test_errors_name_the_file_table_and_key(tmp_path: pathlib.Path, extra: str, needle: str) -> None:
    path = write(tmp_path, BASE + extra)
    with pytest.raises(ScenarioError) as info:
        Scenario.load(path)
    assert needle in str(info.value) and str(path) in str(info.value)


def test_syntax_and_structure_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ScenarioError, match="not valid TOML"):
        Scenario.load(write(tmp_path, "[scenario\n"))
    with pytest.raises(ScenarioError, match=r"missing \[scenario\]"):
        Scenario.load(write(tmp_path, '[[steps]]\ndo = "sale"\namount = "1.00"\n'))
    with pytest.raises(ScenarioError, match="no \\[\\[steps\\]\\]"):
        Scenario.load(write(tmp_path, '[scenario]\nname = "x"\n'))
    with pytest.raises(ScenarioError, match="terminal_profile = 'buggy'"):
        Scenario.load(write(tmp_path, BASE.replace('name = "x"', 'name = "x"\nterminal_profile = "buggy"')))


def _verdict(outcome: str, receipt: float | None, net: int):
    att = AttemptRecord(1, "sale", 10000, "10000001", ("000001",), outcome, receipt_at=receipt)
    led = [LedgerRecord("10000001", "000001", 10000, net, debited_at=0.0, credited_at=1.0,
                        merchant_credit=net)] if net else []
    return Oracle().judge([att], led, ended_at=10.0)


def test_expectation_reports_the_difference() -> None:
    exp = Expectation(anomalies=["debited-no-receipt"],
                      attempts=[{"attempt": 1, "outcome": "failed", "cardholder_debit": "100.00"}])
    assert exp.differences(_verdict("failed", None, 10000)) == []
    diffs = exp.differences(_verdict("approved", 1.0, 10000))
    assert diffs[0] == "anomalies: expected ['debited-no-receipt'], got none"
    assert "attempt 1 outcome: expected 'failed', got 'approved'" in diffs
    assert Expectation(attempts=[{"attempt": 2}]).differences(_verdict("failed", None, 0))[0].startswith("no attempt 2")


def test_generated_schedules_are_valid_scenarios_and_reproducible() -> None:
    cfg = CampaignConfig(terminal_profile="no_reversal_on_timeout")
    for seed in range(200):
        s = generate_schedule(cfg, seed)
        assert s.to_dict() == generate_schedule(cfg, seed).to_dict()
        Scenario.from_dict(tomllib.loads(s.to_toml()))   # validates every generated rule and step
    assert generate_schedule(cfg, 1).to_dict() != generate_schedule(cfg, 2).to_dict()


@settings(max_examples=50)
@given(schedules(terminal_profile="late_response_accepted"))
def test_hypothesis_strategy_draws_valid_scenarios(s: Scenario) -> None:
    assert any(step.do in ("sale", "offline_sale") for step in s.steps)
    again = Scenario.from_dict(tomllib.loads(s.to_toml()))
    assert [Step(x.do, x.args) for x in again.steps] == s.steps and again.faults == s.faults


def test_anomaly_vocabulary_is_the_catalogue() -> None:
    assert set(ANOMALY_KINDS) == INCIDENTS
