"""Transaction flows of the correct terminal against the in-test host (virtual time)."""

from __future__ import annotations

import pytest

from posfault.clock import run_virtual
from terminal_sim import Journal, Printer, load_cards

from .support import FakeHost, FakeLink, make_terminal

CARDS = load_cards()


@pytest.mark.parametrize("family", ["iso87", "unionpay"])
def test_sale_is_approved_journaled_and_printed(family: str) -> None:
    host = FakeHost(FakeLink(family))

    async def main() -> None:
        term = make_terminal(host)
        result = await term.sale(1234, card=CARDS["chip-ok"])
        assert result.approved and result.rc == "00" and result.receipt
        (rec,) = term.journal.attempts()
        assert rec.outcome == "approved" and rec.amount == 1234 and rec.card == "621700******0014"
        assert rec.reversal == "cleared" and rec.receipt_printed and rec.in_batch
        assert rec.stans == (result.stan,)
        assert host.net() == 1234
        assert term.printer.roll[-1].attempt == rec.attempt
        assert "6217000000000014" not in result.receipt

    run_virtual(main())


def test_timeout_sends_reversal_repeated_until_acknowledged() -> None:
    link = FakeLink()
    # Drop the sale's response and the first reversal's ack: the 0401 repeat must follow.
    host = FakeHost(link, fault=lambda m, n: "drop" if m.mti in ("0200", "0400") else None)

    async def main() -> None:
        term = make_terminal(host, reversal_interval=5.0, reversal_timeout=10.0)
        result = await term.sale(5000, card=CARDS["mag-ok"])
        assert result.outcome == "failed"
        (rec,) = term.journal.attempts()
        assert rec.reversal == "acked" and rec.reversal_reason == "98" and rec.reversal_tries == 2
        assert not rec.receipt_printed
        mtis = [m.mti for m in host.seen if m.mti.startswith("04")]
        assert mtis == ["0400", "0401"]
        assert host.net() == 0

    run_virtual(main())


def test_bad_mac_on_approval_is_reversed() -> None:
    host = FakeHost(FakeLink(), fault=lambda m, n: "bad_mac" if m.mti == "0200" else None)

    async def main() -> None:
        term = make_terminal(host)
        result = await term.sale(700, card=CARDS["chip-ok"])
        assert result.outcome == "failed"
        (rec,) = term.journal.attempts()
        assert rec.reversal == "acked" and rec.reversal_reason == "A0"
        assert host.net() == 0

    run_virtual(main())


def test_malformed_response_is_reversed() -> None:
    host = FakeHost(FakeLink(), fault=lambda m, n: "garbage" if m.mti == "0200" else None)

    async def main() -> None:
        term = make_terminal(host)
        assert (await term.sale(700, card=CARDS["chip-ok"])).outcome == "failed"
        assert term.journal.attempts()[0].reversal_reason == "96"
        assert host.net() == 0

    run_virtual(main())


def test_unacknowledged_reversal_blocks_next_sale_until_sent() -> None:
    state = {"down": True}
    host = FakeHost(FakeLink(), fault=lambda m, n: "drop" if state["down"] and m.mti != "0800" else None)

    async def main() -> None:
        term = make_terminal(host, reversal_max_tries=2)
        assert (await term.sale(100, card=CARDS["chip-ok"])).outcome == "failed"
        refused = await term.sale(200, card=CARDS["chip-ok"])
        assert refused.outcome == "failed" and "pending reversal" in refused.detail
        assert term.journal.attempts()[1].stans == ()
        state["down"] = False
        ok = await term.sale(300, card=CARDS["chip-ok"])
        assert ok.approved
        first = term.journal.attempts()[0]
        assert first.reversal == "acked"
        assert host.net() == 300

    run_virtual(main())


def test_declined_sale_clears_reversal_and_prints_nothing() -> None:
    host = FakeHost(FakeLink(), decline_amounts={5100: "51"})

    async def main() -> None:
        term = make_terminal(host)
        result = await term.sale(5100, card=CARDS["chip-ok"])
        assert result.outcome == "declined" and result.rc == "51" and result.receipt is None
        (rec,) = term.journal.attempts()
        assert rec.reversal == "cleared" and not rec.in_batch and not rec.receipt_printed

    run_virtual(main())


