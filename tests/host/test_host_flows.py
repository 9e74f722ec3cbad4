"""Host behaviour a terminal relies on, message by message, in both families."""

from __future__ import annotations

import asyncio

import pytest
from host_msgs import (
    CARDS,
    MID,
    PAN,
    TID,
    Clock,
    against,
    make_host,
    request,
    reversal,
    run,
    sale,
    settlement,
)

from host_sim import HostConfig, MatchRule
from host_sim.ledger import card_account, hold_account, payable_account
from iso8583.transactions import SettlementTotals, TxnType

FAMILIES = [("iso87ascii", "iso87"), ("unionpay_pos", "unionpay")]


def test_sale_debits_cardholder_and_owes_merchant() -> None:
    host = make_host()
    response = run(host.handle(sale(1, 12345)))
    assert response.mti == "0210" and response[39] == "00"
    assert response[11] == "000001" and len(response[37]) == 12 and len(response[38]) == 6
    assert host.ledger.balance(card_account(PAN)) == 500000 - 12345
    assert host.ledger.balance(payable_account(MID)) == 12345
    [txn] = host.ledger.transactions()
    assert (txn.cardholder_debit, txn.merchant_credit, txn.approved, txn.reversed) == (12345, 12345, True, False)
    assert txn.pan == "621700******0014"
    host.ledger.check_conservation()


@pytest.mark.parametrize(("dialect", "family"), FAMILIES)
def test_retransmitted_sale_is_answered_from_record_and_debited_once(dialect: str, family: str) -> None:
    host = make_host(dialect)

    async def go():
        first = await host.handle(sale(7, 5000, family))
        again = await host.handle(sale(7, 5000, family))
        return first, again

    first, again = run(go())
    assert first[39] == again[39] == "00" and first[38] == again[38] and first[37] == again[37]
    assert host.ledger.balance(card_account(PAN)) == 495000
    [txn] = host.ledger.transactions()
    assert txn.times_posted == 1
    host.ledger.check_conservation()


def test_duplicate_policy_94_and_changed_body() -> None:
    host = make_host(config=HostConfig(duplicate_response="94"))
    assert run(host.handle(sale(1, 5000)))[39] == "00"
    assert run(host.handle(sale(1, 5000)))[39] == "94"
    careful = make_host()
    run(careful.handle(sale(1, 5000)))
    assert run(careful.handle(sale(1, 9999)))[39] == "94"   # same key, different amount
    assert careful.ledger.balance(card_account(PAN)) == 495000


def test_no_duplicate_detection_debits_twice() -> None:
    host = make_host(config=HostConfig(no_duplicate_detection=True))
    run(host.handle(sale(1, 5000)))
    run(host.handle(sale(1, 5000)))
    assert host.ledger.balance(card_account(PAN)) == 490000
    [txn] = host.ledger.transactions()
    assert txn.times_posted == 2 and txn.cardholder_debit == 10000
    host.ledger.check_conservation()


def test_retransmission_with_new_stan_is_a_content_duplicate() -> None:
    host = make_host()
    assert run(host.handle(sale(1, 5000)))[39] == "00"
    assert run(host.handle(sale(2, 5000)))[39] == "94"
    assert host.ledger.balance(card_account(PAN)) == 495000


@pytest.mark.parametrize(("dialect", "family"), FAMILIES)
def test_reversal_is_idempotent_and_repeat_is_acknowledged(dialect: str, family: str) -> None:
    host = make_host(dialect)
    original = sale(3, 20000, family)

    async def go():
        await host.handle(original)
        a = await host.handle(reversal(original, family))
        b = await host.handle(reversal(original, family, repeat=True))
        return a, b

    a, b = run(go())
    assert a.mti == b.mti == "0410" and a[39] == b[39] == "00"
    assert host.ledger.balance(card_account(PAN)) == 500000
    [txn] = host.ledger.transactions()
    assert txn.reversed and txn.cardholder_debit == 0 and txn.merchant_credit == 0
    host.ledger.check_conservation()


@pytest.mark.parametrize(("dialect", "family"), FAMILIES)
def test_reversal_before_original_blocks_the_late_original(dialect: str, family: str) -> None:
    host = make_host(dialect)
    original = sale(4, 1000, family)
    rev = run(host.handle(reversal(original, family)))
    assert rev[39] == "00"
    late = run(host.handle(original))
    assert late[39] != "00"
    assert host.ledger.balance(card_account(PAN)) == 500000
    [txn] = host.ledger.transactions()
    assert txn.reversed and txn.cardholder_debit == 0


