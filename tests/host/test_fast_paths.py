"""Every shortcut on the host's per-sale path gives what the general path gives.

Shortcuts under test: the PIN verification memo (security_glue), the one-statement commit of an
approval and its entry (ledger), the events built in one dict (host). Each is checked against the
general computation it replaces, including after the state it depends on changes (new working
keys, a card's PIN changed, a crash and restart, a failed commit).
"""

from __future__ import annotations

import asyncio

import pytest
from host_msgs import NOW, PAN, TID, make_host, request, reversal, run, sale

from host_sim import security_glue as sec
from host_sim.ledger import pin_hash
from iso8583.security import pin
from iso8583.security.keys import Key
from iso8583.transactions import TxnType

KEY_A = "0123456789ABCDEFFEDCBA9876543210"
KEY_B = "89ABCDEF0123456776543210FEDCBA98"


def _reference(block, pan: str, key_hex: str, pvv: str) -> str:
    """What verify_pin computed before the memo: decrypt, hash, compare."""
    if isinstance(block, str):
        try:
            block = bytes.fromhex(block)
        except ValueError:
            return "wrong"
    try:
        clear = pin.decrypt(bytes(block), pan, Key(key_hex))
    except Exception:
        return "wrong"
    return "ok" if pin_hash(pan, clear) == pvv else "wrong"


def _keys(pin_key: str) -> dict[str, str]:
    return {"pin_key": pin_key, "mac_key": KEY_B}


def test_pin_memo_agrees_with_decryption_cold_and_warm() -> None:
    host = make_host()
    card = host.ledger.card(PAN)
    assert card is not None
    good = pin.encrypt("1234", PAN, Key(KEY_A))
    blocks = [good, good.hex().upper(), pin.encrypt("4321", PAN, Key(KEY_A)), pin.encrypt("1234", PAN, Key(KEY_B)),
              b"\x00" * 8, b"\x01\x02", "not hex", None]
    for key in (KEY_A, KEY_B):
        sec._PVV_MEMO.clear()
        for _ in range(2):   # cold (decrypted), then warm (from the memo)
            for block in blocks:
                msg = sale(stan=1, f52=block)
                expected = _reference(block, PAN, key, card.pin_hash) if block is not None else "wrong"
                assert sec.verify_pin(host, msg, PAN, card, _keys(key)) == expected
    assert sec.verify_pin(host, sale(stan=1, f52=good), PAN, card, None) == "no_keys"


def test_pin_memo_follows_new_keys_and_a_changed_pin() -> None:
    host = make_host()
    card = host.ledger.card(PAN)
    assert card is not None
    block = pin.encrypt("1234", PAN, Key(KEY_A))
    msg = sale(stan=1, f52=block)
    assert sec.verify_pin(host, msg, PAN, card, _keys(KEY_A)) == "ok"
    # a new sign-on: the same block under the new key is no longer the PIN
    assert sec.verify_pin(host, msg, PAN, card, _keys(KEY_B)) == "wrong"
    assert sec.verify_pin(host, msg, PAN, card, _keys(KEY_A)) == "ok"
    # the cardholder changed the PIN: the memoized block now fails, the new one passes
    changed = host.ledger.update_card(PAN, pin_hash=pin_hash(PAN, "9999"))
    assert sec.verify_pin(host, msg, PAN, changed, _keys(KEY_A)) == "wrong"
    assert sec.verify_pin(host, sale(stan=2, f52=pin.encrypt("9999", PAN, Key(KEY_A))), PAN, changed,
                          _keys(KEY_A)) == "ok"


def test_pin_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    host = make_host()
    card = host.ledger.card(PAN)
    assert card is not None
    monkeypatch.setattr(sec, "PVV_MEMO_SIZE", 4)
    sec._PVV_MEMO.clear()
    for n in range(10):
        block = pin.encrypt(f"{1230 + n}", PAN, Key(KEY_A))
        assert sec.verify_pin(host, sale(stan=1, f52=block), PAN, card, _keys(KEY_A)) == \
            ("ok" if n == 4 else "wrong")
        assert len(sec._PVV_MEMO) <= 4


def test_pin_tries_count_the_same_with_the_memo_warm() -> None:
    """Wrong, wrong, right: the tries counter and verdicts do not depend on whether a block was seen."""
    verdicts = []
    for _ in range(2):
        sec._PVV_MEMO.clear()
        host = make_host()
        host.ledger.set_terminal_keys(TID, _keys(KEY_A), NOW)
        wrong = pin.encrypt("0000", PAN, Key(KEY_A))
        right = pin.encrypt("1234", PAN, Key(KEY_A))
        answers = [run(host.handle(sale(stan=n, amount=100 + n, when=f"11231000{n:02d}", f52=block)))[39]
                   for n, block in enumerate([wrong, wrong, right, right], start=1)]
        verdicts.append((answers, host.ledger.card(PAN).pin_tries))
    assert verdicts[0] == verdicts[1] == (["55", "55", "00", "00"], 0)


