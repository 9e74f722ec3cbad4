"""Property-based campaigns: thousands of seeded fault schedules in virtual time, shrunk on failure.

A *schedule* is a :class:`~posfault.scenario.Scenario` without expectations: the faults on the link,
the purchases, power cuts, host crashes and printer trouble, in order. Seed ``n`` always generates the
same schedule (``generate_schedule(config, n)``), so every finding can be replayed from its number
alone and seeds can be run anywhere — in this process, on every local core, or on a team's cluster
through the *executor seam* (anything with ``concurrent.futures.Executor.map``).

When a schedule shows an anomaly, :func:`shrink` removes faults and steps and simplifies what remains
until nothing more can go while the same anomaly still appears; the result is printed as a ready-to-run
scenario file. The same vocabulary is offered as hypothesis strategies (:func:`schedules`,
:func:`fault_rules`, :func:`workloads`) for QA suites, where hypothesis does the shrinking.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .oracle import Verdict
from .scenario import PROFILES, Expectation, Scenario, Step

#: Merchants from fixtures/cards/merchants.toml: (tid, what makes it interesting).
TERMINALS = {"10000001": "healthy merchant", "20000001": "frozen payout account",
             "30000001": "wrong bank details"}
CARDS = ("chip-ok", "mag-ok", "ctls-ok")
AMOUNTS = ("100.00", "12.34", "0.01", "2500.00")
POWER_STEPS = ("before-send", "after-send", "after-response", "before-print", "after-print")
REQUEST_RESPONSE = {"sale": ("0200", "0210"), "reversal": ("0400", "0410"), "advice": ("0220", "0230")}
#: Repeats travel under their own MTI (0401, 0221); a rule on the original MTI does not match them.
REPEATS = {"reversal": "0401", "advice": "0221"}


@dataclass(frozen=True)
class CampaignConfig:
    """What a campaign explores. Everything here is data, so it pickles to worker processes."""

    terminal_profile: str = "correct"
    dialect: str = "iso87ascii"
    host: dict[str, bool] = field(default_factory=dict)
    schedules: int = 1000
    first_seed: int = 0
    max_faults: int = 3
    max_purchases: int = 3
    stop_on_first: bool = True
    include_settlement_faults: bool = False

    def __post_init__(self) -> None:
        if self.terminal_profile not in PROFILES:
            raise ValueError(f"unknown terminal profile {self.terminal_profile!r}; expected one of {list(PROFILES)}")
        if self.schedules < 1:
            raise ValueError(f"schedules must be at least 1, got {self.schedules}")


# -- generation --------------------------------------------------------------------------------------
def _fault(rng: random.Random, config: CampaignConfig) -> dict[str, Any]:
    kinds = ["sale", "sale", "sale", "reversal", "advice"]
    flow = rng.choice(kinds)
    request, response = REQUEST_RESPONSE[flow]
    toward_terminal = rng.random() < 0.6
    mti = response if toward_terminal else request
    if not toward_terminal and flow in REPEATS and rng.random() < 0.3:
        mti = REPEATS[flow]
    if config.include_settlement_faults and rng.random() < 0.1:
        mti, toward_terminal = rng.choice([("0500", False), ("0510", True), ("0320", False)])
    action = rng.choices(["drop", "delay", "duplicate", "corrupt", "reset"], weights=[5, 3, 2, 1, 1])[0]
    out: dict[str, Any] = {"action": action, "direction": "to_terminal" if toward_terminal else "to_host",
                           "mti": mti, "nth": rng.choice([1, 1, 1, 2, 3])}
    if action == "delay":
        # Around the terminal's 60 s response timeout is where late answers do harm.
        out["seconds"] = rng.choice([2.0, 30.0, 65.0, 75.0, 90.0, 150.0])
    out["limit"] = 1 if rng.random() >= 0.15 else rng.choice([2, 5])   # how many times the rule may fire
    return out


def _purchase(rng: random.Random) -> Step:
    kind = rng.choices(["sale", "offline_sale"], weights=[5, 1])[0]
    card = rng.choice(CARDS) if kind == "sale" else "chip-ok"   # offline approval is chip only
    return Step(kind, {"amount": rng.choice(AMOUNTS), "card": card})


def generate_schedule(config: CampaignConfig, seed: int) -> Scenario:
    """The schedule for ``seed``: same config and seed, same schedule, on any machine."""
    rng = random.Random(f"posfault-campaign/{seed}")
    faults = [_fault(rng, config) for _ in range(rng.randint(0, config.max_faults))]
    tid = rng.choices(list(TERMINALS), weights=[8, 1, 1])[0]
    steps: list[Step] = []
    for _ in range(rng.randint(1, config.max_purchases)):
        roll = rng.random()
        paper_out = False
        if roll < 0.25:
            steps.append(Step("power_cycle", {"target": "terminal", "at": rng.choice(POWER_STEPS)}))
        elif roll < 0.32:
            steps.append(Step("host_crash", {"down_for": rng.choice([5.0, 90.0])}))
        elif roll < 0.38:
            steps.append(Step("printer", {"paper": False}))
            paper_out = True
        steps.append(_purchase(rng))
        if paper_out:   # the operator notices, loads paper and reprints (what a careful shop does)
            steps += [Step("printer", {"paper": True}), Step("reprint")]
        if rng.random() < 0.15:
            steps.append(Step("wait", {"seconds": rng.choice([10.0, 120.0])}))
    if tid != "10000001":
        # A merchant whose payout fails gets its account fixed the next day (then 补划款 is due).
        steps += [Step("quiesce"), Step("fix_merchant"), Step("wait", {"seconds": 86400.0})]
    return Scenario(
        name=f"campaign {config.terminal_profile} seed {seed}", steps=steps, faults=faults, seed=seed,
        dialect=config.dialect, terminal_profile=config.terminal_profile, host=dict(config.host), tid=tid)


# -- running -------------------------------------------------------------------------------------------
Runner = Callable[[Scenario], Verdict]


def default_runner(scenario: Scenario) -> Verdict:
    from .simulation import run_scenario  # imported late: workers import only what they run

    return run_scenario(scenario).verdict


@dataclass(frozen=True)
class SeedOutcome:
    seed: int
    anomalies: tuple[str, ...]
    error: str | None = None


def run_seed(config: CampaignConfig, seed: int, runner: Runner | None = None) -> SeedOutcome:
    """Run one seed; an exception inside the simulation is a finding too, reported, not raised."""
    scenario = generate_schedule(config, seed)
    try:
        verdict = (runner or default_runner)(scenario)
    except Exception as exc:  # a crash of terminal/host under faults is a bug the campaign must report
        return SeedOutcome(seed, (), f"{type(exc).__name__}: {exc}")
    return SeedOutcome(seed, tuple(verdict.anomaly_kinds))


def _run_seed_args(args: tuple[CampaignConfig, int]) -> SeedOutcome:
    return run_seed(*args)


class Executor(Protocol):
    """The seam: ``concurrent.futures.Executor`` or any cluster client with the same ``map``."""

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], chunksize: int = 1) -> Iterator[Any]: ...


class InProcessExecutor:
    """Runs seeds one after another in this process (one core; best for tests and debugging)."""

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], chunksize: int = 1) -> Iterator[Any]:
        return map(fn, *iterables)

    def shutdown(self, wait: bool = True) -> None:
        return None


def local_executor(workers: int | None = None) -> Executor:
    """Every local core by default; ``workers=1`` keeps everything in this process."""
    workers = workers or os.cpu_count() or 1
    if workers <= 1:
        return InProcessExecutor()
    return concurrent.futures.ProcessPoolExecutor(max_workers=workers)


@dataclass
class Finding:
    seed: int
    anomalies: tuple[str, ...]
    schedule: Scenario
    minimal: Scenario | None = None
    shrink_runs: int = 0

    def scenario_file(self) -> str:
        """The minimal schedule as a ready-to-run scenario file expecting what was found."""
        chosen = self.minimal or self.schedule
        return chosen.to_toml(comment=(
            f"Found by `posfault campaign` (seed {self.seed}), shrunk from {len(self.schedule.faults)} faults / "
            f"{len(self.schedule.steps)} steps.\nRun: posfault scenario run THIS_FILE"))


@dataclass
class CampaignResult:
    config: CampaignConfig
    ran: int = 0
    elapsed: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    errors: list[SeedOutcome] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)

    @property
    def schedules_per_second(self) -> float:
        return self.ran / self.elapsed if self.elapsed > 0 else 0.0


ProgressFn = Callable[[int, int, int], None]   # (done, total, findings so far)


class Campaign:
    """Run ``config.schedules`` seeds through ``executor``, then shrink the first finding per anomaly kind."""

    def __init__(self, config: CampaignConfig, *, executor: Executor | None = None, workers: int | None = None,
                 runner: Runner | None = None, progress: ProgressFn | None = None, batch: int = 64,
                 shrink_budget: int = 300) -> None:
        if runner is not None and executor is None:
            executor = InProcessExecutor()   # a custom runner may not pickle; keep it local
        self.config = config
        self.executor = executor
        self.workers = workers
        self.runner = runner
        self.progress = progress
        self.batch = batch
        self.shrink_budget = shrink_budget

    def run(self) -> CampaignResult:
        cfg = self.config
        result = CampaignResult(cfg)
        owned = self.executor is None
        executor = self.executor or local_executor(self.workers)
        started = time.perf_counter()
        first_seen: dict[str, int] = {}
        try:
            seeds = range(cfg.first_seed, cfg.first_seed + cfg.schedules)
            for start in range(0, len(seeds), self.batch):
                chunk = seeds[start:start + self.batch]
                if self.runner is not None:
                    outcomes: Iterable[SeedOutcome] = (run_seed(cfg, s, self.runner) for s in chunk)
                else:
                    outcomes = executor.map(_run_seed_args, [(cfg, s) for s in chunk],
                                            chunksize=max(1, len(chunk) // (4 * (os.cpu_count() or 1))))
                for outcome in outcomes:
                    result.ran += 1
                    if outcome.error:
                        result.errors.append(outcome)
                    for kind in outcome.anomalies:
                        result.kinds[kind] = result.kinds.get(kind, 0) + 1
                        first_seen.setdefault(kind, outcome.seed)
                if self.progress:
                    self.progress(result.ran, cfg.schedules, len(first_seen))
                if cfg.stop_on_first and (first_seen or result.errors):
                    break
        finally:
            if owned and hasattr(executor, "shutdown"):
                executor.shutdown()
        result.elapsed = time.perf_counter() - started
        runner = self.runner or default_runner
        for seed in sorted(set(first_seen.values())):
            schedule = generate_schedule(cfg, seed)
            kinds = tuple(k for k, s in first_seen.items() if s == seed)
            minimal, runs = shrink(schedule, kinds[0], runner, budget=self.shrink_budget)
            result.findings.append(Finding(seed, kinds, schedule, minimal, runs))
        return result


# -- shrinking -------------------------------------------------------------------------------------------
def _candidates(s: Scenario) -> Iterator[Scenario]:
    """Smaller or simpler neighbours of ``s``, most aggressive first."""
    for i in range(len(s.faults)):
        yield s.replace(faults=s.faults[:i] + s.faults[i + 1:])
    for i in range(len(s.steps)):
        rest = s.steps[:i] + s.steps[i + 1:]
        if any(step.do in ("sale", "offline_sale", "refund") for step in rest):
            yield s.replace(steps=rest)
    if s.tid != "10000001":
        yield s.replace(tid="10000001")
    for key in [k for k, v in s.host.items() if v]:
        yield s.replace(host={k: v for k, v in s.host.items() if k != key})
    for i, f in enumerate(s.faults):
        simpler: list[dict[str, Any]] = []
        if f.get("nth", 1) > 1:
            simpler.append({**f, "nth": f["nth"] - 1})
        if f.get("limit", 1) > 1:
            simpler.append({**f, "limit": 1})
        if f["action"] != "drop":
            simpler.append({k: v for k, v in f.items() if k not in ("seconds", "jitter")} | {"action": "drop"})
        for g in simpler:
            yield s.replace(faults=[*s.faults[:i], g, *s.faults[i + 1:]])
    for i, step in enumerate(s.steps):
        simpler_steps: list[Step] = []
        if step.args.get("amount") not in (None, "100.00"):
            simpler_steps.append(Step(step.do, {**step.args, "amount": "100.00"}))
        if step.args.get("card") not in (None, "chip-ok"):
            simpler_steps.append(Step(step.do, {**step.args, "card": "chip-ok"}))
        for new in simpler_steps:
            yield s.replace(steps=[*s.steps[:i], new, *s.steps[i + 1:]])


def shrink(scenario: Scenario, kind: str, runner: Runner, *, budget: int = 300) -> tuple[Scenario, int]:
    """Greedy delta debugging: keep the first neighbour that still shows ``kind``, until none does.

    Returns the minimal scenario (with its expected verdict filled in) and the number of runs used.
    """
    current = scenario
    runs = 0
    improved = True
    while improved and runs < budget:
        improved = False
        for candidate in _candidates(current):
            runs += 1
            try:
                kinds = runner(candidate).anomaly_kinds
            except Exception:
                kinds = []
            if kind in kinds:
                current = candidate
                improved = True
                break
            if runs >= budget:
                break
    final = runner(current)
    name = f"{kind} found by campaign ({current.terminal_profile}, seed {scenario.seed})"
    return dataclasses.replace(current, name=name, incident=kind,
                               expect=Expectation(anomalies=final.anomaly_kinds)), runs + 1


# -- hypothesis strategies (for QA suites; imported lazily so posfault works without hypothesis) ---------
def fault_rules(directions: Sequence[str] = ("to_host", "to_terminal")) -> Any:
    """Strategy: one fault rule as plain data, e.g. ``{"action": "drop", "mti": "0210", ...}``."""
    from hypothesis import strategies as st

    mtis = {"to_host": ["0200", "0400", "0401", "0220", "0221"], "to_terminal": ["0210", "0410", "0230"]}

    @st.composite
    def rule(draw: Any) -> dict[str, Any]:
        direction = draw(st.sampled_from(list(directions)))
        action = draw(st.sampled_from(["drop", "delay", "duplicate", "corrupt", "reset"]))
        out: dict[str, Any] = {"action": action, "direction": direction,
                               "mti": draw(st.sampled_from(mtis[direction])), "nth": draw(st.integers(1, 3)),
                               "limit": 1}
        if action == "delay":
            out["seconds"] = draw(st.sampled_from([2.0, 30.0, 75.0, 150.0]))
        return out

    return rule()


def workloads(max_purchases: int = 3) -> Any:
    """Strategy: a list of steps — purchases, with power cuts, host crashes and printer trouble between."""
    from hypothesis import strategies as st

    purchase = st.one_of(
        st.builds(lambda amount, card: Step("sale", {"amount": amount, "card": card}),
                  st.sampled_from(AMOUNTS), st.sampled_from(CARDS)),
        st.builds(lambda amount: Step("offline_sale", {"amount": amount, "card": "chip-ok"}),
                  st.sampled_from(AMOUNTS)))
    trouble = st.one_of(
        st.builds(lambda at: Step("power_cycle", {"target": "terminal", "at": at}), st.sampled_from(POWER_STEPS)),
        st.builds(lambda down: Step("host_crash", {"down_for": down}), st.sampled_from([5.0, 90.0])),
        st.just(Step("printer", {"paper": False})),
    )
    def block_steps(t: tuple[list[Step], Step]) -> list[Step]:
        trouble_steps, buy = t
        fix = [Step("printer", {"paper": True}), Step("reprint")] if any(
            s.do == "printer" for s in trouble_steps) else []
        return [*trouble_steps, buy, *fix]

    block = st.tuples(st.lists(trouble, max_size=1), purchase).map(block_steps)
    return st.lists(block, min_size=1, max_size=max_purchases).map(lambda bs: [s for b in bs for s in b])


def schedules(terminal_profile: str = "correct", dialect: str = "iso87ascii",
              host: dict[str, bool] | None = None, max_faults: int = 3, max_purchases: int = 3) -> Any:
    """Strategy: a whole schedule (a :class:`Scenario`), shrinking towards fewer faults and steps."""
    from hypothesis import strategies as st

    return st.builds(
        lambda faults, steps, seed: Scenario(
            name=f"hypothesis {terminal_profile}", steps=steps, faults=faults, seed=seed, dialect=dialect,
            terminal_profile=terminal_profile, host=dict(host or {})),
        st.lists(fault_rules(), max_size=max_faults), workloads(max_purchases), st.integers(0, 2**16))
