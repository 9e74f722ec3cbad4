"""The journal's storage layout: what it keeps in memory instead of indexes must agree with the
tables after every kind of step and after reopening; file journals are exclusive; schema 1
journals are migrated without losing a receipt, schema 2 ones without rewriting a row; requests
are stored compactly and read back exactly, secrets left out."""

from __future__ import annotations

import json
import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iso8583.message import Message
from posfault.clock import run_virtual
from terminal_sim import Journal, Printer, TerminalError, load_cards
from terminal_sim.journal import RECEIPT_SPEC, SCHEMA_VERSION, decode_fields, encode_fields

from .support import FakeHost, FakeLink, make_terminal

CARDS = load_cards()


def _request(stan: int) -> Message:
    return Message("0200", {2: "6217000000000014", 3: "000000", 4: "000000001000", 7: "0302090000",
                            11: f"{stan:06d}", 41: "10000001", 42: "100000000000001", 49: "156"})


def _begin(journal: Journal, *, armed: bool = True) -> int:
    return journal.begin_attempt(tid="10000001", kind="sale", amount=1000, pan="6217000000000014", entry="chip",
                                 request=_request(journal.next_stan), at=1.0, arm_reversal=armed)


def _reversal_states(journal: Journal) -> dict[int, str]:
    return {r.attempt: r.reversal for r in journal.attempts()}


def _check_queries_match_tables(journal: Journal) -> None:
    states = _reversal_states(journal)
    assert journal.armed_reversals() == [a for a, s in sorted(states.items()) if s == "armed"]
    assert [p.attempt for p in journal.pending_reversals()] == [a for a, s in sorted(states.items())
                                                                 if s == "pending"]


@pytest.mark.parametrize("where", ["memory", "file"])
def test_open_reversals_follow_every_step_and_survive_reopen(tmp_path, where: str) -> None:
    journal = Journal.open(":memory:" if where == "memory" else tmp_path / "j.db")
    a = _begin(journal)                                   # armed
    b = _begin(journal)
    journal.decide(b, outcome="approved", at=2.0, rc="00", reversal="cleared", in_batch=True, receipt="r")
    c = _begin(journal)
    journal.decide(c, outcome="failed", at=2.0, reversal="pending", reversal_reason="98")
    d = _begin(journal, armed=False)
    journal.set_reversal(d, "pending", reason="98")      # faulty firmware: written late
    e = _begin(journal)
    journal.decide(e, outcome="failed", at=2.0, reversal="dropped")
    f = _begin(journal, armed=False)                      # reversal_not_persisted: pending at decide
    journal.decide(f, outcome="failed", at=2.0, reversal="pending", reversal_reason="98", request=_request(9))
    _check_queries_match_tables(journal)
    assert _reversal_states(journal) == {a: "armed", b: "cleared", c: "pending", d: "pending", e: "dropped",
                                         f: "pending"}
    journal = journal.reopen()                           # a power cut: rebuilt from the tables
    _check_queries_match_tables(journal)
    journal.recover_undecided(3.0, reason="06")
    _check_queries_match_tables(journal)
    assert [p.attempt for p in journal.pending_reversals()] == [a, c, d, f]
    journal.set_reversal(c, "acked", at=4.0)
    journal.set_reversal(a, "cleared")
    _check_queries_match_tables(journal)
    assert [p.attempt for p in journal.reopen().pending_reversals()] == [d, f]


def test_batch_queries_see_only_the_open_batch_across_settlements_and_reopen(tmp_path) -> None:
    journal = Journal.open(tmp_path / "j.db")
    for _ in range(3):
        a = _begin(journal)
        journal.decide(a, outcome="approved", at=2.0, rc="00", reversal="cleared", in_batch=True, receipt="r")
    assert [t[0] for t in journal.batch_transactions()] == [1, 2, 3]
    assert journal.close_batch(1, at=5.0) == 2
    assert journal.batch_transactions() == []
    a = _begin(journal)
    journal.decide(a, outcome="approved", at=6.0, rc="00", reversal="cleared", in_batch=True, receipt="r")
    assert [t[0] for t in journal.batch_transactions()] == [a]
    again = journal.reopen()
    assert [t[0] for t in again.batch_transactions()] == [a] and again.batch == 2
    assert [t[0] for t in again.batch_transactions(1)] == []     # settled
    assert [r.settled for r in again.attempts()] == [True, True, True, False]


def test_file_journal_is_exclusive_unless_asked(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "j.db"
    journal = Journal.open(path)
    _begin(journal)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        sqlite3.connect(path, timeout=0).execute("SELECT COUNT(*) FROM attempts").fetchone()
    journal.close()
    holder = Journal.open(path)
    real = sqlite3.connect                  # no 5-second busy wait: this lock is never released
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: real(*a, **{**k, "timeout": 0}))
    with pytest.raises(TerminalError, match="in use by another terminal"):
        Journal.open(path)
    monkeypatch.undo()
    holder.close()
    shared = Journal.open(path, exclusive=False)
    _begin(shared)
    assert sqlite3.connect(path, timeout=0).execute("SELECT COUNT(*) FROM attempts").fetchone() == (2,)
    assert len(shared.reopen().attempts()) == 2


