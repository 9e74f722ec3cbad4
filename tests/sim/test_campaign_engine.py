"""The campaign engine on a model runner: seeds, executor seam, progress, shrinking to a minimal schedule.

The real end-to-end campaigns (terminal + host) are in test_campaigns.py; here a tiny model of a
buggy terminal stands in so that the search and the shrinker are checked exactly.
"""

from __future__ import annotations

import concurrent.futures
import tomllib
from dataclasses import dataclass

from posfault.campaign import Campaign, CampaignConfig, generate_schedule, shrink
from posfault.scenario import Scenario, Step


@dataclass
class ModelVerdict:
    anomaly_kinds: list[str]


def model_runner(s: Scenario) -> ModelVerdict:
    """A terminal that never reverses: any lost 0210 for a sale leaves the cardholder debited."""
    lost = any(f["action"] in ("drop", "delay") and f.get("mti") == "0210" and f.get("nth", 1) == 1
               for f in s.faults)
    sale = any(step.do == "sale" for step in s.steps)
    return ModelVerdict(["debited-no-receipt"] if lost and sale else [])


def test_shrinks_to_the_single_fault_and_purchase_that_matter() -> None:
    noisy = Scenario(
        name="noisy", seed=3, terminal_profile="no_reversal_on_timeout", tid="20000001",
        faults=[{"action": "duplicate", "direction": "to_host", "mti": "0200", "nth": 2},
                {"action": "delay", "direction": "to_terminal", "mti": "0210", "nth": 1, "seconds": 75.0, "limit": 2},
                {"action": "drop", "direction": "to_terminal", "mti": "0410", "nth": 3}],
        steps=[Step("power_cycle", {"target": "terminal", "at": "after-print"}),
               Step("sale", {"amount": "12.34", "card": "mag-ok"}), Step("wait", {"seconds": 10.0}),
               Step("offline_sale", {"amount": "0.01", "card": "chip-ok"}), Step("sale", {"amount": "1.00"})])
    minimal, runs = shrink(noisy, "debited-no-receipt", model_runner)
    assert minimal.faults == [{"action": "drop", "direction": "to_terminal", "mti": "0210", "nth": 1, "limit": 1}]
    assert minimal.steps == [Step("sale", {"amount": "100.00", "card": "chip-ok"})] or \
        minimal.steps == [Step("sale", {"amount": "100.00"})]
    assert minimal.tid == "10000001" and minimal.expect.anomalies == ["debited-no-receipt"]
    assert runs < 100
    # The printed scenario file is ready to run: it parses and expects what was found.
    again = Scenario.from_dict(tomllib.loads(minimal.to_toml()))
    assert again.expect.anomalies == ["debited-no-receipt"] and again.faults == minimal.faults


def test_campaign_finds_reports_progress_and_stops() -> None:
    seen = []
    cfg = CampaignConfig(terminal_profile="no_reversal_on_timeout", schedules=500)
    result = Campaign(cfg, runner=model_runner, progress=lambda d, t, f: seen.append((d, t, f)), batch=16).run()
    assert result.findings, "the model bug is reachable from the generator"
    finding = result.findings[0]
    assert model_runner(generate_schedule(cfg, finding.seed)).anomaly_kinds == ["debited-no-receipt"]
    assert all(model_runner(generate_schedule(cfg, s)).anomaly_kinds == [] for s in range(finding.seed))
    assert seen[-1][0] == result.ran and seen[-1][2] == 1 and result.ran < 500   # stopped early
    assert "posfault scenario run" in finding.scenario_file()


def test_clean_model_finds_nothing_and_runs_every_seed() -> None:
    cfg = CampaignConfig(schedules=120)
    result = Campaign(cfg, runner=lambda s: ModelVerdict([])).run()
    assert result.ran == 120 and result.findings == [] and result.schedules_per_second > 0


def _square(x: int) -> int:
    return x * x


def test_executor_seam_accepts_any_executor_map() -> None:
    """Seeds can be handed to any Executor-like object; a thread pool stands in for a cluster client."""
    calls = []

    class Recording(concurrent.futures.ThreadPoolExecutor):
        def map(self, fn, *iterables, timeout=None, chunksize=1):   # type: ignore[override]
            items = list(iterables[0])
            calls.append(len(items))
            return super().map(fn, items)

    from posfault import campaign as mod

    original = mod.default_runner
    mod.default_runner = model_runner   # the worker function resolves the runner at call time
    try:
        with Recording(max_workers=2) as pool:
            cfg = CampaignConfig(terminal_profile="no_reversal_on_timeout", schedules=64, stop_on_first=False)
            result = Campaign(cfg, executor=pool, batch=32).run()
    finally:
        mod.default_runner = original
    assert calls == [32, 32] and result.ran == 64 and result.kinds.get("debited-no-receipt", 0) > 0
