"""The oracle: who lost money, when, for how long, and why.

Money is real only in the ledgers (DESIGN §1). The oracle therefore joins three plain record sets
that a run leaves behind — what the terminal *showed and printed* (its journal), what the issuer
*debited* (the host ledger) and what the merchant was *credited* (payouts) — into one truth row per
purchase attempt, and names every mismatch as an :class:`Anomaly` with the trace lines that prove it
and the fault that caused it.

It works on plain dataclasses, not on live terminal/host objects, so that it can be fed from a
simulation, from a real terminal's exported journal and a real host's ledger, or from a test.
Times are seconds of simulated time (``loop.time()`` of the run); ``None`` means "never".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Anomaly kinds, in the vocabulary of the incident catalogue (DESIGN §4).
DEBITED_NO_RECEIPT = "debited-no-receipt"
RECEIPT_NOT_CHARGED = "receipt-not-charged"
DOUBLE_CHARGE = "double-charge"
NOT_CREDITED = "not-credited"
CHARGED_NO_RECEIPT = "charged-no-receipt"
ANOMALY_KINDS = (DEBITED_NO_RECEIPT, RECEIPT_NOT_CHARGED, DOUBLE_CHARGE, NOT_CREDITED, CHARGED_NO_RECEIPT)

ANOMALY_TEXT = {
    DEBITED_NO_RECEIPT: "cardholder debited, terminal showed no approval and printed no receipt (扣款未出单)",
    RECEIPT_NOT_CHARGED: "terminal printed an approval the cardholder was never charged for (刷卡未扣款)",
    DOUBLE_CHARGE: "cardholder charged more than once for one purchase",
    NOT_CREDITED: "cardholder charged but merchant never credited after settlement and payouts (未到账)",
    CHARGED_NO_RECEIPT: "terminal approved and the cardholder was charged, but no receipt was printed",
}

#: Attempt kinds that move money from cardholder to merchant, and back.
DEBIT_KINDS = frozenset({"sale", "offline_sale", "completion"})
CREDIT_KINDS = frozenset({"refund"})

#: Event kinds that are faults when the network (fault layer) reports them.
NET_FAULT_KINDS = frozenset({
    "fault", "drop", "delay", "duplicate", "corrupt", "truncate", "fragment", "reset", "blackhole",
    "black_hole", "black-hole",
})
#: Event kinds that are faults whoever reports them (power, crashes, printer trouble).
ANY_FAULT_KINDS = frozenset({"power_cut", "power-cut", "crash", "host_crash", "paper_out", "printer_fault",
                             "print_failed"})
NET_ACTORS = frozenset({"net", "network", "link", "proxy", "fault"})


# -- input records --------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttemptRecord:
    """One purchase attempt as the terminal journal remembers it."""

    attempt: int
    kind: str
    amount: int
    tid: str
    stans: tuple[str, ...]
    outcome: str                      # approved | declined | failed | pending
    rc: str | None = None
    card: str = ""                    # masked PAN only
    started_at: float | None = None
    shown_at: float | None = None
    receipt_at: float | None = None   # when a receipt saying "approved" was printed; None = never
    reversal: str | None = None       # none | pending | sent | acknowledged | lost
    advice: str | None = None         # none | pending | uploaded

    @property
    def sign(self) -> int:
        """+1 when the attempt should debit the cardholder, -1 for a refund, 0 otherwise."""
        if self.kind in DEBIT_KINDS:
            return 1
        if self.kind in CREDIT_KINDS:
            return -1
        return 0


@dataclass(frozen=True)
class LedgerRecord:
    """One transaction the host ledger knows, keyed like the wire (tid, stan, ref)."""

    tid: str
    stan: str
    amount: int
    net_debit: int                    # cardholder net debit now (0 once reversed; negative = refund)
    kind: str = "sale"
    ref: str = ""
    mid: str = ""
    debited_at: float | None = None
    reversed_at: float | None = None
    settled_at: float | None = None
    merchant_credit: int = 0          # credited to the merchant for this transaction
    credited_at: float | None = None


@dataclass(frozen=True)
class Truth:
    """The truth table row of one attempt: what was shown against what the money did."""

    attempt: int
    kind: str
    amount: int
    card: str
    stans: tuple[str, ...]
    outcome: str
    rc: str | None
    receipt: bool
    expected_debit: int               # what the receipt (or its absence) tells the cardholder
    cardholder_debit: int             # what the issuer actually took, net, when the run went quiet
    merchant_credit: int
    ledger_txns: int                  # ledger transactions linked to this attempt
    debited_without_receipt_s: float  # how long the cardholder was out of pocket with nothing to show
    max_overcharge: int               # the most the cardholder was over-debited at any moment
    overcharged_s: float              # and for how long
    merchant_wait_s: float | None     # from the sale to the merchant's credit (None: never credited)

    @property
    def money_right(self) -> bool:
        return self.cardholder_debit == self.expected_debit


@dataclass(frozen=True)
class Anomaly:
    kind: str
    attempt: int
    detail: str
    evidence: tuple[str, ...] = ()
    cause: str = ""

    def describe(self) -> str:
        lines = [f"{self.kind} — attempt {self.attempt}: {self.detail}"]
        if self.cause:
            lines.append(f"  cause: {self.cause}")
        lines.extend(f"  | {line}" for line in self.evidence)
        return "\n".join(lines)


@dataclass
class Verdict:
    """The oracle's answer for one run."""

    truths: list[Truth]
    anomalies: list[Anomaly]
    ended_at: float = 0.0
    conservation: str | None = None   # None = conserved (or not checked); text = what went wrong
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.anomalies and self.conservation is None

    @property
    def anomaly_kinds(self) -> list[str]:
        return sorted(a.kind for a in self.anomalies)

    def truth(self, attempt: int) -> Truth:
        for row in self.truths:
            if row.attempt == attempt:
                return row
        raise KeyError(f"no attempt {attempt} in this run (attempts: {[t.attempt for t in self.truths]})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "anomalies": [dataclasses.asdict(a) for a in self.anomalies],
            "attempts": [dataclasses.asdict(t) for t in self.truths],
            "ended_at": self.ended_at,
            "conservation": self.conservation,
            "context": dict(self.context),
        }

    def table(self) -> str:
        """The truth table as fixed-width text for a terminal."""
        head = (f"{'#':>3} {'kind':<12} {'amount':>9} {'shown':<9} {'receipt':<7} {'debited':>9} "
                f"{'merchant':>9} {'no-receipt':>10} {'merchant wait':>13}")
        rows = [head, "-" * len(head)]
        for t in self.truths:
            wait = (("-" if t.cardholder_debit <= 0 else "never") if t.merchant_wait_s is None
                    else duration(t.merchant_wait_s))
            rows.append(
                f"{t.attempt:>3} {t.kind:<12} {money(t.amount):>9} {t.outcome:<9} "
                f"{'yes' if t.receipt else 'no':<7} {money(t.cardholder_debit):>9} "
                f"{money(t.merchant_credit):>9} {duration(t.debited_without_receipt_s):>10} {wait:>13}")
        return "\n".join(rows)

    def summary(self) -> str:
        lines = [self.table(), ""]
        if self.conservation:
            lines.append(f"MONEY NOT CONSERVED: {self.conservation}")
        if not self.anomalies:
            lines.append("verdict: money is right — every receipt matches a debit, every debit a receipt "
                         "and a merchant credit.")
        else:
            lines.append(f"verdict: {len(self.anomalies)} anomal{'y' if len(self.anomalies) == 1 else 'ies'}")
            lines.extend(a.describe() for a in self.anomalies)
        return "\n".join(lines)