# -- the one-statement commit of an approval and its entry --------------------------------------------
def _dump(ledger) -> tuple[list, list]:
    """Everything SQLite holds for requests and postings, ids included, as a reader would see it."""
    ledger.flush_writes()
    c = ledger.conn
    return (c.execute("SELECT * FROM txns ORDER BY id").fetchall(),
            c.execute("SELECT * FROM postings ORDER BY id").fetchall())


def _workload(host) -> list:
    """Lone approvals (one commit each), a group of several, declines, a pre-authorization, a
    sale reversed inside its own group, duplicates with detection off: every shape of commit."""
    async def go() -> list:
        answers = []
        for n in range(1, 4):   # one request per commit: the lone-approval statement
            answers.append(await host.handle(sale(stan=n, amount=100 + n, when=f"11231000{n:02d}")))
        group = [sale(stan=n, amount=100 + n, when=f"11231000{n:02d}") for n in range(4, 8)]
        group.append(request(TxnType.PREAUTH, stan=8, amount=555))
        group.append(sale(stan=9, amount=10**9))                     # declined: a row without entry
        answers += await asyncio.gather(*(host.handle(m) for m in group))
        victim = sale(stan=10, amount=210, when="1123100010")        # approved and reversed in one group
        answers += await asyncio.gather(host.handle(victim), host.handle(reversal(victim)))
        host.config.no_duplicate_detection = True                    # a duplicate row (dup_of set)
        answers.append(await host.handle(sale(stan=1, amount=101, when="1123100001")))
        host.config.no_duplicate_detection = False
        answers.append(await host.handle(sale(stan=11, amount=111, when="1123100011")))
        return answers
    return [(a.mti, dict(a.fields)) if a is not None else None for a in run(go())]


@pytest.mark.parametrize("commit", ["inline", "thread"])
def test_one_statement_commits_store_what_the_general_path_stores(tmp_path, monkeypatch, commit: str) -> None:
    from host_msgs import Clock

    from host_sim import Host, HostConfig, Ledger, seed
    from host_sim import ledger as ledger_module

    def build(name: str):
        ledger = Ledger.open(str(tmp_path / name), synchronous="NORMAL")
        seed(ledger)
        return Host(ledger, "iso87ascii", HostConfig(), clock=Clock(), commit=commit)

    fast = build("fast.db")
    fast_answers = _workload(fast)
    calls = []
    def unprepared(record):
        def record_unprepared(self, *args):   # as if no approval were ever prepared for its commit
            row = record(self, *args)
            self._approval = None
            return row
        return record_unprepared

    with monkeypatch.context() as patch:   # the general path: no lone statement, no pairs
        patch.setattr(ledger_module.Ledger, "record_approval", unprepared(ledger_module.Ledger.record_approval))
        patch.setattr(ledger_module.Ledger, "_lone_approval", lambda self, rows: calls.append(1))
        patch.setattr(ledger_module, "_pair", lambda fresh, transfers: [])
        general = build("general.db")
        general_answers = _workload(general)
    assert fast_answers == general_answers
    assert _dump(fast.ledger) == _dump(general.ledger)
    assert fast.ledger.balances() == general.ledger.balances()
    assert calls or commit == "thread"     # the inline run did try the lone statement
    for host in (fast, general):
        host.ledger.check_conservation()
        reopened = Ledger.open(host.ledger.path)
        assert {r.id: r for r in reopened.rows()} == {r.id: r for r in host.ledger.rows()}
        reopened.close()
        host.ledger.close()


def test_pairing_keeps_posting_order_and_refuses_what_it_cannot_pair() -> None:
    from host_sim.ledger import _FRESH_ID, _pair

    def row(i: int) -> tuple:
        values = [0] * 19
        values[_FRESH_ID] = i
        return tuple(values)

    fresh = [row(1), row(2), row(3)]
    transfers = [(10, 1, "sale", "a", "b", 5, "t"), (11, 3, "sale", "a", "c", 6, "t")]
    paired = _pair(fresh, transfers)
    assert [p[_FRESH_ID] for p in paired] == [1, 3] and [p[19] for p in paired] == [10, 11]
    assert fresh == [row(2)]
    fresh = [row(1), row(2)]
    assert _pair(fresh, [(10, 1, "s", "a", "b", 5, "t"), (11, 9, "s", "a", "b", 5, "t")]) == []
    assert fresh == [row(1), row(2)]
    assert _pair(fresh, [(10, 1, "s", "a", "b", 5, "t"), (11, 1, "s", "a", "b", 5, "t")]) == []


