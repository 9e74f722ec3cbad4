"""End to end, per incident: the faulty form shows its anomaly (with evidence and cause), the fixed form
is clean — terminal, fault link, host and ledger all real, on the virtual clock."""

from __future__ import annotations

import pathlib

import pytest

from posfault.scenario import Scenario
from posfault.simulation import run_scenario

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "fixtures" / "scenarios").glob("*.toml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_scenario_verdict_matches_its_file(path: pathlib.Path) -> None:
    scenario = Scenario.load(path)
    result = run_scenario(scenario)
    assert result.differences == [], "\n".join(result.differences) + "\n" + result.verdict.summary()
    verdict = result.verdict
    assert verdict.conservation is None, verdict.conservation
    if path.name.endswith(".faulty.toml"):
        incident = [a for a in verdict.anomalies if a.kind == scenario.incident]
        assert incident, verdict.summary()
        anomaly = incident[0]
        assert anomaly.evidence, "an anomaly must come with the trace lines that show it"
        assert "no injected fault" not in anomaly.cause, anomaly.describe()   # a fault, profile or switch
    else:
        assert verdict.ok and all(t.money_right for t in verdict.truths), verdict.summary()


def _run(name: str):
    return run_scenario(Scenario.load(ROOT / "fixtures" / "scenarios" / name))


def test_debited_no_receipt_evidence_shows_the_lost_approval_and_the_debit() -> None:
    verdict = _run("debited_no_receipt.faulty.toml").verdict
    (anomaly,) = verdict.anomalies
    text = "\n".join(anomaly.evidence)
    assert "drop" in anomaly.cause and "0210" in anomaly.cause
    assert "posting" in text and "0200" in text
    truth = verdict.truth(1)
    assert truth.outcome == "failed" and not truth.receipt and truth.cardholder_debit == 10000
    # The cardholder stays debited with nothing in hand until the end of the run (days, not seconds).
    assert truth.debited_without_receipt_s > 86400


def test_fixed_lost_approval_is_reversed_within_the_timeout() -> None:
    truth = _run("debited_no_receipt.fixed.toml").verdict.truth(1)
    assert truth.cardholder_debit == 0
    # debited when the host approved, credited back when the 0400 arrived after the 60 s timeout
    assert 60.0 <= truth.debited_without_receipt_s <= 61.0


def test_late_approval_receipt_is_shown_as_not_charged() -> None:
    verdict = _run("swiped_not_charged.faulty.toml").verdict
    (anomaly,) = verdict.anomalies
    assert anomaly.kind == "receipt-not-charged" and "reversed after the approval was printed" in anomaly.detail
    assert "delay" in anomaly.cause


def test_not_credited_waits_for_the_recredit_when_fixed() -> None:
    fixed = _run("not_credited.fixed.toml").verdict.truth(1)
    assert fixed.merchant_credit == 10000
    assert fixed.merchant_wait_s is not None and fixed.merchant_wait_s > 2 * 86400   # failed, fixed, re-credited
    faulty = _run("not_credited.faulty.toml").verdict.truth(1)
    assert faulty.merchant_credit == 0 and faulty.merchant_wait_s is None


def test_no_pan_in_clear_anywhere_in_the_trace() -> None:
    scenario = Scenario.load(ROOT / "fixtures" / "scenarios" / "double_charge.faulty.toml")
    scenario.steps[0].args["card"] = "visa-chip"     # middle digits not zeros, so masking shows
    result = run_scenario(scenario)
    text = repr(result.trace) + result.verdict.summary()
    assert "4761739001010010" not in text
    assert "476173******0010" in text