# -- helpers -------------------------------------------------------------------------------------
def money(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    minor = abs(minor)
    return f"{sign}{minor // 100}.{minor % 100:02d}"


def duration(seconds: float) -> str:
    if seconds <= 0:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def event_time(ev: Mapping[str, Any]) -> float:
    value = ev.get("t", ev.get("time", 0.0))
    return float(value) if isinstance(value, (int, float)) else 0.0


def is_fault_event(ev: Mapping[str, Any]) -> bool:
    """Whether an event is an injected fault (or an incident-making behaviour), to mark and blame.

    A host reporting a *detected* duplicate is not a fault; the network duplicating a message is.
    """
    if ev.get("fault"):
        return True
    kind = str(ev.get("kind", "")).lower()
    actor = str(ev.get("actor", "")).lower()
    if kind in ANY_FAULT_KINDS:
        return True
    if actor == "sim":
        return kind not in ("restart", "power_on")
    if actor in NET_ACTORS:
        return kind in NET_FAULT_KINDS or kind.startswith("fault")
    # A host that commits and then loses its answer is the incident-maker of lose_response_after_commit.
    return actor == "host" and kind == "drop"


def format_event(ev: Mapping[str, Any]) -> str:
    """One trace event as a line a person can read (values are already masked by their emitters)."""
    parts = [f"t={event_time(ev):10.3f}s", f"{ev.get('actor', '?'):<8}", str(ev.get("kind", "?"))]
    for key in ("mti", "stan", "attempt", "amount", "rc", "fault", "rule", "detail"):
        if key in ev and ev[key] not in (None, ""):
            value = ev[key]
            if key == "amount" and isinstance(value, int):
                value = money(value)
            parts.append(f"{key}={value}")
    return " ".join(parts)


def _intervals_length(intervals: Iterable[tuple[float, float]]) -> float:
    total, cur_start, cur_end = 0.0, None, None
    for start, end in sorted(intervals):
        if end <= start:
            continue
        if cur_end is None or start > cur_end:
            if cur_end is not None and cur_start is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None and cur_start is not None:
        total += cur_end - cur_start
    return total


# -- the judgement --------------------------------------------------------------------------------
class Oracle:
    """Judge a run: ``Oracle(trace, context).judge(attempts, ledger, ended_at)``.

    ``context`` names what was configured (terminal profile, host switches) so that an anomaly with no
    fault on the wire — e.g. a double charge from a careless host — still names its cause.
    """

    def __init__(self, trace: Iterable[Mapping[str, Any]] = (), context: Mapping[str, Any] | None = None):
        self._source = trace
        self._trace: list[Mapping[str, Any]] | None = None
        self.context = dict(context or {})

    @property
    def trace(self) -> list[Mapping[str, Any]]:
        """Read only when an anomaly needs evidence: a clean run never pays for it."""
        if self._trace is None:
            self._trace = list(self._source)
        return self._trace

    def judge(self, attempts: Iterable[AttemptRecord], ledger: Iterable[LedgerRecord],
              ended_at: float, conservation: str | None = None) -> Verdict:
        attempts = sorted(attempts, key=lambda a: a.attempt)
        by_key: dict[tuple[str, str], list[LedgerRecord]] = {}
        for rec in ledger:
            by_key.setdefault((rec.tid, rec.stan), []).append(rec)
        truths: list[Truth] = []
        anomalies: list[Anomaly] = []
        since = 0.0
        for att in attempts:
            linked = [r for stan in dict.fromkeys(att.stans) for r in by_key.get((att.tid, stan), [])]
            truth = self._truth(att, linked, ended_at)
            truths.append(truth)
            anomalies.extend(self._anomalies(att, truth, linked, since))
            # Faults with no message of their own (power, crash, paper) between two attempts belong to
            # the next one: a host that crashed while the shop was idle fails the next purchase.
            since = max(since, att.shown_at if att.shown_at is not None else (att.started_at or since))
        return Verdict(truths, anomalies, ended_at=ended_at, conservation=conservation, context=self.context)

    # per-attempt truth -------------------------------------------------------------------------
    def _truth(self, att: AttemptRecord, linked: list[LedgerRecord], end: float) -> Truth:
        # The paper counts, not the terminal's later opinion: a receipt that says "approved" is in the
        # cardholder's hand even if the journal, after a power cut, recorded the attempt as failed.
        receipt = att.receipt_at is not None
        expected = att.sign * att.amount if receipt else 0
        debit = sum(r.net_debit for r in linked)
        credit = sum(r.merchant_credit for r in linked)
        # Intervals during which each ledger transaction held the cardholder's money.
        held = [(r.debited_at if r.debited_at is not None else end,
                 r.reversed_at if r.reversed_at is not None else end)
                for r in linked if r.net_debit > 0 or r.reversed_at is not None]
        receipt_at = att.receipt_at if receipt else None
        no_receipt = [(s, min(e, receipt_at) if receipt_at is not None else e) for s, e in held]
        # Over-debit over time: sweep the debit/reversal instants.
        overcharge_s, max_over = self._overcharge(linked, expected, end)
        wait: float | None = None
        charged = [r for r in linked if r.net_debit > 0]
        if charged and all(r.credited_at is not None for r in charged):
            since = att.shown_at if att.shown_at is not None else att.started_at or 0.0
            wait = max(0.0, max(r.credited_at or 0.0 for r in charged) - since)
        return Truth(
            attempt=att.attempt, kind=att.kind, amount=att.amount, card=att.card, stans=att.stans,
            outcome=att.outcome, rc=att.rc, receipt=receipt, expected_debit=expected,
            cardholder_debit=debit, merchant_credit=credit, ledger_txns=len(linked),
            debited_without_receipt_s=round(_intervals_length(no_receipt), 6),
            max_overcharge=max_over, overcharged_s=round(overcharge_s, 6), merchant_wait_s=wait)

    @staticmethod
    def _overcharge(linked: list[LedgerRecord], expected: int, end: float) -> tuple[float, int]:
        """Time the cardholder's debit stood above what the receipt says, and the worst excess."""
        steps: list[tuple[float, int]] = []
        for r in linked:
            start = r.debited_at if r.debited_at is not None else end
            if r.reversed_at is not None:
                # Held in full until the reversal, then whatever is left stays (usually nothing).
                steps += [(start, r.amount), (r.reversed_at, r.net_debit - r.amount)]
            elif r.net_debit:
                steps.append((start, r.net_debit))
        steps.sort()
        level, last, total, worst = 0, 0.0, 0.0, 0
        for t, delta in steps:
            if level > expected:
                total += t - last
            level += delta
            last = t
            worst = max(worst, level - expected)
        if level > expected:
            total += max(0.0, end - last)
        return total, worst

    # anomalies ---------------------------------------------------------------------------------
    def _anomalies(self, att: AttemptRecord, t: Truth, linked: list[LedgerRecord],
                   since: float = 0.0) -> list[Anomaly]:
        if att.sign <= 0:
            return []
        found: list[tuple[str, str]] = []
        charged = [r for r in linked if r.net_debit > 0]
        if len(charged) > 1 or t.cardholder_debit > att.amount:
            stans = ", ".join(r.stan for r in charged)
            found.append((DOUBLE_CHARGE, f"charged {money(t.cardholder_debit)} for a {money(att.amount)} "
                                         f"purchase ({len(charged)} debits, STANs {stans})"))
        if t.cardholder_debit > 0 and not t.receipt:
            if att.outcome == "approved":
                found.append((CHARGED_NO_RECEIPT, f"terminal approved and the issuer took "
                                                  f"{money(t.cardholder_debit)}, but no receipt was printed"))
            else:
                found.append((DEBITED_NO_RECEIPT, f"issuer took {money(t.cardholder_debit)}; terminal showed "
                                                  f"{att.outcome}" + (f" (rc {att.rc})" if att.rc else "")
                                                  + ", printed nothing"))
        if t.receipt and t.cardholder_debit <= 0:
            why = "reversed after the approval was printed" if any(
                r.reversed_at is not None for r in linked) else "the host has no debit for it"
            if att.kind == "offline_sale" and not linked:
                why = "the offline approval was never uploaded"
            found.append((RECEIPT_NOT_CHARGED, f"receipt printed for {money(att.amount)}, cardholder charged "
                                               f"{money(t.cardholder_debit)}: {why}"))
        uncredited = sum(r.net_debit for r in charged) - sum(r.merchant_credit for r in charged)
        if charged and uncredited > 0:
            found.append((NOT_CREDITED, f"cardholder paid {money(t.cardholder_debit)}, merchant credited "
                                        f"{money(t.merchant_credit)} after settlement and payouts"))
        return [Anomaly(kind, att.attempt, detail, self._evidence(att, since), self._cause(att, kind, since))
                for kind, detail in found]

    def _related(self, att: AttemptRecord, ev: Mapping[str, Any]) -> bool:
        if ev.get("attempt") is not None:
            return str(ev.get("attempt")) == str(att.attempt)
        stan = ev.get("stan")
        if stan is not None and str(stan) in att.stans:
            tid = ev.get("tid")
            return tid is None or str(tid) == att.tid
        return False

    def _evidence(self, att: AttemptRecord, since: float, limit: int = 40) -> tuple[str, ...]:
        lines = [format_event(ev) for ev in self.trace if self._related(att, ev) or (
            is_fault_event(ev) and self._in_window(att, ev, since))]
        if len(lines) > limit:
            lines = [*lines[: limit - 1], f"... {len(lines) - limit + 1} more trace lines"]
        return tuple(lines)

    def _in_window(self, att: AttemptRecord, ev: Mapping[str, Any], since: float) -> bool:
        """A fault with no STAN of its own (power cut, host crash, paper out) belongs to the attempt in
        flight, or to the next one when it happened between two attempts."""
        if ev.get("stan") is not None or ev.get("attempt") is not None:
            return False
        stop = att.shown_at if att.shown_at is not None else float("inf")
        return since <= event_time(ev) <= stop + 1e-9

    def _cause(self, att: AttemptRecord, kind: str, since: float) -> str:
        faults = [ev for ev in self.trace if is_fault_event(ev) and (
            self._related(att, ev) or self._in_window(att, ev, since))]
        parts = []
        for ev in faults[:4]:
            what = str(ev.get("fault") or ev.get("kind"))
            if ev.get("mti"):
                what += f" {ev['mti']}"
            if ev.get("rule") is not None:
                what += f" (rule {ev['rule']})"
            if ev.get("detail"):
                what += f": {ev['detail']}"
            parts.append(f"{what} at t={event_time(ev):.3f}s")
        profile = self.context.get("terminal_profile")
        if profile and profile != "correct":
            parts.append(f"terminal profile {profile}")
        switches = [k for k, v in (self.context.get("host_switches") or {}).items() if v]
        if switches:
            parts.append("host " + ", ".join(switches))
        if not parts:
            parts.append("no injected fault: the terminal/host behaviour itself" if kind != NOT_CREDITED
                         else "settlement or payout did not complete")
        return "; ".join(parts)
