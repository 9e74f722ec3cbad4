"""Real campaigns (terminal + host + fault link): every faulty firmware profile and careless-host switch
is found within a small, fixed number of seeded schedules and shrunk to a ready-to-run scenario; the
correct profile with a careful host shows nothing."""

from __future__ import annotations

import tomllib

import pytest

from posfault.campaign import Campaign, CampaignConfig
from posfault.scenario import Scenario
from posfault.simulation import run_scenario

CASES = [
    ("reversal_not_persisted", {}, "debited-no-receipt"),
    ("no_reversal_on_timeout", {}, "debited-no-receipt"),
    ("late_response_accepted", {}, "receipt-not-charged"),
    ("offline_not_uploaded", {}, "receipt-not-charged"),
    ("retransmit_new_stan", {}, "double-charge"),
    ("print_before_commit", {}, "receipt-not-charged"),
    ("correct", {"no_duplicate_detection": True}, "double-charge"),
    ("correct", {"ignore_unknown_reversal": True}, "debited-no-receipt"),
    ("correct", {"skip_payout_retries": True}, "not-credited"),
]


@pytest.mark.parametrize(("profile", "host", "kind"), CASES,
                         ids=[f"{p}{'+' + next(iter(h)) if h else ''}" for p, h, _ in CASES])
def test_campaign_finds_and_shrinks(profile: str, host: dict[str, bool], kind: str) -> None:
    config = CampaignConfig(terminal_profile=profile, host=host, schedules=64)
    result = Campaign(config, workers=1, shrink_budget=80).run()
    assert not result.errors, result.errors[:3]
    assert kind in result.kinds, f"{kind} not found in {result.ran} schedules: {result.kinds}"
    finding = next(f for f in result.findings if kind in f.anomalies)
    minimal = finding.minimal
    assert minimal is not None
    assert len(minimal.faults) <= len(finding.schedule.faults) and len(minimal.steps) <= len(finding.schedule.steps)
    assert len(minimal.faults) <= 2 and len(minimal.steps) <= 3, finding.scenario_file()
    # The printed scenario file is ready to run and reproduces exactly what it says.
    replay = Scenario.from_dict(tomllib.loads(finding.scenario_file()))
    assert kind in replay.expect.anomalies
    assert run_scenario(replay).differences == []


def test_correct_profile_with_a_careful_host_finds_nothing() -> None:
    progress = []
    config = CampaignConfig(terminal_profile="correct", schedules=96, dialect="unionpay_pos")
    result = Campaign(config, workers=1, batch=32, progress=lambda *p: progress.append(p)).run()
    assert result.ran == 96 and result.findings == [] and not result.errors, (result.kinds, result.errors[:3])
    assert progress == [(32, 96, 0), (64, 96, 0), (96, 96, 0)]
