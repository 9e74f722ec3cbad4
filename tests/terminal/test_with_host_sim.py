"""Terminal and host_sim meet only on the wire; this shows they agree on it, in every dialect the
terminal speaks: what the terminal shows approved is what the issuer ledger debits, reversals
undo debits, advices post, and settlement totals match (rc 00)."""

from __future__ import annotations

import asyncio

import pytest

from host_sim import Host, Ledger, seed
from iso8583.channels.memory import pipe
from iso8583.security.keys import load_test_keys
from posfault.clock import clock_for, run_virtual
from terminal_sim import Journal, Terminal, TerminalConfig, load_cards

CARDS = load_cards()


def _pair(dialect: str, drop_first_sale_response: bool = False):
    ledger = Ledger.open(":memory:")
    seed(ledger)
    host = Host(ledger, dialect=dialect, clock=clock_for(), keys={"10000001": bytes(load_test_keys().tmk).hex()})
    tasks: set = set()
    state = {"dropped": not drop_first_sale_response}

    async def serve(ch) -> None:
        from iso8583.wire import Wire
        wire = Wire(dialect)
        skip = wire.envelope.size if wire.envelope is not None else 0
        try:
            while True:
                frame = await ch.recv(timeout=None)
                msg, env = wire.unpack(frame)
                response = await host.handle(msg, env, frame[skip:])
                if response is None:
                    continue
                if not state["dropped"] and msg.mti == "0200":
                    state["dropped"] = True       # the issuer debited; the answer is lost
                    continue
                await ch.send(wire.pack(response, env.reply() if env else None))
        except Exception:
            return

    async def connect():
        a, b = pipe()
        task = asyncio.get_running_loop().create_task(serve(b))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return a

    term = Terminal(TerminalConfig(dialect=dialect, floor_limit=1000), journal=Journal.open(":memory:"),
                    connector=connect, clock=clock_for())
    return term, ledger


@pytest.mark.parametrize("dialect", ["iso87ascii", "iso87binary", "unionpay_pos"])
def test_terminal_and_host_agree_on_money(dialect: str) -> None:
    async def main() -> None:
        term, ledger = _pair(dialect)
        assert (await term.sign_on()).approved
        sale = await term.sale(1234, card=CARDS["chip-ok"])
        mag = await term.sale(2000, card=CARDS["mag-ok"])
        declined = await term.sale(1234, card=CARDS["insufficient"])
        assert sale.approved and mag.approved and declined.rc == "51"
        assert (await term.void(mag.attempt)).approved
        assert (await term.refund(300, card=CARDS["mag-ok"])).approved
        assert (await term.sale(800, card=CARDS["chip-ok"])).approved          # offline, advice
        pre = await term.preauth(5000, card=CARDS["chip-ok"])
        assert (await term.completion(pre.attempt, 4000)).approved
        settled = await term.settle()
        assert settled.ok and settled.rc == "00", settled
        debits = {t.kind: 0 for t in ledger.transactions()}
        for t in ledger.transactions():
            debits[t.kind] += t.cardholder_debit
        net = sum(t.cardholder_debit for t in ledger.transactions())
        assert net == 1234 + 800 + 4000 - 300, (net, debits)

    run_virtual(main())


@pytest.mark.parametrize("dialect", ["iso87ascii", "unionpay_pos"])
def test_lost_response_is_reversed_at_the_host(dialect: str) -> None:
    async def main() -> None:
        term, ledger = _pair(dialect, drop_first_sale_response=True)
        result = await term.sale(4321, card=CARDS["chip-ok"])
        assert result.outcome == "failed"
        assert term.journal.attempts()[0].reversal == "acked"
        assert sum(t.cardholder_debit for t in ledger.transactions()) == 0

    run_virtual(main())


def test_stale_working_keys_are_renewed_by_a_sign_on_after_a0() -> None:
    """The host rotated the terminal's keys (another sign-on for the same TID): the next sale is
    refused with A0 (MAC check failed) and debits nothing; the terminal signs on again by itself and
    the sale after that is approved."""
    async def main() -> None:
        term, ledger = _pair("unionpay_pos")
        events: list[dict] = []
        term.events = events.append
        assert (await term.sign_on()).approved
        assert (await term.sale(1000, card=CARDS["mag-ok"])).approved
        other = Terminal(TerminalConfig(dialect="unionpay_pos"), journal=Journal.open(":memory:"),
                         connector=term.connector, clock=clock_for())
        assert (await other.sign_on()).approved            # the host now holds new keys for 10000001
        refused = await term.sale(2000, card=CARDS["mag-ok"])
        assert not refused.approved and refused.rc == "A0"
        assert any(e.get("kind") == "keys_rejected" for e in events)
        again = await term.sale(3000, card=CARDS["mag-ok"])
        assert again.approved, again
        assert sum(t.cardholder_debit for t in ledger.transactions()) == 1000 + 3000

    run_virtual(main())
