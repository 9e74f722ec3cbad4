"""Daily cut-off, T+1 payouts that fail and are re-credited (补划款), and the payout report."""

from __future__ import annotations

import datetime as dt

from host_msgs import Clock, make_host, reversal, run, sale, settlement

from host_sim import HostConfig, format_report, payout_report
from host_sim.ledger import bank_account, payable_account, payout_account
from iso8583.transactions import SettlementTotals

DAY = dt.date(2026, 11, 23)
FROZEN, WRONG_BANK = "100000000000002", "100000000000003"


def _sales(host, mid: str, tid: str, amounts: list[int]) -> None:
    async def go():
        for i, amount in enumerate(amounts, 1):
            assert (await host.handle(sale(i, amount, tid=tid, mid=mid, when=f"112310{i:04d}")))[39] == "00"
    run(go())


def test_t_plus_one_payout_credits_merchant() -> None:
    clock = Clock()
    host = make_host(clock=clock)
    _sales(host, "100000000000001", "10000001", [1000, 2500])
    [s] = host.run_settlement(DAY)
    assert (s.amount, s.count, s.value_date) == (3500, 2, "2026-11-24")
    assert host.ledger.balance(payout_account("100000000000001")) == 3500
    assert host.run_payouts(dt.datetime(2026, 11, 23, 23, 30)) == []     # not due yet
    clock.now = dt.datetime(2026, 11, 24, 9, 0)
    [paid] = host.run_payouts()
    assert paid.status == "paid" and not paid.recredit
    assert host.ledger.balance(bank_account("100000000000001")) == 3500
    assert all(t.merchant_credited_at == dt.datetime(2026, 11, 24, 9, 0) for t in host.ledger.transactions())
    assert host.run_settlement(DAY) == []                                  # idempotent cut-off
    host.ledger.check_conservation()


def test_failed_payouts_stay_pending_and_are_recredited_once_fixed() -> None:
    clock = Clock()
    host = make_host(clock=clock)
    _sales(host, FROZEN, "20000001", [4000])
    _sales(host, WRONG_BANK, "30000001", [6000])
    host.run_settlement(DAY)
    clock.now = dt.datetime(2026, 11, 24, 9, 0)
    attempts = host.run_payouts()
    assert sorted(a.last_error for a in attempts) == ["merchant account frozen", "wrong bank details"]
    assert host.ledger.balance(bank_account(FROZEN)) == 0
    assert host.ledger.balance(payout_account(FROZEN)) == 4000                 # still owed, not lost
    assert all(t.merchant_credited_at is None for t in host.ledger.transactions())
    host.ledger.update_merchant(FROZEN, status="active")
    host.ledger.update_merchant(WRONG_BANK, bank_account_ok=True)
    clock.now = dt.datetime(2026, 11, 25, 9, 0)
    again = host.run_payouts()
    assert all(a.status == "paid" and a.recredit and a.attempts == 2 for a in again)
    assert host.ledger.balance(bank_account(FROZEN)) == 4000
    report = {r.mid: r for r in payout_report(host.ledger)}
    assert report[FROZEN].recredited == 4000 and report[FROZEN].pending == 0
    assert "re-credit" in format_report(payout_report(host.ledger))
    host.ledger.check_conservation()


def test_skip_payout_retries_leaves_merchant_uncredited() -> None:
    clock = Clock()
    host = make_host(config=HostConfig(skip_payout_retries=True), clock=clock)
    _sales(host, FROZEN, "20000001", [4000])
    host.run_settlement(DAY)
    clock.now = dt.datetime(2026, 11, 24, 9, 0)
    host.run_payouts()
    host.ledger.update_merchant(FROZEN, status="active")
    clock.now = dt.datetime(2026, 11, 25, 9, 0)
    assert host.run_payouts() == []
    assert host.ledger.balance(bank_account(FROZEN)) == 0
    assert {r.mid: r for r in payout_report(host.ledger)}[FROZEN].pending == 4000


def test_terminal_batch_capture_needs_terminal_settlement() -> None:
    clock = Clock()
    host = make_host(config=HostConfig(capture="terminal_batch"), clock=clock)
    _sales(host, "100000000000001", "10000001", [1000])
    assert host.run_settlement(DAY) == []                  # batch not settled by the terminal
    assert run(host.handle(settlement(SettlementTotals(1, 1000, 0, 0))))[39] == "00"
    [s] = host.run_settlement(DAY)
    assert s.amount == 1000


def test_iso_late_reversal_nets_into_next_settlement() -> None:
    clock = Clock()
    host = make_host(clock=clock)
    original = sale(1, 1000)
    run(host.handle(original))
    host.run_settlement(DAY)
    assert run(host.handle(reversal(original)))[39] == "00"
    assert host.ledger.balance(payable_account("100000000000001")) == -1000
    run(host.handle(sale(2, 5000, when="1124100000")))
    [s] = host.run_settlement(DAY + dt.timedelta(days=1))
    assert s.amount == 4000
    host.ledger.check_conservation()


def test_schedule_runs_cutoff_on_the_clock() -> None:
    """run_schedule sleeps on the loop until the cut-off of the injected clock (same rate as loop time)."""
    import asyncio

    class LoopClock:
        def __init__(self) -> None:
            self.start = dt.datetime(2026, 11, 23, 22, 59, 59, 950000)
            self.t0: float | None = None

        def __call__(self) -> dt.datetime:
            loop = asyncio.get_running_loop()
            if self.t0 is None:
                self.t0 = loop.time()
            return self.start + dt.timedelta(seconds=loop.time() - self.t0)

    clock = LoopClock()
    host = make_host(config=HostConfig(cutoff=dt.time(23, 0)), clock=clock)  # type: ignore[arg-type]

    async def go():
        clock()
        await host.handle(sale(1, 1000))
        await asyncio.wait_for(host.run_schedule(days=1), 5)

    asyncio.run(go())
    [s] = host.ledger.settlements()
    assert (s.amount, s.day, s.status) == (1000, "2026-11-23", "pending")