def test_ignore_unknown_reversal_lets_the_late_original_debit() -> None:
    host = make_host(config=HostConfig(ignore_unknown_reversal=True))
    original = sale(4, 1000)
    assert run(host.handle(reversal(original)))[39] == "00"
    assert run(host.handle(original))[39] == "00"
    assert host.ledger.balance(card_account(PAN)) == 499000


@pytest.mark.parametrize(("card", "rc"), [("insufficient", "51"), ("blocked", "14"), ("lost", "41"),
                                          ("stolen", "43"), ("expired", "54")])
def test_card_checks(card: str, rc: str) -> None:
    host = make_host()
    msg = sale(1, 5000, pan=CARDS[card])
    msg.pop(14)
    assert run(host.handle(msg))[39] == rc
    assert host.ledger.balance(card_account(CARDS[card])) in (1000, 500000)


def test_unknown_card_limit_amount_and_format() -> None:
    host = make_host()
    assert run(host.handle(sale(1, 5000, pan="6217009999999999")))[39] == "14"
    assert run(host.handle(sale(2, 20001, pan=CARDS["low-limit"])))[39] == "61"
    assert run(host.handle(sale(3, 0)))[39] == "13"
    bad = sale(4, 100)
    bad.pop(11)
    bad[11] = "12"
    assert run(host.handle(bad))[39] == "30"
    nopan = sale(5, 100)
    nopan.pop(2)
    assert run(host.handle(nopan))[39] == "30"
    host.ledger.check_conservation()


def test_user_rules_decline_by_amount_and_field() -> None:
    rules = [MatchRule("big", "05", txn=frozenset({"sale"}), amount_min=100000),
             MatchRule("till 2", "58", fields={41: "10000002"})]
    host = make_host(config=HostConfig(rules=rules))
    assert run(host.handle(sale(1, 100000)))[39] == "05"
    assert run(host.handle(sale(2, 100, tid="10000002")))[39] == "58"
    assert run(host.handle(sale(3, 100)))[39] == "00"


def test_python_rule_from_toml(tmp_path) -> None:
    from host_sim import load_rules
    path = tmp_path / "rules.toml"
    path.write_text('[[rules]]\nname = "py"\npython = "host_rule_module:decline_odd"\n')
    (tmp_path / "host_rule_module.py").write_text(
        "def decline_odd(ctx):\n    return '05' if ctx.amount % 2 else None\n")
    import sys
    sys.path.insert(0, str(tmp_path))
    try:
        host = make_host(config=HostConfig(rules=load_rules(path)))
        assert run(host.handle(sale(1, 101)))[39] == "05"
        assert run(host.handle(sale(2, 100)))[39] == "00"
    finally:
        sys.path.remove(str(tmp_path))


@pytest.mark.parametrize(("dialect", "family"), FAMILIES)
def test_void_refund_preauth_completion(dialect: str, family: str) -> None:
    host = make_host(dialect)

    async def go():
        s = sale(1, 30000, family)
        assert (await host.handle(s))[39] == "00"
        v = against(TxnType.VOID, s, family, stan=2)
        assert (await host.handle(v))[39] == "00"
        assert (await host.handle(v))[39] == "00"          # repeated void: no second credit
        r = request(TxnType.REFUND, family, stan=3, amount=500)
        assert (await host.handle(r)).mti == "0230"
        r.mti = "0221"
        assert (await host.handle(r))[39] == "00"          # repeat advice posts once
        p = request(TxnType.PREAUTH, family, stan=4, amount=8000)
        assert (await host.handle(p))[39] == "00"
        assert host.ledger.balance(hold_account(PAN)) == 8000
        c = against(TxnType.COMPLETION, p, family, stan=5, amount=7000)
        assert (await host.handle(c))[39] == "00"
        assert host.ledger.balance(hold_account(PAN)) == 0

    run(go())
    assert host.ledger.balance(card_account(PAN)) == 500000 + 500 - 7000
    assert host.ledger.balance(payable_account(MID)) == 7000 - 500
    host.ledger.check_conservation()