def test_a_failed_lone_commit_writes_nothing_and_fails_the_waiters() -> None:
    from host_sim import Ledger, seed
    from host_sim.ledger import LedgerError

    ledger = Ledger.open(":memory:")
    seed(ledger)
    before = _dump(ledger)
    balances = ledger.balances()
    rolled_back = []
    ledger.on_rollback.append(lambda: rolled_back.append(1))
    next_id = ledger.next_id()
    # someone else took the row id behind the ledger's back: the row insert fails inside the statement
    ledger.conn.execute("INSERT INTO txns(id, tid, stan, ref, kind, mti, mid, pan, amount, rc, extra, fingerprint,"
                        " batch, status, cardholder_debit, hold, merchant_credit, created_at, day)"
                        " VALUES (?, 'x', 'x', 'x', 'echo', '0800', 'm', 'p', 0, '00', '{}', '', '', 'approved',"
                        " 0, 0, 0, 'now', 'day')", (next_id,))
    ledger.begin_group()
    ledger.record_approval((TID, "000001", "1123100000"), "sale", "0200", "100000000000001", PAN, 500,
                           {"37": "1", "38": "2"}, "Lfp", "", 500, 0, "2026-11-23T10:00:00.000000",
                           "2026-11-23", None, "sale", f"card:{PAN}", "payable:100000000000001")
    with pytest.raises(Exception) as caught:
        ledger.commit()
    assert not isinstance(caught.value, LedgerError)
    assert rolled_back == [1]
    txns, postings = _dump(ledger)
    assert postings == before[1]                      # not one posting of the failed statement
    assert [r[0] for r in txns] == [r[0] for r in before[0]] + [next_id]   # only the intruder
    assert ledger.balances() == balances             # the mirror is SQLite's again
    assert ledger.find_at((TID, "000001", "1123100000")) is None


def _approve(ledger, stan: str, amount: int):
    return ledger.record_approval((TID, stan, "1123100000"), "sale", "0200", "100000000000001", PAN, amount,
                                  {"37": "000000000001", "38": "000002"}, "L" + stan, "", amount, 0,
                                  "2026-11-23T10:00:00.000000", "2026-11-23", None, "sale", f"card:{PAN}",
                                  "payable:100000000000001")


@pytest.mark.parametrize("change", ["none", "update", "second", "post"])
def test_a_prepared_approval_commits_as_it_stands(tmp_path, change: str) -> None:
    """The approval prepared at record time is written only while it is the one unchanged thing
    pending; an update of its row, another request or another entry send it the general way."""
    from host_sim import Ledger, seed

    ledger = Ledger.open(str(tmp_path / "l.db"))
    seed(ledger)
    ledger.begin_group()
    row = _approve(ledger, "000001", 700)
    assert ledger._approval is not None and ledger._approval[0] is row
    if change == "update":
        ledger.update(row, batch="000042", status="approved")
        assert ledger._approval is None
    elif change == "second":
        _approve(ledger, "000002", 800)
    elif change == "post":
        with ledger.step():
            ledger.post("fee", None, [(f"card:{PAN}", -5), ("payable:100000000000001", 5)], "2026-11-23T10:00:00")
    ledger.commit()
    assert ledger._approval is None and not ledger.has_pending
    mirror = {r.id: r for r in ledger.rows()}
    balances = ledger.balances()
    ledger.check_conservation()
    ledger.close()
    reopened = Ledger.open(str(tmp_path / "l.db"))
    assert {r.id: r for r in reopened.rows()} == mirror
    assert reopened.balances() == {a: v for a, v in balances.items() if v or a in reopened.balances()}
    assert reopened.find_at((TID, "000001", "1123100000")).batch == ("000042" if change == "update" else "")
    reopened.check_conservation()
    reopened.close()


# -- events -----------------------------------------------------------------------------------------
def _events_workload(host) -> None:
    async def go() -> None:
        for n in range(1, 4):
            await host.handle(sale(stan=n, amount=100 + n, when=f"11231000{n:02d}"))
        await host.handle(request(TxnType.PREAUTH, stan=4, amount=50))
        await host.handle(sale(stan=5, amount=10**9))            # a decline: emitted the general way
        await host.handle(sale(stan=1, amount=101, when="1123100001"))   # a duplicate
    run(go())


