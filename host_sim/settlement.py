"""Host-side daily settlement (cut-off): captured transactions become a per-merchant settlement.

At the cut-off of business day D every approved, not yet settled money movement captured on or
before D is netted per merchant (sales and completions minus refunds and reversal adjustments)
and moved, in one balanced entry, from ``payable:<mid>`` to ``payout:<mid>``; the payout to the
merchant's bank follows on the value date D + payout_delay_days (:mod:`host_sim.payouts`).

With ``capture="terminal_batch"`` only transactions of terminal batches closed by a settlement
(0500 answered 00, or the closing message after a batch upload) are settled — the host then
depends on the terminal settling, which is how "batch not settled, merchant not credited" happens.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable

from .config import HostConfig
from .ledger import Ledger, Settlement, TxnRow, payable_account, payout_account

MONEY_KINDS = frozenset({"sale", "offline_sale", "completion", "refund", "adjustment"})


def settlement_id(day: _dt.date, mid: str) -> str:
    return f"{day.isoformat()}/{mid}"


def _eligible(row: TxnRow, day: str, config: HostConfig, closed: Callable[[str], set[str]],
              closed_cache: dict[str, set[str]]) -> bool:
    if row.settlement is not None or row.kind not in MONEY_KINDS or row.rc != "00":
        return False
    if row.merchant_credit == 0 or row.day > day:
        return False
    if config.capture == "terminal_batch" and row.kind != "adjustment":
        if row.tid not in closed_cache:
            closed_cache[row.tid] = closed(row.tid)
        if not row.batch or row.batch not in closed_cache[row.tid]:
            return False
    return True


def settle_day(ledger: Ledger, day: _dt.date, config: HostConfig, now: _dt.datetime,
               closed_batches: Callable[[str], set[str]]) -> list[Settlement]:
    """Settle business day ``day``; returns the settlements created (idempotent: settled rows are skipped).

    A merchant whose net for the day is zero or negative is not settled: its rows wait and are
    netted into a later day (an acquirer does not pay a negative amount).
    """
    iso_day = day.isoformat()
    groups: dict[str, list[TxnRow]] = {}
    cache: dict[str, set[str]] = {}
    for row in ledger.rows():
        if _eligible(row, iso_day, config, closed_batches, cache):
            groups.setdefault(row.mid, []).append(row)
    created: list[Settlement] = []
    value_date = (day + _dt.timedelta(days=config.payout_delay_days)).isoformat()
    for mid, rows in sorted(groups.items()):
        amount = sum(r.merchant_credit for r in rows)
        if amount <= 0:
            continue
        sid = settlement_id(day, mid)
        existing = {s.id: s for s in ledger.settlements(mid)}
        if sid in existing:  # a second cut-off run on the same day adds a sequence suffix
            n = 2
            while f"{sid}#{n}" in existing:
                n += 1
            sid = f"{sid}#{n}"
        settlement = Settlement(sid, mid, iso_day, amount, sum(1 for r in rows if r.kind != "adjustment"),
                                now.isoformat(timespec="microseconds"), value_date, "pending", 0, None, None,
                                None, False)
        with ledger.step():
            ledger.post("settlement", None, [(payable_account(mid), -amount), (payout_account(mid), amount)], now)
            for row in rows:
                ledger.update(row, settlement=sid)
            ledger.save_settlement(settlement)
        created.append(settlement)
    return created