def test_preauth_reversal_releases_hold_and_void_reversal_redebits() -> None:
    host = make_host()

    async def go():
        p = request(TxnType.PREAUTH, stan=1, amount=8000)
        await host.handle(p)
        await host.handle(reversal(p))
        s = sale(2, 3000, when="1123100500")
        await host.handle(s)
        v = against(TxnType.VOID, s, stan=3, when="1123100600")
        await host.handle(v)
        await host.handle(reversal(v))

    run(go())
    assert host.ledger.balance(hold_account(PAN)) == 0
    assert host.ledger.balance(card_account(PAN)) == 497000
    host.ledger.check_conservation()


@pytest.mark.parametrize(("dialect", "family"), FAMILIES)
def test_balance_inquiry(dialect: str, family: str) -> None:
    host = make_host(dialect)
    response = run(host.handle(request(TxnType.BALANCE, family, amount=None)))
    assert response[39] == "00" and response[54].endswith("C000000500000")


@pytest.mark.parametrize(("dialect", "family"), FAMILIES)
def test_terminal_settlement_match_mismatch_upload_and_close(dialect: str, family: str) -> None:
    host = make_host(dialect)

    async def go():
        await host.handle(sale(1, 1000, family))
        await host.handle(sale(2, 2000, family, when="1123100100"))
        await host.handle(request(TxnType.REFUND, family, stan=3, amount=500))
        wrong = SettlementTotals(1, 1000, 1, 500)
        assert (await host.handle(settlement(wrong, family)))[39] == "95"
        up = request(TxnType.BATCH_UPLOAD, family, stan=2, amount=2000)
        assert (await host.handle(up))[39] == "00"
        final = request(TxnType.SETTLEMENT_FINAL, family, stan=901, amount=None)
        assert (await host.handle(final))[39] == "00"
        right = SettlementTotals(2, 3000, 1, 500)
        assert host.terminal_totals(TID, "000002") == SettlementTotals()
        await host.handle(sale(4, 700, family, batch="000002", when="1123100300"))
        return right

    run(go())
    ok = make_host(dialect)
    run(ok.handle(sale(1, 1000, family)))
    assert run(ok.handle(settlement(SettlementTotals(1, 1000, 0, 0), family)))[39] == "00"


def test_issuer_unavailable_and_lost_response_switches() -> None:
    host = make_host(config=HostConfig(issuer_unavailable=True))
    assert run(host.handle(sale(1, 100)))[39] == "91"
    assert host.ledger.balance(card_account(PAN)) == 500000
    lossy = make_host(config=HostConfig(lose_response_after_commit=True))
    assert run(lossy.handle(sale(1, 100))) is None
    assert lossy.ledger.balance(card_account(PAN)) == 499900     # debited, no answer


def test_late_reversal_after_settlement_per_dialect() -> None:
    clock = Clock()
    for dialect, family, rc, debit in (("iso87ascii", "iso87", "00", 0), ("unionpay_pos", "unionpay", "12", 1000)):
        host = make_host(dialect, clock=clock)
        original = sale(1, 1000, family)
        run(host.handle(original))
        host.run_settlement(clock.now.date())
        assert run(host.handle(reversal(original, family)))[39] == rc
        [txn] = host.ledger.transactions()
        assert txn.cardholder_debit == debit and txn.settled_batch is not None
        host.ledger.check_conservation()


def test_reversal_during_slow_issuer_blocks_the_debit() -> None:
    """The terminal times out while the issuer is slow and reverses; the original finishes later."""
    from host_sim import Window

    host = make_host(config=HostConfig(issuer_slow=Window(0.0, None), issuer_slow_delay=0.05))
    original = sale(1, 7000)

    async def go():
        slow = asyncio.ensure_future(host.handle(original))
        await asyncio.sleep(0.01)
        rev = await host.handle(reversal(original))
        return rev, await slow

    rev, late = run(go())
    assert rev[39] == "00" and late[39] != "00"
    assert host.ledger.balance(card_account(PAN)) == 500000
    host.ledger.check_conservation()


def test_issuer_unavailable_window_ends() -> None:
    from host_sim import Window

    async def go():
        now = asyncio.get_running_loop().time()
        host = make_host(config=HostConfig(issuer_unavailable=Window(now, now + 0.05)))
        first = await host.handle(sale(1, 100))
        await asyncio.sleep(0.06)
        second = await host.handle(sale(1, 100))          # same request, after the window
        return first, second, host

    first, second, host = run(go())
    assert (first[39], second[39]) == ("91", "00")
    assert host.ledger.balance(card_account(PAN)) == 499900


