"""The simulation: a terminal, a host and a faulty link on one virtual clock, judged by the oracle.

::

    from posfault.simulation import Simulation

    with Simulation(seed=7, dialect="unionpay_pos", terminal_profile="no_reversal_on_timeout") as sim:
        sim.faults.drop(direction="to_terminal", mti="0210", nth=1)
        result = sim.terminal.sale("100.00", card="chip-ok")     # shown: failed (no response)
        sim.run_until_quiet()          # reversal retries, advices, settlement, T+1 payouts, re-credit
        print(sim.verdict().summary())                            # debited-no-receipt, with evidence

Everything runs on :class:`posfault.clock.VirtualEventLoop`: a 60 s response timeout or a night until
T+1 payouts costs microseconds, and the same seed gives the same trace, byte for byte. The terminal
journal and the host ledger are real SQLite files in a private directory, so power cuts and host
crashes exercise the same recovery code as on a real device: the terminal is re-created from its
journal, the host from its ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import pathlib
import random
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from iso8583.channels import ChannelClosed, memory

from .clock import DEFAULT_EPOCH, VirtualClock, new_virtual_loop
from .oracle import AttemptRecord, LedgerRecord, Oracle, Verdict
from .scenario import DEFAULT_TID, POWER_STEPS, Scenario, Step, parse_money

#: Fixture files shared by terminal and host (CONTRACTS §5).
FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
CARDS_FILE = FIXTURES / "cards" / "test_cards.toml"
MERCHANTS_FILE = FIXTURES / "cards" / "merchants.toml"


class SimulationError(RuntimeError):
    """The simulation itself was misused (unknown card, power cut at an unknown step, ...)."""


class HostDown(ConnectionRefusedError):
    """What a terminal's connector sees while the simulated host is crashed."""


# -- the fault rules on the link ---------------------------------------------------------------------
@dataclass
class FaultRule:
    """A message-aware fault: match by direction, MTI, STAN and the n-th match; act ``count`` times."""

    action: str
    direction: str | None = None
    mti: str | None = None
    nth: int = 1
    count: int = 1
    seconds: float = 0.0
    stan: str | None = None
    index: int = 0
    seen: int = 0
    fired: int = 0

    def matches(self, direction: str, mti: str | None, stan: str | None) -> bool:
        if self.direction is not None and self.direction != direction:
            return False
        if self.mti is not None and self.mti != mti:
            return False
        return self.stan is None or self.stan == stan

    def decide(self, direction: str, mti: str | None, stan: str | None) -> bool:
        """Count a matching message; True when this one is to be faulted."""
        if not self.matches(direction, mti, stan):
            return False
        self.seen += 1
        if self.seen >= self.nth and self.fired < self.count:
            self.fired += 1
            return True
        return False


class Faults:
    """``sim.faults``: add fault rules to the link between terminal and host (plain data or calls)."""

    ACTIONS = ("drop", "delay", "duplicate", "corrupt", "truncate", "reset", "blackhole")

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self.blackhole_until = -1.0

    def add(self, spec: Mapping[str, Any]) -> FaultRule:
        data = dict(spec)
        action = data.pop("action", None)
        if action not in self.ACTIONS:
            raise SimulationError(f"fault action {action!r} unknown; expected one of {list(self.ACTIONS)}")
        for key in ("jitter", "probability", "after", "until", "times", "field"):
            data.pop(key, None)   # accepted by the scenario format; not used by this link
        try:
            rule = FaultRule(action=action, index=len(self.rules) + 1, **data)
        except TypeError as exc:
            raise SimulationError(f"fault rule {dict(spec)!r}: {exc}") from None
        if rule.nth < 1 or rule.count < 1:
            raise SimulationError(f"fault rule {dict(spec)!r}: nth and count count from 1")
        self.rules.append(rule)
        return rule

    def drop(self, **match: Any) -> FaultRule:
        return self.add({"action": "drop", **match})

    def delay(self, seconds: float, **match: Any) -> FaultRule:
        return self.add({"action": "delay", "seconds": seconds, **match})

    def duplicate(self, **match: Any) -> FaultRule:
        return self.add({"action": "duplicate", **match})

    def corrupt(self, **match: Any) -> FaultRule:
        return self.add({"action": "corrupt", **match})

    def truncate(self, **match: Any) -> FaultRule:
        return self.add({"action": "truncate", **match})

    def reset(self, **match: Any) -> FaultRule:
        return self.add({"action": "reset", **match})

    def blackhole(self, seconds: float, **match: Any) -> FaultRule:
        return self.add({"action": "blackhole", "seconds": seconds, **match})

    def first(self, direction: str, mti: str | None, stan: str | None) -> FaultRule | None:
        chosen = None
        for rule in self.rules:
            if rule.decide(direction, mti, stan) and chosen is None:
                chosen = rule
        return chosen


