"""Response MACs: the host MACs its answer to a MACed request with the terminal's working key, in the
dialect's algorithm, and ``corrupt_response_mac`` reproduces "bad response MAC -> terminal reverses"."""

from __future__ import annotations

import asyncio

import pytest
from host_msgs import PAN, TID, make_host, request, sale

from host_sim import Host, HostConfig, Ledger, seed
from host_sim.ledger import card_account
from iso8583.channels import memory
from iso8583.security import mac
from iso8583.security.keys import WorkingKeys, load_test_keys
from iso8583.transactions import TxnKey, TxnType
from iso8583.wire import Wire

FAMILIES = [("iso87ascii", "iso87"), ("unionpay_pos", "unionpay"), ("iso87binary", "iso87")]


class RawTerminal:
    """Sends messages to ``host.serve`` over a memory pipe and keeps the raw response bytes."""

    def __init__(self, host: Host, dialect: str) -> None:
        self.wire = Wire(dialect)
        self.spec = self.wire.spec
        self.skip = self.wire.envelope.size if self.wire.envelope is not None else 0
        self.term, host_side = memory.pipe(header=self.wire.prefix)
        self.server = asyncio.ensure_future(host.serve(host_side))

    async def send(self, msg):
        await self.term.send(self.wire.pack(msg))
        frame = await asyncio.wait_for(self.term.recv(), 5)
        return self.wire.unpack(frame)[0], frame[self.skip:]

    async def sign_on(self, family: str) -> WorkingKeys:
        signed, _ = await self.send(request(TxnType.SIGN_ON, family, stan=1, amount=None))
        assert signed[39] == "00"
        return WorkingKeys.unpack(signed[62], load_test_keys().tmk)

    async def close(self):
        await self.term.close()
        await asyncio.wait_for(self.server, 5)


@pytest.mark.parametrize(("dialect", "family"), FAMILIES)
def test_response_mac_verifies_with_the_terminals_key(dialect: str, family: str) -> None:
    host = make_host(dialect)

    async def go():
        t = RawTerminal(host, dialect)
        keys = await t.sign_on(family)
        signed = mac.stamp(sale(2, 1000, family), t.spec, keys.mac_key)
        approved, raw = await t.send(signed)
        assert approved[39] == "00"
        assert 64 in approved and mac.verify(raw, t.spec, keys.mac_key)
        again, raw_again = await t.send(signed)              # a retransmission's answer is MACed too
        assert again[39] == "00" and again[38] == approved[38] and mac.verify(raw_again, t.spec, keys.mac_key)
        declined, raw_declined = await t.send(mac.stamp(sale(3, 99_999_999, family, when="1123100003"),
                                                        t.spec, keys.mac_key))
        assert declined[39] == "51" and mac.verify(raw_declined, t.spec, keys.mac_key)
        plain, _ = await t.send(sale(4, 1000, family, when="1123100004"))   # no MAC asked, none given
        assert plain[39] == "00" and 64 not in plain and 128 not in plain
        bad = mac.stamp(sale(5, 1000, family, when="1123100005"), t.spec, keys.mac_key)
        bad[4] = "000000002000"                               # tampered after MACing
        refused, _ = await t.send(bad)
        assert refused[39] == ("A0" if family == "unionpay" else "96") and 64 not in refused
        await t.close()

    asyncio.run(go())
    assert host.ledger.balance(card_account(PAN)) == 500000 - 1000 - 1000


def test_reversal_answer_is_maced_in_field_128_when_it_echoes_field_90() -> None:
    """ISO 0410 echoes field 90 (secondary bitmap), so its MAC goes in field 128."""
    from host_msgs import reversal

    host = make_host("iso87ascii")

    async def go():
        t = RawTerminal(host, "iso87ascii")
        keys = await t.sign_on("iso87")
        original = mac.stamp(sale(2, 1000), t.spec, keys.mac_key)
        assert (await t.send(original))[0][39] == "00"
        undo = reversal(sale(2, 1000))
        undo.fields.pop(64, None)
        answer, raw = await t.send(mac.stamp(undo, t.spec, keys.mac_key))
        await t.close()
        return answer, raw, keys

    answer, raw, keys = asyncio.run(go())
    assert answer[39] == "00" and 128 in answer and mac.verify(raw, Wire("iso87ascii").spec, keys.mac_key)
    assert host.ledger.balance(card_account(PAN)) == 500000


@pytest.mark.parametrize(("dialect", "family"), FAMILIES[:2])
def test_corrupt_response_mac_sends_a_wrong_mac_after_committing(dialect: str, family: str) -> None:
    events: list = []
    host = make_host(dialect, config=HostConfig(corrupt_response_mac=True), events=events)

    async def go():
        t = RawTerminal(host, dialect)
        keys = await t.sign_on(family)
        approved, raw = await t.send(mac.stamp(sale(2, 1000, family), t.spec, keys.mac_key))
        await t.close()
        return approved, raw, keys

    approved, raw, keys = asyncio.run(go())
    assert approved[39] == "00" and 64 in approved
    assert not mac.verify(raw, Wire(dialect).spec, keys.mac_key)
    assert host.ledger.balance(card_account(PAN)) == 499000           # the debit is committed regardless
    assert any(e["kind"] == "mac_corrupted" for e in events)
    assert all("mac_key" not in str(e) and bytes(keys.mac_key).hex() not in str(e).lower() for e in events)


@pytest.mark.parametrize("dialect", ["iso87ascii", "unionpay_pos"])
def test_terminal_reverses_an_approval_with_a_bad_response_mac(dialect: str) -> None:
    """The incident: the issuer approved and debited, the answer's MAC is wrong, so the terminal shows
    no approval and reverses; the reversal (answered with a good MAC) undoes the debit."""
    from posfault.clock import clock_for, run_virtual
    from terminal_sim import Journal, Terminal, TerminalConfig, load_cards

    card = load_cards()["chip-ok"]

    async def main(*, corrupt: bool):
        ledger = Ledger.open(":memory:")
        seed(ledger)
        host = Host(ledger, dialect, HostConfig(corrupt_response_mac=corrupt), clock=clock_for(),
                    keys={TID: bytes(load_test_keys().tmk).hex()})

        async def connect():
            term_side, host_side = memory.pipe(header=Wire(dialect).prefix)
            asyncio.get_running_loop().create_task(host.serve(host_side))
            return term_side

        # the terminal demands a good MAC on approvals: a MAC-less answer would be distrusted too
        term = Terminal(TerminalConfig(dialect=dialect, tid=TID, require_response_mac=True),
                        journal=Journal.open(":memory:"), connector=connect, clock=clock_for())
        assert (await term.sign_on()).approved                # sign-on answers are never MACed
        before = ledger.balance(card_account(card.pan))
        result = await term.sale(1234, card=card)
        await term.recover()
        return result, ledger, before

    result, ledger, before = run_virtual(main(corrupt=True))
    assert not result.approved and result.receipt is None
    sales = [t for t in ledger.transactions() if t.kind == "sale"]
    assert len(sales) == 1 and sales[0].approved and sales[0].reversed
    assert sales[0].cardholder_debit == 0
    assert ledger.balance(card_account(card.pan)) == before
    assert ledger.reversal(TxnKey(sales[0].key.tid, sales[0].key.stan, sales[0].key.ref)) is not None
    ledger.check_conservation()

    # the control: the same wiring without the switch — the terminal verifies the host's MAC and approves
    control, ledger, before = run_virtual(main(corrupt=False))
    assert control.approved and control.receipt is not None
    assert ledger.balance(card_account(card.pan)) == before - 1234
    ledger.check_conservation()
