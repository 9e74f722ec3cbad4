"""Receipt printer faults and what the terminal remembers about them."""

from __future__ import annotations

import pytest

from posfault.clock import run_virtual
from terminal_sim import Printer, PrinterFault, Receipt, load_cards

from .support import FakeHost, FakeLink, make_terminal

CARD = load_cards()["chip-ok"]


def test_printer_faults_raise_and_print_nothing() -> None:
    printer = Printer()
    printer.fail_next("jam")
    with pytest.raises(PrinterFault, match="jam"):
        printer.print(Receipt(1, "x"))
    printer.print(Receipt(1, "x"))          # one-shot fault is gone
    printer.jam()
    with pytest.raises(PrinterFault, match="jam"):
        printer.print(Receipt(2, "y"))
    printer.clear_jam()
    printer.paper_out()
    with pytest.raises(PrinterFault, match="paper out"):
        printer.print(Receipt(2, "y"))
    assert [r.attempt for r in printer.roll] == [1]
    with pytest.raises(ValueError, match="printer fault must be one of"):
        printer.fail_next("fire")


@pytest.mark.parametrize("fault", ["paper_out", "jam"])
def test_approved_but_unprinted_is_journaled_and_printed_on_power_up(fault: str) -> None:
    host = FakeHost(FakeLink())
    printer = Printer()
    printer.fail_next(fault)

    async def main() -> None:
        term = make_terminal(host, printer=printer)
        result = await term.sale(2500, card=CARD)
        assert result.approved
        rec = term.journal.attempts()[0]
        assert rec.outcome == "approved" and not rec.receipt_printed
        assert term.journal.unprinted_approvals()[0][0] == rec.attempt
        fresh = term.journal.reopen()
        term2 = make_terminal(host, fresh, printer=printer)
        assert rec.attempt in await term2.power_up()
        rec = fresh.attempts()[0]
        assert rec.receipt_printed and rec.receipts_printed == 1 and printer.roll[-1].copy == "recovery"

    run_virtual(main())


def test_reprint_prints_the_last_receipt_again_and_counts_it() -> None:
    host = FakeHost(FakeLink())

    async def main() -> None:
        term = make_terminal(host)
        await term.sale(100, card=CARD)
        await term.sale(200, card=CARD)
        assert await term.reprint()
        recs = term.journal.attempts()
        assert recs[1].receipts_printed == 2 and recs[0].receipts_printed == 1
        assert "REPRINT" in term.printer.roll[-1].text and "2.00" in term.printer.roll[-1].text

    run_virtual(main())


def test_nothing_to_reprint() -> None:
    async def main() -> None:
        term = make_terminal(FakeHost(FakeLink()))
        assert await term.reprint() is False

    run_virtual(main())


def test_reprint_and_recovery_print_render_exactly_the_receipt_of_the_sale() -> None:
    host = FakeHost(FakeLink())
    printer = Printer()

    async def main() -> None:
        term = make_terminal(host, printer=printer)
        first = await term.sale(1234, card=CARD)
        assert first.receipt == printer.roll[-1].text and "12.34" in first.receipt
        assert f"TRACE {first.stan}" in first.receipt
        assert await term.reprint()
        assert printer.roll[-1].text == first.receipt + "\n*** REPRINT ***"
        printer.fail_next("paper_out")
        second = await term.sale(567, card=load_cards()["mag-ok"])
        assert second.approved and printer.roll[-1].copy == "reprint"
        fresh = term.journal.reopen()
        await make_terminal(host, fresh, printer=printer).power_up()   # prints what never came out
        assert printer.roll[-1].copy == "recovery" and printer.roll[-1].text == second.receipt
        assert "5.67" in second.receipt and load_cards()["mag-ok"].pan not in second.receipt

    run_virtual(main())