def test_events_never_carry_a_clear_pan() -> None:
    events: list = []
    host = make_host(events=events, config=HostConfig(rules=[MatchRule(f"block {PAN}", "05", pans=frozenset({PAN}))]))
    run(host.handle(sale(1, 100)))
    assert events and PAN not in repr(events)


def test_background_checkpoints_keep_the_ledger_whole(tmp_path, monkeypatch) -> None:
    """checkpoint="background" (what `host serve` uses): commits never checkpoint; the checkpointer
    thread copies the WAL into the database file, and a reopened ledger has every committed sale."""
    import sqlite3
    import time

    from host_msgs import Clock, sale

    from host_sim import Host, Ledger, seed
    from host_sim import ledger as ledger_module

    monkeypatch.setattr(ledger_module, "CHECKPOINT_INTERVAL", 0.02)
    path = str(tmp_path / "host.db")
    ledger = Ledger.open(path, checkpoint="background")
    assert ledger.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    seed(ledger)
    host = Host(ledger, "iso87ascii", clock=Clock(), commit="thread")

    async def go():
        return [await host.handle(sale(i, 100 + i, when=f"11231{i:05d}")) for i in range(1, 41)]

    assert all(r[39] == "00" for r in asyncio.run(go()))
    checkpointer = ledger._checkpointer
    assert checkpointer is not None
    seen = checkpointer.checkpoints
    deadline = time.monotonic() + 5
    while checkpointer.checkpoints < seen + 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert checkpointer.checkpoints >= seen + 2
    # while the ledger is still open, the database file alone (without its WAL) already holds every
    # committed sale: commits do not checkpoint (wal_autocheckpoint=0), so the checkpointer copied them
    copy = tmp_path / "copy.db"
    copy.write_bytes((tmp_path / "host.db").read_bytes())
    with sqlite3.connect(copy) as raw:
        assert raw.execute("SELECT COUNT(*) FROM txns WHERE rc='00'").fetchone()[0] == 40
    ledger.close()
    reopened = Ledger.open(path)
    assert sum(t.cardholder_debit for t in reopened.transactions()) == sum(100 + i for i in range(1, 41))
    reopened.check_conservation()
    reopened.close()


@pytest.mark.parametrize(("dialect", "family"), [("iso87ascii", "iso87"), ("unionpay_pos", "unionpay")])
def test_fast_responses_are_what_make_response_builds(dialect: str, family: str) -> None:
    """The host builds responses directly on its hot path; they must equal the codec's make_response."""
    from iso8583.transactions import make_response

    host = make_host(dialect)
    for msg in (sale(1, 100, family), request(TxnType.ECHO, family, stan=2, amount=None),
                reversal(sale(3, 100, family), family)):
        for rc in ("00", "51"):
            ours, theirs = host._response(msg, rc), make_response(msg, rc, family)
            assert ours.mti == theirs.mti and dict(ours.items()) == dict(theirs.items())
            if isinstance(msg.get(60), dict):
                assert ours[60] is not msg[60]          # a copy: the response never aliases the request


@pytest.mark.parametrize(("dialect", "family"), [("iso87ascii", "iso87"), ("unionpay_pos", "unionpay")])
def test_responses_to_requests_of_many_shapes_echo_what_make_response_echoes(dialect: str, family: str) -> None:
    """The not-echoed fields are remembered per set of request fields: requests with as many fields
    but other ones, or the same ones in another order, must each get their own answer."""
    from iso8583.transactions import make_response

    host = make_host(dialect)
    base = sale(1, 100, family)
    variants = [base]
    for extra, value in ((14, "2812"), (23, "001"), (37, "000000000001"), (48, "x")):
        msg = sale(1, 100, family)
        msg[extra] = value
        variants.append(msg)
        swapped = sale(1, 100, family)
        swapped.fields.pop(41)
        swapped[extra] = value
        variants.append(swapped)          # same number of fields, a different set
    reordered = sale(1, 100, family)
    reordered.fields = dict(reversed(list(reordered.fields.items())))
    variants.append(reordered)
    for _ in range(2):   # cold, then from the memo
        for msg in variants:
            ours, theirs = host._response(msg, "00"), make_response(msg, "00", family)
            assert ours.mti == theirs.mti and dict(ours.items()) == dict(theirs.items())
            assert [n for n in ours.fields if n != 39] == [n for n in msg.fields if n in ours.fields and n != 39]
