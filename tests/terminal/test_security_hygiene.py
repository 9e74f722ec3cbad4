"""What the terminal lets out: events, records, receipts and reprs show PANs masked; the journal
never stores track 2, PIN blocks or MACs; a bad TMK does not leak into errors."""

from __future__ import annotations

import json

from posfault.clock import run_virtual
from terminal_sim import Journal, TerminalConfig, load_cards

from .support import FakeHost, FakeLink, make_terminal

CARDS = load_cards()


def test_no_clear_pan_in_events_records_receipts_or_reprs() -> None:
    host = FakeHost(FakeLink(), fault=lambda m, n: "drop" if n == 3 else None)
    events: list[dict] = []

    async def main() -> None:
        journal = Journal.open(":memory:")
        term = make_terminal(host, journal)
        term.events = events.append
        await term.sale(1000, card=CARDS["mag-ok"])
        await term.sale(1000, card=CARDS["chip-ok"])   # response dropped: reversal path
        text = json.dumps(events) + repr(journal.attempts()) + "".join(r.text for r in term.printer.roll)
        text += repr(CARDS["mag-ok"]) + repr(journal.pending_reversals()) + repr(term.config)
        for card in ("mag-ok", "chip-ok"):
            assert CARDS[card].pan not in text
        assert "621700******0022" in text
        assert any(e["kind"] == "reversal_send" for e in events)

    run_virtual(main())


def test_journal_never_stores_track2_pin_block_or_mac() -> None:
    host = FakeHost(FakeLink())

    async def main() -> None:
        journal = Journal.open(":memory:")
        term = make_terminal(host, journal)
        await term.sale(1000, card=CARDS["mag-ok"])     # magstripe with PIN: fields 35 and 52 sent
        sent = host.seen[-1]
        assert 35 in sent and 52 in sent
        dump = "\n".join(journal._conn.iterdump())
        assert CARDS["mag-ok"].track2 not in dump
        assert sent[52].hex() not in dump and '"52"' not in dump and '"35"' not in dump and '"64"' not in dump

    run_virtual(main())


def test_config_repr_hides_the_master_key() -> None:
    assert "0123456789ABCDEF" not in repr(TerminalConfig(tmk="0123456789ABCDEFFEDCBA9876543210"))
