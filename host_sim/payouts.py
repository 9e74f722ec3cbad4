"""Merchant payouts (T+N) that can fail, stay pending, and are re-credited once fixed (补划款).

A payout moves a settlement's amount from ``payout:<mid>`` to ``bank:<mid>`` — the moment the
merchant is *credited* (到账). It fails, leaving the money in ``payout:<mid>``, when the merchant
is frozen or its bank details are wrong; each later run retries it (unless the
``skip_payout_retries`` switch is on), and the first success after a failure is a re-credit.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .config import HostConfig
from .ledger import Ledger, Settlement, bank_account, payout_account


def _failure(ledger: Ledger, mid: str) -> str | None:
    merchant = ledger.merchant(mid)
    if merchant is None:
        return "merchant unknown"
    if merchant.status == "frozen":
        return "merchant account frozen"
    if not merchant.bank_account_ok or not merchant.bank_account:
        return "wrong bank details"
    return None


def run_payouts(ledger: Ledger, now: _dt.datetime, config: HostConfig,
                events: Callable[[dict[str, Any]], None] | None = None) -> list[Settlement]:
    """Attempt every due payout; returns the settlements attempted in this run (paid or failed)."""
    today = now.date().isoformat()
    stamp = now.isoformat(timespec="microseconds")
    attempted: list[Settlement] = []
    for s in ledger.settlements():
        if s.status == "paid" or s.value_date > today:
            continue
        if s.status == "failed" and config.skip_payout_retries:
            continue
        problem = _failure(ledger, s.mid)
        with ledger.step():
            s.attempts += 1
            if problem is None:
                ledger.post("payout", None, [(payout_account(s.mid), -s.amount), (bank_account(s.mid), s.amount)], now)
                s.recredit = s.status == "failed"
                s.status, s.paid_at, s.last_error = "paid", stamp, None
            else:
                s.status, s.last_error = "failed", problem
                s.first_failed_at = s.first_failed_at or stamp
            ledger.save_settlement(s)
        attempted.append(s)
        if events is not None:
            events({"actor": "ledger", "kind": "payout" if problem is None else "payout_failed",
                    "amount": s.amount, "detail": f"{s.id}: " + (("re-credited" if s.recredit else "credited")
                                                               if problem is None else problem)})
    return attempted


@dataclass(slots=True)
class MerchantPayouts:
    """Payout report of one merchant: what was settled, credited, is still owed, and why."""

    mid: str
    name: str
    settled: int = 0
    credited: int = 0
    pending: int = 0
    recredited: int = 0
    unsettled: int = 0
    lines: list[dict[str, Any]] = field(default_factory=list)


def payout_report(ledger: Ledger) -> list[MerchantPayouts]:
    """Per merchant: settled / credited / pending (incl. failed) / re-credited totals and each payout."""
    out: dict[str, MerchantPayouts] = {}
    for m in ledger.merchants():
        out[m.mid] = MerchantPayouts(m.mid, m.name, unsettled=ledger.balance(f"payable:{m.mid}"))
    for s in ledger.settlements():
        report = out.setdefault(s.mid, MerchantPayouts(s.mid, s.mid))
        report.settled += s.amount
        if s.status == "paid":
            report.credited += s.amount
            if s.recredit:
                report.recredited += s.amount
        else:
            report.pending += s.amount
        report.lines.append({"settlement": s.id, "amount": s.amount, "value_date": s.value_date,
                             "status": s.status, "attempts": s.attempts, "last_error": s.last_error,
                             "first_failed_at": s.first_failed_at, "paid_at": s.paid_at, "recredit": s.recredit})
    return [out[k] for k in sorted(out)]


def format_report(reports: list[MerchantPayouts]) -> str:
    """Plain-text payout report (amounts in major units)."""
    def money(v: int) -> str:
        return f"{v / 100:,.2f}"

    lines = [f"{'merchant':<16} {'settled':>12} {'credited':>12} {'pending':>12} {'re-credited':>12} {'unsettled':>12}"]
    for r in reports:
        lines.append(f"{r.mid:<16} {money(r.settled):>12} {money(r.credited):>12} {money(r.pending):>12} "
                     f"{money(r.recredited):>12} {money(r.unsettled):>12}")
        for line in r.lines:
            note = f" ({line['last_error']}, {line['attempts']} attempts)" if line["status"] != "paid" else (
                " (re-credit)" if line["recredit"] else "")
            lines.append(f"  {line['settlement']:<30} {money(line['amount']):>12} {line['status']}{note}")
    return "\n".join(lines)