def test_void_refund_preauth_completion_balance_and_settlement() -> None:
    host = FakeHost(FakeLink())

    async def main() -> None:
        term = make_terminal(host)
        sale = await term.sale(1000, card=CARDS["chip-ok"])
        sale2 = await term.sale(2500, card=CARDS["mag-ok"])
        void = await term.void(sale.attempt)
        assert void.approved
        refund = await term.refund(300, card=CARDS["mag-ok"], original=sale2.attempt)
        assert refund.approved
        pre = await term.preauth(8000, card=CARDS["chip-ok"])
        assert pre.approved and pre.auth_code == "654321"
        comp = await term.completion(pre.attempt, 7000)
        assert comp.approved
        bal = await term.balance(card=CARDS["mag-ok"])
        assert bal.approved and bal.balance == 500000
        recs = {r.attempt: r for r in term.journal.attempts()}
        assert recs[sale.attempt].voided and not recs[sale.attempt].in_batch
        assert recs[refund.attempt].advice == "acked"
        result = await term.settle()
        assert result.ok and result.rc == "00", result
        assert result.totals.debit_amount == 2500 + 7000 and result.totals.credit_amount == 300
        assert term.journal.batch == 2
        assert all(r.settled for r in term.journal.attempts() if r.in_batch)

    run_virtual(main())


def test_settlement_mismatch_uploads_batch_then_closes() -> None:
    host = FakeHost(FakeLink())

    async def main() -> None:
        term = make_terminal(host)
        await term.sale(1000, card=CARDS["chip-ok"])
        host.debits[("phantom",)] = 1  # the host believes in one more debit: totals differ
        result = await term.settle()
        assert result.ok and result.rc == "95" and result.uploaded == 1
        assert [m.mti for m in host.uploads] == ["0320", "0500"]

    run_virtual(main())


def test_offline_approval_below_floor_limit_is_uploaded_as_advice() -> None:
    host = FakeHost(FakeLink())

    async def main() -> None:
        term = make_terminal(host, floor_limit=2000)
        off = await term.sale(1500, card=CARDS["chip-ok"])
        assert off.approved and off.auth_code.startswith("Y1")
        rec = term.journal.attempts()[0]
        assert rec.mode == "offline" and rec.advice == "pending" and rec.receipt_printed
        assert host.seen == [] or all(m.mti != "0220" for m in host.seen)
        result = await term.settle()
        assert result.ok and result.rc == "00"
        assert term.journal.attempts()[0].advice == "acked"
        assert host.net() == 1500

    run_virtual(main())


def test_printer_paper_out_then_reprint_last_receipt() -> None:
    host = FakeHost(FakeLink())
    printer = Printer()
    printer.paper_out()

    async def main() -> None:
        term = make_terminal(host, printer=printer)
        result = await term.sale(999, card=CARDS["chip-ok"])
        assert result.approved
        rec = term.journal.attempts()[0]
        assert not rec.receipt_printed and printer.roll == []
        printer.load_paper()
        assert await term.reprint()
        rec = term.journal.attempts()[0]
        assert rec.receipt_printed and rec.receipt_outcome == "approved"
        assert "REPRINT" in printer.roll[-1].text

    run_virtual(main())


def test_journal_survives_reopen_with_counters() -> None:
    host = FakeHost(FakeLink())

    async def main() -> None:
        journal = Journal.open(":memory:")
        term = make_terminal(host, journal)
        await term.sale(100, card=CARDS["chip-ok"])
        stan = journal.stan
        fresh = journal.reopen()
        assert fresh.stan == stan and fresh.batch == 1 and len(fresh.attempts()) == 1
        term2 = make_terminal(host, fresh)
        assert term2.signed_on
        r = await term2.sale(100, card=CARDS["chip-ok"])
        assert int(r.stan) == stan + 1

    run_virtual(main())