def test_events_recorded_lazily_read_back_as_the_dicts_sent_eagerly() -> None:
    from posfault.trace import Trace

    lazy_trace, eager_trace = Trace(), Trace()
    lazy = make_host()
    lazy.events = lazy_trace.record_owned               # a trace's own recorder: built when read
    eager = make_host()
    eager.events = lambda event: eager_trace.record_owned(event)   # any other sink: a dict per event
    _events_workload(lazy)
    _events_workload(eager)
    assert any(e.__class__ is tuple for e in lazy_trace._events)       # some were recorded lazily
    assert all(e.__class__ is dict for e in eager_trace._events)

    def strip(events: list) -> list:
        return [{k: v for k, v in e.items() if k != "t"} for e in events]

    assert strip(lazy_trace.events) == strip(eager_trace.events)
    assert [list(e) for e in lazy_trace.events] == [list(e) for e in eager_trace.events]   # key order too
    kinds = [e["kind"] for e in lazy_trace.events]
    assert kinds.count("recv") == kinds.count("send") == 6 and kinds.count("posting") == 4
    assert all(PAN not in str(e) for e in lazy_trace.events)


def test_replacing_the_event_sink_takes_effect_at_once() -> None:
    from posfault.trace import Trace

    trace = Trace()
    seen: list = []
    host = make_host()
    host.events = trace.record_owned
    run(host.handle(sale(stan=1, amount=101)))
    host.events = seen.append
    run(host.handle(sale(stan=2, amount=102, when="1123100002")))
    host.events = None
    run(host.handle(sale(stan=3, amount=103, when="1123100003")))
    assert [e["kind"] for e in trace.events] == ["recv", "posting", "send"]
    assert [e["kind"] for e in seen] == ["recv", "posting", "send"] and seen[0]["stan"] == "000002"



# -- the shaped approval statements (constants and accounts written by the trigger) -----------------
@pytest.mark.parametrize("kind", ["sale", "preauth"])
@pytest.mark.parametrize("batch", ["", "000042"])
def test_shaped_approval_statements_store_what_the_general_one_stores(tmp_path, monkeypatch, kind: str,
                                                                      batch: str) -> None:
    from host_sim import Ledger, seed
    from host_sim import ledger as ledger_module

    mid = "100000000000001"
    target = "payable:" + mid if kind == "sale" else "hold:" + PAN
    entry_kind = "sale" if kind == "sale" else "preauth_hold"
    mti = "0200" if kind == "sale" else "0100"

    def run_one(name: str, shaped: bool) -> tuple:
        ledger = Ledger.open(str(tmp_path / name))
        seed(ledger)
        ledger.begin_group()
        debit, hold = (700, 0) if kind == "sale" else (0, 700)
        ledger.record_approval((TID, "000001", "1123100000"), kind, mti, mid, PAN, 700,
                               {"37": "000000000001", "38": "000002"}, "Lfp", batch, debit, hold,
                               "2026-11-23T10:00:00.000000", "2026-11-23", None, entry_kind, f"card:{PAN}", target)
        assert ledger._approval is not None
        assert (ledger._approval[1] != ledger_module._APPROVAL_SQL) == shaped
        ledger.commit()
        ledger.check_conservation()
        dump = _dump(ledger)
        ledger.close()
        return dump

    shaped = run_one("shaped.db", True)
    with monkeypatch.context() as patch:
        patch.setattr(ledger_module, "_SHAPED_SQL", {})
        patch.setattr(ledger_module, "_shaped_sql", lambda kind, mti, batch: "")
        general = run_one("general.db", False)
    assert shaped == general


def test_an_entry_the_shaped_statement_does_not_write_goes_the_general_way(tmp_path) -> None:
    from host_sim import Ledger, seed
    from host_sim import ledger as ledger_module

    ledger = Ledger.open(str(tmp_path / "l.db"))
    seed(ledger)
    ledger.begin_group()
    ledger.record_approval((TID, "000001", "1123100000"), "sale", "0200", "100000000000001", PAN, 700,
                           {"37": "000000000001", "38": "000002"}, "Lfp", "", 700, 0,
                           "2026-11-23T10:00:00.000000", "2026-11-23", None, "sale", f"card:{PAN}", "capital")
    assert ledger._approval[1] == ledger_module._APPROVAL_SQL
    ledger.commit()
    assert _dump(ledger)[1][-1][4] == "capital"
    ledger.check_conservation()
    assert ledger_module._shaped_sql("sale", "02'0", "") == "" and ledger_module._shaped_sql("void", "0200", "") == ""
    assert ledger_module._shaped_sql("sale", "0200", "x'") == ""