# -- results -------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    """What :func:`run_scenario` returns: the verdict, the trace and whether it met the expectation."""

    scenario: Scenario
    verdict: Verdict
    trace: list[dict[str, Any]]
    differences: list[str] = field(default_factory=list)
    pcap: bytes | None = None

    @property
    def matches(self) -> bool:
        return not self.differences


# -- the simulation ----------------------------------------------------------------------------------
class Simulation:
    """One simulated shop counter: terminal, link with faults, host with its ledger, on virtual time."""

    def __init__(self, seed: int = 0, dialect: str = "iso87ascii", terminal_profile: str = "correct", *,
                 host: Mapping[str, Any] | None = None, tid: str = DEFAULT_TID, workdir: str | None = None,
                 epoch: _dt.datetime = DEFAULT_EPOCH, response_timeout: float | None = None,
                 capture_frames: bool = True, mac: bool = False, customer_gap: float = 15.0) -> None:
        self.seed = seed
        self.dialect = dialect
        self.profile = terminal_profile
        self.host_switches = {k: v for k, v in dict(host or {}).items()}
        self.tid = tid
        self.rng = random.Random(seed)
        self.loop = new_virtual_loop()
        self.clock = VirtualClock(self.loop, epoch)
        self.epoch = epoch
        self.trace: list[dict[str, Any]] = []
        self.frames: list[tuple[float, str, bytes]] = []   # for pcap only; never serialised to JSON
        self.capture_frames = capture_frames
        self.faults = Faults()
        self.response_timeout = response_timeout
        self.mac = mac
        self.customer_gap = customer_gap
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="posfault-sim-")
            workdir = self._tmp.name
        self.workdir = pathlib.Path(workdir)
        self._armed: dict[str, tuple[str, float]] = {}      # target -> (step, off_for)
        self._host_tasks: set[asyncio.Task[Any]] = set()
        self._links: list[tuple[Any, ...]] = []
        self._host_down = False
        self._closed = False
        self._attempt_of_stan: dict[str, int] = {}
        self.wire = _make_wire(dialect)
        from . import _world  # adapters to the terminal and host packages

        self._world = _world.World(self)
        self.terminal = TerminalHandle(self)
        self.host = HostHandle(self)
        self._run(self._world.start())   # start of day: the terminal signs on (working keys)

    # -- lifecycle -------------------------------------------------------------------------------------
    def __enter__(self) -> Simulation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._run(self._shutdown())
        self._world.close()
        self.loop.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    async def _shutdown(self) -> None:
        for link in self._links:
            for ch in link:
                with contextlib.suppress(Exception):
                    await ch.close()
        for task in list(self._host_tasks):
            task.cancel()
        if self._host_tasks:
            await asyncio.gather(*self._host_tasks, return_exceptions=True)

    # -- time and events -------------------------------------------------------------------------------
    @property
    def now(self) -> float:
        """Virtual seconds since the simulation started."""
        return self.loop.time()

    def seconds_of(self, when: _dt.datetime | str | None) -> float | None:
        """A business date-time (from the injected clock) as simulation seconds."""
        if when is None:
            return None
        if isinstance(when, str):
            when = _dt.datetime.fromisoformat(when)
        if when.tzinfo is not None and self.epoch.tzinfo is None:
            when = when.replace(tzinfo=None)
        return round((when - self.epoch).total_seconds(), 6)

    def emit(self, event: Mapping[str, Any]) -> None:
        """The event sink handed to terminal and host (CONTRACTS §0): stamps virtual time."""
        record = {"t": round(self.loop.time(), 6)}
        record.update(event)
        self.trace.append(record)

    def _run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass, with everything in flight running meanwhile."""
        if seconds < 0:
            raise SimulationError(f"cannot wait a negative time ({seconds})")
        self._run(asyncio.sleep(seconds))

    wait = advance

    # -- the link -----------------------------------------------------------------------------------
    async def connect(self) -> Any:
        """The terminal's connector: one in-memory connection per call, through the fault link."""
        if self._host_down:
            self.emit({"actor": "net", "kind": "refused", "detail": "host is down"})
            raise HostDown("simulated host is down (crashed)")
        term_end, link_t = memory.pipe(names=("terminal", "link-terminal-side"))
        link_h, host_end = memory.pipe(names=("link-host-side", "host"))
        self._links.append((term_end, link_t, link_h, host_end))
        serve = self.loop.create_task(self._world.serve(host_end), name=f"host-conn-{len(self._links)}")
        self._host_tasks.add(serve)
        serve.add_done_callback(self._host_tasks.discard)
        for src, dst, direction in ((link_t, link_h, "to_host"), (link_h, link_t, "to_terminal")):
            task = self.loop.create_task(self._pump(src, dst, direction), name=f"link-{direction}-{len(self._links)}")
            self._host_tasks.add(task)
            task.add_done_callback(self._host_tasks.discard)
        return term_end

    async def _pump(self, src: Any, dst: Any, direction: str) -> None:
        while True:
            try:
                frame = await src.recv()
            except ChannelClosed:
                with contextlib.suppress(Exception):
                    await dst.close()
                return
            except Exception as exc:
                self.emit({"actor": "net", "kind": "link_error", "direction": direction,
                           "detail": type(exc).__name__})
                with contextlib.suppress(Exception):
                    await dst.reset()
                return
            await self._forward(frame, dst, direction)

    async def _forward(self, frame: bytes, dst: Any, direction: str) -> None:
        peek = self.wire.peek(frame) if self.wire is not None else None
        mti = getattr(peek, "mti", None)
        stan = getattr(peek, "stan", None)
        base: dict[str, Any] = {"actor": "net", "direction": direction}
        if mti:
            base["mti"] = mti
        if stan:
            base["stan"] = stan
        if self.loop.time() < self.faults.blackhole_until:
            self.emit({**base, "kind": "blackhole", "fault": "blackhole"})
            return
        rule = self.faults.first(direction, mti, stan)
        if rule is None:
            await self._deliver(frame, dst, base)
            return
        tag = {**base, "kind": rule.action, "fault": rule.action, "rule": rule.index}
        if rule.action == "drop":
            self.emit(tag)
        elif rule.action == "delay":
            self.emit({**tag, "detail": f"held {rule.seconds:g} s"})
            self.loop.call_later(rule.seconds, lambda: self.loop.create_task(self._deliver(frame, dst, base)))
        elif rule.action == "duplicate":
            self.emit(tag)
            await self._deliver(frame, dst, base)
            await self._deliver(frame, dst, base)
        elif rule.action == "corrupt":
            data = bytearray(frame)
            pos = len(data) - 1 - self.rng.randrange(max(1, len(data) // 2))
            data[pos] ^= 1 << self.rng.randrange(8)
            self.emit({**tag, "detail": f"flipped a bit at byte {pos}"})
            await self._deliver(bytes(data), dst, base)
        elif rule.action == "truncate":
            cut = max(1, len(frame) // 2)
            self.emit({**tag, "detail": f"cut to {cut} of {len(frame)} bytes"})
            await self._deliver(frame[:cut], dst, base)
        elif rule.action == "reset":
            self.emit(tag)
            with contextlib.suppress(Exception):
                await dst.reset()
        elif rule.action == "blackhole":
            self.faults.blackhole_until = self.loop.time() + rule.seconds
            self.emit({**tag, "detail": f"link silent for {rule.seconds:g} s"})

    async def _deliver(self, frame: bytes, dst: Any, base: Mapping[str, Any]) -> None:
        try:
            await dst.send(frame)
        except ChannelClosed:
            self.emit({**base, "kind": "undeliverable", "detail": "connection already closed"})
            return
        if self.capture_frames:
            self.frames.append((self.loop.time(), str(base["direction"]), frame))
        self.emit({**base, "kind": "deliver"})

    # -- power and crashes -------------------------------------------------------------------------------
    def power_cycle(self, target: str = "terminal", at: str | None = None, off_for: float = 5.0) -> None:
        """Cut the power of ``target``: now, or armed for the next time the terminal reaches step ``at``."""
        if target == "host":
            self.host.crash(down_for=off_for)
            return
        if target != "terminal":
            raise SimulationError(f"power_cycle target must be 'terminal' or 'host', got {target!r}")
        if at is None:
            self.emit({"actor": "sim", "target": "terminal", "kind": "power_cut", "detail": "power cut (idle)"})
            self._run(self._world.power_cycle_terminal(off_for))
            return
        if at not in POWER_STEPS:
            raise SimulationError(f"power_cycle at={at!r}: expected one of {list(POWER_STEPS)}")
        self._armed["terminal"] = (at, off_for)

    def on_step(self, step: str, attempt: Any) -> None:
        """Called by the terminal at its named steps; raises its PowerCut when a cut is armed there."""
        armed = self._armed.get("terminal")
        if armed is not None and armed[0] == step:
            del self._armed["terminal"]
            self.emit({"actor": "sim", "target": "terminal", "kind": "power_cut", "step": step,
                       "attempt": attempt, "detail": f"power cut at {step}"})
            self._world.pending_power_off = armed[1]
            raise self._world.power_cut_exception(step, attempt)

    # -- recovery processes ------------------------------------------------------------------------------
    def run_until_quiet(self, *, settle: bool = True, payout_days: int = 4) -> None:
        """Run every recovery process to its end: pending reversals and advices, settlement with batch
        upload, the host's daily cut-off, T+1 payouts and payout retries (re-credit) for a few days."""
        self._run(self._world.quiesce(settle=settle, payout_days=payout_days))

    # -- judgement -------------------------------------------------------------------------------------
    def attempts(self) -> list[AttemptRecord]:
        return self._world.attempt_records()

    def ledger_records(self) -> list[LedgerRecord]:
        return self._world.ledger_records()

    def verdict(self) -> Verdict:
        context = {"terminal_profile": self.profile, "host_switches": dict(self.host_switches),
                   "dialect": self.dialect, "seed": self.seed}
        oracle = Oracle(self.trace, context)
        return oracle.judge(self.attempts(), self.ledger_records(), self.now,
                            conservation=self._world.conservation())

    def pcap(self) -> bytes | None:
        """The frames that crossed the link as a pcap (virtual timestamps), when posfault.pcap exists."""
        return _pcap_bytes(self)

    def report(self, outdir: str | pathlib.Path, name: str = "run", *, title: str | None = None) -> dict[str, Any]:
        from .report import write_report

        return write_report(outdir, name, self.trace, self.verdict(), title=title or name,
                            subtitle=f"dialect {self.dialect} · terminal profile {self.profile} · seed {self.seed}",
                            pcap=self.pcap())

    # -- scenarios ---------------------------------------------------------------------------------------
    def do(self, step: Step) -> Any:
        """Perform one scenario step."""
        args = dict(step.args)
        if step.do in ("sale", "offline_sale", "refund"):
            return getattr(self.terminal, step.do)(args["amount"], card=args.get("card", "chip-ok"))
        if step.do == "settle":
            return self.terminal.settle()
        if step.do == "power_cycle":
            return self.power_cycle(args.get("target", "terminal"), at=args.get("at"),
                                    off_for=float(args.get("off_for", 5.0)))
        if step.do == "host_crash":
            return self.host.crash(down_for=args.get("down_for"))
        if step.do == "host_restart":
            return self.host.restart()
        if step.do == "printer":
            return self.terminal.printer(paper=args.get("paper", True), jam=args.get("jam", False))
        if step.do == "reprint":
            return self.terminal.reprint()
        if step.do == "wait":
            return self.advance(float(args["seconds"]))
        if step.do == "quiesce":
            return self.run_until_quiet()
        if step.do == "fix_merchant":
            return self.host.fix_merchant(args.get("merchant"))
        raise SimulationError(f"unknown step {step.do!r}")


class TerminalHandle:
    """``sim.terminal``: drive the terminal synchronously; each call runs until the terminal is idle."""

    def __init__(self, sim: Simulation) -> None:
        self._sim = sim

    def _txn(self, kind: str, amount: str | int, card: str) -> Any:
        minor = parse_money(amount, f"{kind} amount")
        sim = self._sim
        if sim.customer_gap > 0:
            # The next customer steps up: purchases at one counter are never in the same second
            # (a careful host would rightly take two identical ones as a duplicate).
            sim.advance(sim.customer_gap)
        return sim._run(sim._world.transaction(kind, minor, card))

    def sale(self, amount: str | int, card: str = "chip-ok") -> Any:
        return self._txn("sale", amount, card)

    def offline_sale(self, amount: str | int, card: str = "chip-ok") -> Any:
        return self._txn("offline_sale", amount, card)

    def refund(self, amount: str | int, card: str = "chip-ok") -> Any:
        return self._txn("refund", amount, card)

    def settle(self) -> Any:
        return self._sim._run(self._sim._world.settle())

    def printer(self, paper: bool = True, jam: bool = False) -> None:
        self._sim._world.set_printer(paper=paper, jam=jam)

    def reprint(self) -> Any:
        return self._sim._run(self._sim._world.reprint())

    @property
    def journal(self) -> Any:
        return self._sim._world.journal

    @property
    def receipts(self) -> list[Any]:
        return self._sim._world.receipts()


class HostHandle:
    """``sim.host``: crash and restart the host, run its cut-off and payouts, fix a merchant account."""

    def __init__(self, sim: Simulation) -> None:
        self._sim = sim

    def crash(self, down_for: float | None = None) -> None:
        """Kill the host now (connections die, nothing more is answered); restart after ``down_for``."""
        sim = self._sim
        sim.emit({"actor": "sim", "target": "host", "kind": "crash",
                  "detail": "host crashed" + (f", back in {down_for:g} s" if down_for else "")})
        sim._host_down = True
        sim._run(sim._world.crash_host())
        if down_for is not None:
            sim.loop.call_later(float(down_for), self.restart)

    def restart(self) -> None:
        sim = self._sim
        if not sim._host_down:
            return
        sim._world.restart_host()
        sim._host_down = False
        sim.emit({"actor": "sim", "target": "host", "kind": "restart", "detail": "host restarted from its ledger"})

    @property
    def down(self) -> bool:
        return self._sim._host_down

    def fix_merchant(self, mid: str | None = None) -> None:
        self._sim._world.fix_merchant(mid)

    @property
    def ledger(self) -> Any:
        return self._sim._world.ledger


# -- helpers ---------------------------------------------------------------------------------------
def _make_wire(dialect: str) -> Any:
    try:
        from iso8583 import load_spec
        from iso8583.wire import Wire
    except ImportError:   # codec not merged yet: the link forwards frames without looking inside
        return None
    return Wire(load_spec(dialect))


def _pcap_bytes(sim: Simulation) -> bytes | None:
    try:
        from . import pcap as pcap_mod
    except ImportError:
        return None
    writer = getattr(pcap_mod, "frames_to_pcap", None)
    if writer is None:
        return None
    return writer(sim.frames, dialect=sim.dialect)


def run_scenario(scenario: Scenario, *, seed: int | None = None, on_sim: Callable[[Simulation], None] | None = None,
                 capture_frames: bool = False) -> RunResult:
    """Replay ``scenario`` (optionally with another ``seed``) and compare with its expectation."""
    with Simulation(seed=scenario.seed if seed is None else seed, dialect=scenario.dialect,
                    terminal_profile=scenario.terminal_profile, host=scenario.host, tid=scenario.tid,
                    capture_frames=capture_frames) as sim:
        for rule in scenario.faults:
            sim.faults.add(rule)
        for step in scenario.steps:
            sim.do(step)
        sim.run_until_quiet()
        verdict = sim.verdict()
        if on_sim is not None:
            on_sim(sim)
        pcap = sim.pcap() if capture_frames else None
        return RunResult(scenario, verdict, list(sim.trace), scenario.expect.differences(verdict), pcap)
