"""Stateful property test: any sequence of transactions, network faults and power cuts at any
named step leaves the journal holding what recovery needs — and after recovery, what the terminal
showed as approved is exactly what the issuer debited.

Invariants checked after every step (correct profile):
* a reversible request that left the terminal without a trustworthy answer has a reversal record
  (armed, pending or acknowledged) — the "debited, no receipt" guard;
* a request with a committed answer has its reversal cleared (never reversed behind the receipt);
* offline approvals and refunds have an advice that is pending or acknowledged, never lost;
* a printed receipt always belongs to a committed approval;
* no STAN is used twice.
After `quiesce` (network healthy, power-up, flush): issuer net debit == approved minus refunds.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from posfault.clock import clock_for, new_virtual_loop
from terminal_sim import (
    RECOVERY_STEPS,
    STEPS,
    Journal,
    PowerCut,
    Printer,
    Terminal,
    TerminalConfig,
    load_cards,
)

from .support import FakeHost, FakeLink

CARDS = load_cards()
REVERSIBLE = {"sale", "void", "preauth", "completion"}
FAULTS = [None, None, "drop", "bad_mac", "garbage", ("delay", 75.0), "down"]
CUTS = [None, None, *STEPS, *RECOVERY_STEPS]


class TerminalMachine(RuleBasedStateMachine):
    family = "iso87"

    def __init__(self) -> None:
        super().__init__()
        self.loop = new_virtual_loop()
        self.link = FakeLink(self.family)
        self.fault: Any = None
        self.faulted = False
        self.host = FakeHost(self.link, fault=self._fault)
        self.journal = self._open_journal()
        self.printer = Printer()
        self.cut_at: str | None = None
        self.config = TerminalConfig(floor_limit=2000, reversal_max_tries=2, reversal_interval=3.0,
                                     reversal_timeout=20.0)
        self.term = self._terminal()

    # -- plumbing --------------------------------------------------------------------------------
    def _open_journal(self) -> Journal:
        return Journal.open(":memory:")

    def _terminal(self) -> Terminal:
        return Terminal(self.config, journal=self.journal, connector=self.host.connector(), printer=self.printer,
                        link=self.link, clock=clock_for(self.loop), on_step=self._hook)

    def _fault(self, msg: Any, n: int) -> Any:
        if self.fault == "down":
            return "drop"
        if self.fault is not None and not self.faulted and msg.mti in ("0100", "0200"):
            self.faulted = True
            return self.fault
        return None

    def _hook(self, step: str, attempt: int) -> None:
        if step == self.cut_at:
            self.cut_at = None
            raise PowerCut(step, attempt)

    def _run(self, make: Any, *, fault: Any = None, cut: str | None = None) -> Any:
        self.fault, self.faulted, self.cut_at = fault, False, cut
        try:
            return self.loop.run_until_complete(make())
        except PowerCut:
            self._reboot()
            return None
        finally:
            self.fault, self.cut_at = None, None

    def _reboot(self) -> None:
        """Power comes back: the RAM is gone, the journal reopens, recovery runs."""
        self.loop.run_until_complete(asyncio.sleep(2))
        self.journal = self.journal.reopen()
        self.check_recoverable()
        self.term = self._terminal()
        self.loop.run_until_complete(self.term.power_up())

    def teardown(self) -> None:
        tasks = asyncio.all_tasks(self.loop)
        for task in tasks:
            task.cancel()
        if tasks:
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.close()
        self.journal.close()

    # -- rules -----------------------------------------------------------------------------------
    @rule(amount=st.integers(1, 50_000), card=st.sampled_from(["chip-ok", "mag-ok", "ctls-ok"]),
          fault=st.sampled_from(FAULTS), cut=st.sampled_from(CUTS))
    def sale(self, amount: int, card: str, fault: Any, cut: str | None) -> None:
        self._run(lambda: self.term.sale(amount, card=CARDS[card]), fault=fault, cut=cut)

    @rule(amount=st.integers(1, 5_000), fault=st.sampled_from(FAULTS), cut=st.sampled_from(CUTS))
    def refund(self, amount: int, fault: Any, cut: str | None) -> None:
        self._run(lambda: self.term.refund(amount, card=CARDS["mag-ok"]), fault=fault, cut=cut)

    def _voidable(self) -> list[int]:
        return [r.attempt for r in self.journal.attempts()
                if r.kind in ("sale", "completion") and r.mode == "online" and r.outcome == "approved"
                and not r.voided and not r.settled]

    @precondition(lambda self: bool(self._voidable()))
    @rule(data=st.data(), fault=st.sampled_from(FAULTS), cut=st.sampled_from(CUTS))
    def void(self, data: st.DataObject, fault: Any, cut: str | None) -> None:
        target = data.draw(st.sampled_from(self._voidable()))
        self._run(lambda: self.term.void(target), fault=fault, cut=cut)

    @rule(amount=st.integers(2_001, 30_000), fault=st.sampled_from(FAULTS), cut=st.sampled_from(CUTS))
    def preauth_and_complete(self, amount: int, fault: Any, cut: str | None) -> None:
        result = self._run(lambda: self.term.preauth(amount, card=CARDS["chip-ok"]))
        if result is not None and result.approved:
            self._run(lambda: self.term.completion(result.attempt, amount - 1000), fault=fault, cut=cut)

    @rule()
    def settle(self) -> None:
        self._run(self.term.settle)

    @rule(kind=st.sampled_from(["paper_out", "jam", "fixed"]))
    def printer_state(self, kind: str) -> None:
        if kind == "paper_out":
            self.printer.paper_out()
        elif kind == "jam":
            self.printer.jam()
        else:
            self.printer.load_paper()
            self.printer.clear_jam()

    @rule()
    def reprint(self) -> None:
        self._run(self.term.reprint)

    @rule()
    def power_cycle(self) -> None:
        self._reboot()

    @rule()
    def quiesce(self) -> None:
        """Network healthy, power cycled, queues flushed: money must match what was shown."""
        self._reboot()
        assert self.loop.run_until_complete(self.term.flush())
        expected = 0
        for rec in self.journal.attempts():
            if rec.outcome != "approved" or rec.voided:
                continue
            if rec.kind in ("sale", "completion"):
                expected += rec.amount
            elif rec.kind == "refund":
                expected -= rec.amount
        assert self.host.net() == expected, (self.host.net(), expected)
        assert not self.journal.pending_reversals() and not self.journal.pending_advices()

    # -- invariants ------------------------------------------------------------------------------
    @invariant()
    def check_recoverable(self) -> None:
        used: list[str] = []
        for rec in self.journal.attempts():
            used.extend(rec.stans)
            sent = bool(rec.requests)
            if rec.kind in REVERSIBLE and rec.mode == "online" and sent:
                if rec.outcome in ("approved", "declined"):
                    assert rec.reversal == "cleared", rec
                else:
                    assert rec.reversal in ("armed", "pending", "acked"), rec
            if rec.mode == "offline" or rec.kind == "refund":
                assert rec.advice in ("pending", "acked"), rec
            if rec.receipt_printed:
                assert rec.outcome == "approved" and rec.receipt_outcome == "approved", rec
        assert len(used) == len(set(used)), "a STAN was used twice"
        # What the journal keeps in memory instead of an index agrees with its tables.
        records = self.journal.attempts()
        assert self.journal.armed_reversals() == [r.attempt for r in records if r.reversal == "armed"]
        assert [p.attempt for p in self.journal.pending_reversals()] == [
            r.attempt for r in records if r.reversal == "pending"]


class UnionPayTerminalMachine(TerminalMachine):
    """The same properties with UnionPay keys (batch instead of field 7) and field 60/61 references."""

    family = "unionpay"


class FileJournalTerminalMachine(TerminalMachine):
    """The same properties with the journal in a WAL file (exclusively locked, closed before it is
    reopened at every power cut), as in simulations and on the command line."""

    def _open_journal(self) -> Journal:
        self._dir = Path(tempfile.mkdtemp(prefix="posfault-machine-"))
        return Journal.open(self._dir / "terminal.db")

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)


TerminalMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=25, deadline=None)
UnionPayTerminalMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=20, deadline=None)
FileJournalTerminalMachine.TestCase.settings = settings(max_examples=20, stateful_step_count=20, deadline=None)
TestTerminalMachine = TerminalMachine.TestCase
TestUnionPayTerminalMachine = UnionPayTerminalMachine.TestCase
TestFileJournalTerminalMachine = FileJournalTerminalMachine.TestCase