def test_schema_1_journal_is_migrated_with_its_receipts(tmp_path) -> None:
    path = tmp_path / "old.db"
    host = FakeHost(FakeLink())

    async def sales(journal: Journal) -> None:
        term = make_terminal(host, journal)
        await term.sale(100, card=CARDS["chip-ok"])
        await term.sale(200, card=CARDS["chip-ok"])
        await term.reprint()

    journal = Journal.open(path)
    run_virtual(sales(journal))
    before = journal.attempts()
    journal.close()
    # Rewrite it into the schema 1 layout: receipts with a rowid and an index on attempt.
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript("""
        ALTER TABLE receipts RENAME TO r2;
        CREATE TABLE receipts (id INTEGER PRIMARY KEY, attempt INTEGER NOT NULL, copy TEXT NOT NULL,
                               status TEXT NOT NULL, outcome TEXT, at REAL NOT NULL);
        CREATE INDEX receipts_attempt ON receipts(attempt);
        INSERT INTO receipts SELECT id, attempt, copy, status, outcome, at FROM r2 ORDER BY id;
        DROP TABLE r2;
        CREATE INDEX attempts_batch ON attempts(batch);
        UPDATE meta SET schema_version = 1;
    """)
    conn.close()
    migrated = Journal.open(path)
    assert migrated.attempts() == before
    assert [r.receipts_printed for r in before] == [1, 2]
    run_virtual(sales(migrated))                          # and it keeps working
    assert [r.receipts_printed for r in migrated.attempts()] == [1, 2, 1, 2]
    migrated.close()
    conn = sqlite3.connect(path)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert conn.execute("SELECT schema_version FROM meta").fetchone() == (SCHEMA_VERSION,)
    assert "receipts_attempt" not in names and "attempts_batch" not in names


def _json_request(msg: Message) -> str:
    """A request as schema 2 stored it (JSON, bytes as {"$b": hex})."""
    out: dict = {"mti": msg.mti}
    for number, value in msg.fields.items():
        out[str(number)] = {"$b": value.hex()} if isinstance(value, bytes) else value
    return json.dumps(out, separators=(",", ":"))


def test_schema_2_journal_keeps_its_json_requests_and_receipt_texts(tmp_path) -> None:
    path = tmp_path / "v2.db"
    host = FakeHost(FakeLink())
    printer = Printer()

    async def sales(journal: Journal) -> None:
        term = make_terminal(host, journal, printer=printer)
        await term.sale(100, card=CARDS["chip-ok"])
        await term.sale(250, card=CARDS["mag-ok"])

    journal = Journal.open(path)
    run_virtual(sales(journal))
    before = journal.attempts()
    requests = {r.attempt: journal.request_of(r.attempt) for r in before}
    texts = [r.text for r in printer.roll]
    journal.close()
    # Rewrite it as schema 2 wrote it: JSON requests, the receipt text itself.
    conn = sqlite3.connect(path, isolation_level=None)
    for (attempt, request), text in zip(requests.items(), texts):
        conn.execute("UPDATE attempts SET request = ?, receipt = ? WHERE id = ?",
                     (_json_request(request), text, attempt))
    conn.execute("UPDATE meta SET schema_version = 2")
    conn.close()

    migrated = Journal.open(path)
    assert migrated.attempts() == before
    assert {a: migrated.request_of(a) for a in requests} == requests
    assert migrated.last_receipt() == (before[-1].attempt, texts[-1], "approved")

    async def after(journal: Journal) -> None:
        term = make_terminal(host, journal, printer=printer)
        assert await term.reprint()
        assert printer.roll[-1].text == texts[-1] + "\n*** REPRINT ***"
        voided = await term.void(before[0].attempt)       # builds from the JSON request
        assert voided.approved
        await term.sale(300, card=CARDS["chip-ok"])       # new rows in the new format
        assert await term.reprint()
        assert printer.roll[-1].text == printer.roll[-2].text + "\n*** REPRINT ***"

    run_virtual(after(migrated))
    migrated.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT schema_version FROM meta").fetchone() == (SCHEMA_VERSION,)
    stored = [r[0] for r in conn.execute("SELECT receipt FROM attempts ORDER BY id")]
    assert stored[:2] == texts and stored[-1].startswith(RECEIPT_SPEC)


_TEXT = st.text(st.characters(codec="latin-1"), max_size=30)   # incl. the separators \x1e \x1f
_VALUE = st.one_of(_TEXT, st.binary(max_size=40), st.dictionaries(st.sampled_from(["60.1", "60.2"]), _TEXT))


@given(mti=st.sampled_from(["0200", "0400", "0220", "0800"]),
       fields=st.dictionaries(st.integers(2, 192).filter(lambda n: n not in (65, 129)), _VALUE, max_size=25))
def test_request_encoding_round_trips_without_secrets(mti: str, fields: dict) -> None:
    text = encode_fields(Message(mti, fields))
    back = decode_fields(text)
    assert back.mti == mti
    assert back.fields == {n: v for n, v in fields.items() if n not in (35, 36, 45, 52, 53, 64, 128)}
    for secret in (35, 36, 45, 52, 53, 64, 128):
        value = fields.get(secret)
        if isinstance(value, str) and len(value) > 8:
            assert value not in text
