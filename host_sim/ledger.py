"""The issuer/acquirer ledger: double-entry postings in SQLite, the host's only source of truth.

Why double entry: every movement of money is an *entry* whose postings sum to zero, so money can
neither appear nor vanish, and :meth:`Ledger.check_conservation` can prove it at any moment of a
simulation. Accounts (ids are strings):

- ``capital``            the issuer's funding counterpart of opening balances;
- ``card:<pan>``         cardholder's available funds;
- ``hold:<pan>``         funds held by a pre-authorization;
- ``payable:<mid>``      captured for the merchant, not yet settled;
- ``payout:<mid>``       settled, waiting for (or retrying) the T+1 payout;
- ``bank:<mid>``         the merchant's bank account — money here is *credited* (到账).

Durability: SQLite in WAL mode. In autocommit mode every logical step is one SQLite transaction.
The host switches to *group commit* (:meth:`Ledger.begin_group` ... :meth:`Ledger.commit`): each
logical step runs inside a SAVEPOINT of one open transaction that is committed once per event-loop
tick, and no response leaves before the commit that holds its posting. A crash before that commit
loses only unacknowledged work; the in-memory mirror (balances, transactions, key index) is a
write-through cache rebuilt from SQLite on open and after any rollback.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import operator
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from time import perf_counter
from typing import Any

from iso8583.mask import mask_pan
from iso8583.transactions import TxnKey

CAPITAL = "capital"
#: Request kinds whose approved amount counts toward the card's daily limit.
_DAILY_KINDS = frozenset({"sale", "offline_sale", "completion"})

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cards(
    pan TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, pin_hash TEXT NOT NULL,
    expiry TEXT NOT NULL, daily_limit INTEGER NOT NULL, pin_tries INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS merchants(
    mid TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, bank_account TEXT NOT NULL,
    bank_account_ok INTEGER NOT NULL, terminals TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS terminals(tid TEXT PRIMARY KEY, keys TEXT NOT NULL, signed_on_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS postings(
    id INTEGER PRIMARY KEY, entry INTEGER NOT NULL, txn INTEGER, kind TEXT NOT NULL,
    account TEXT NOT NULL, amount INTEGER NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS txns(
    id INTEGER PRIMARY KEY, tid TEXT NOT NULL, stan TEXT NOT NULL, ref TEXT NOT NULL,
    kind TEXT NOT NULL, mti TEXT NOT NULL, mid TEXT NOT NULL, pan TEXT NOT NULL,
    amount INTEGER NOT NULL, rc TEXT NOT NULL, extra TEXT NOT NULL, fingerprint TEXT NOT NULL,
    batch TEXT NOT NULL, status TEXT NOT NULL, cardholder_debit INTEGER NOT NULL,
    hold INTEGER NOT NULL, merchant_credit INTEGER NOT NULL, original INTEGER,
    reversed_at TEXT, settlement TEXT, created_at TEXT NOT NULL, dup_of INTEGER, day TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reversals(
    id INTEGER PRIMARY KEY, tid TEXT NOT NULL, stan TEXT NOT NULL, ref TEXT NOT NULL,
    status TEXT NOT NULL, rc TEXT NOT NULL, txn INTEGER, received_at TEXT NOT NULL,
    UNIQUE(tid, stan, ref));
CREATE TABLE IF NOT EXISTS settlements(
    id TEXT PRIMARY KEY, mid TEXT NOT NULL, day TEXT NOT NULL, amount INTEGER NOT NULL,
    count INTEGER NOT NULL, created_at TEXT NOT NULL, value_date TEXT NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, first_failed_at TEXT, paid_at TEXT,
    recredit INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS terminal_batches(
    tid TEXT NOT NULL, batch TEXT NOT NULL, status TEXT NOT NULL, host_totals TEXT NOT NULL,
    terminal_totals TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY(tid, batch));
"""


class LedgerError(Exception):
    """The ledger refused an operation or found itself inconsistent (names account/entry)."""


class ConservationError(LedgerError):
    """Money was created or destroyed: the postings of an entry, or of the whole ledger, do not sum to 0."""


def pin_hash(pan: str, pin: str) -> str:
    """Issuers keep a PIN verification value, never the PIN; a salted hash plays that role here."""
    return hashlib.sha256(f"posfault-pvv:{pan}:{pin}".encode()).hexdigest()


def card_account(pan: str) -> str:
    return f"card:{pan}"


def hold_account(pan: str) -> str:
    return f"hold:{pan}"


def payable_account(mid: str) -> str:
    return f"payable:{mid}"


def payout_account(mid: str) -> str:
    return f"payout:{mid}"


def bank_account(mid: str) -> str:
    return f"bank:{mid}"


# CPython 3.11's sqlite3 binds only exact int/float/str/bytearray parameters directly; a None goes
# through the adapter protocol, whose failed ``PrepareProtocol.__adapt__`` lookup formats and
# discards an AttributeError — about 1 µs per None, several per step on the hot path. An identity
# adapter for None (bound as NULL, exactly as before) is found first and costs a third of that.
# Process-wide but neutral; one registered by someone else is left alone.
if (type(None), sqlite3.PrepareProtocol) not in sqlite3.adapters:
    sqlite3.register_adapter(type(None), lambda value: value)


def _iso(at: _dt.datetime) -> str:
    return at.isoformat(timespec="microseconds")


def _from_iso(text: str | None) -> _dt.datetime | None:
    return _dt.datetime.fromisoformat(text) if text else None


# -- records ------------------------------------------------------------------------------------
@dataclass(slots=True)
class Card:
    """Issuer side of a card (the cardholder account is ``card:<pan>`` in the postings)."""

    pan: str
    name: str
    status: str              # active | blocked | lost | stolen | expired
    pin_hash: str
    expiry: str              # YYMM
    daily_limit: int
    pin_tries: int = 0

    def __repr__(self) -> str:
        return f"Card({self.name!r}, {mask_pan(self.pan)}, status={self.status!r})"


@dataclass(slots=True)
class Merchant:
    mid: str
    name: str
    status: str              # active | frozen
    bank_account: str
    bank_account_ok: bool
    terminals: list[str] = field(default_factory=list)


@dataclass(slots=True)
class TxnRow:
    """One financial or inquiry request the host answered (mutable mirror of a ``txns`` row)."""

    id: int
    tid: str
    stan: str
    ref: str
    kind: str                # TxnType value
    mti: str
    mid: str
    pan: str
    amount: int
    rc: str
    extra: dict[str, Any]    # response fields to replay to a retransmission (37, 38, 54 ...)
    fingerprint: str
    batch: str
    status: str              # approved | declined | reversed | voided | completed | reversed_before_arrival
    cardholder_debit: int
    hold: int
    merchant_credit: int
    original: int | None
    reversed_at: str | None
    settlement: str | None
    created_at: str
    dup_of: int | None
    day: str

    @property
    def key(self) -> TxnKey:
        return TxnKey(self.tid, self.stan, self.ref)


@dataclass(frozen=True, slots=True)
class LedgerTxn:
    """What the oracle reads per transaction key (docs/CONTRACTS.md §6).

    ``cardholder_debit`` is the cardholder's *net* debit caused by this request right now (sale
    minus its reversal/void; negative for a refund; includes every duplicate debit when duplicate
    detection is off — ``times_posted`` then exceeds 1). ``hold`` is what a pre-authorization still
    holds. ``merchant_credit`` is what this request owes the merchant; ``merchant_credited_at`` is when
    the payout that carried it reached the merchant's bank (None while pending or failed).
    """

    key: TxnKey
    kind: str
    mti: str
    mid: str
    pan: str                 # masked
    amount: int
    rc: str
    approved: bool
    status: str
    cardholder_debit: int
    hold: int
    reversed: bool
    reversed_at: _dt.datetime | None
    batch: str
    settled_batch: str | None      # host settlement id (``<day>/<mid>``) once settled
    merchant_credit: int
    merchant_credited_at: _dt.datetime | None
    created_at: _dt.datetime
    times_posted: int = 1


@dataclass(frozen=True, slots=True)
class ReversalRow:
    tid: str
    stan: str
    ref: str
    status: str              # applied | unknown_original | late_original_blocked | rejected_settled | ignored
    rc: str
    txn: int | None
    received_at: str


@dataclass(slots=True)
class Settlement:
    id: str
    mid: str
    day: str
    amount: int
    count: int
    created_at: str
    value_date: str
    status: str              # pending | paid | failed
    attempts: int
    last_error: str | None
    first_failed_at: str | None
    paid_at: str | None
    recredit: bool


class _Step:
    """The context manager behind :meth:`Ledger.step` (a class: cheaper than a generator per request)."""

    __slots__ = ("ledger",)

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def __enter__(self) -> None:
        self.ledger._depth += 1

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        ledger = self.ledger
        if exc_type is not None:
            ledger._depth = 0
            ledger.rollback()
            return
        ledger._depth -= 1
        if ledger._depth == 0 and not ledger._group:
            ledger.commit()


_TXN_COLUMNS = [f.name for f in TxnRow.__dataclass_fields__.values()]  # type: ignore[attr-defined]
_ROW_VALUES = operator.attrgetter(*_TXN_COLUMNS)
_EXTRA_AT = _TXN_COLUMNS.index("extra")
_NULLABLE = ("original", "reversed_at", "settlement", "dup_of")
_NULLABLE_VALUES = operator.attrgetter(*_NULLABLE)
_NULLS = (None,) * len(_NULLABLE)
#: A NULL-free new row: its columns but the nullable ones, ``extra`` (encoded) last.
_FRESH_COLUMNS = [name for name in _TXN_COLUMNS if name not in (*_NULLABLE, "extra")] + ["extra"]
_FRESH_VALUES = operator.attrgetter(*_FRESH_COLUMNS[:-1])
_FRESH_ID = _FRESH_COLUMNS.index("id")
_FRESH_SQL = f"INSERT INTO txns({', '.join(_FRESH_COLUMNS)}) VALUES ({','.join('?' * len(_FRESH_COLUMNS))})"
#: One two-legged entry as its two posting rows (source first, as ``post`` orders them).
_TRANSFER_SQL = ("INSERT INTO postings(entry, txn, kind, account, amount, at)"
                 " VALUES (?1, ?2, ?3, ?4, -?6, ?7), (?1, ?2, ?3, ?5, ?6, ?7)")
#: A new request row and its two-legged entry as ONE statement: an INSERT into a TEMP view whose
#: INSTEAD OF trigger writes the row and both postings (source first, as ``transfer`` orders them).
#: Outside BEGIN..COMMIT the statement is its own transaction, atomic as a statement always is: the
#: commit of a lone approval (every sale of a simulation) is one ``execute`` instead of four.
_PAIR_EXTRA = ("entry", "entry_kind", "source", "target", "moved", "moved_at")
_PAIR_COLUMNS = [*_FRESH_COLUMNS, *_PAIR_EXTRA]
_PAIR_SCHEMA = (
    f"CREATE TEMP VIEW IF NOT EXISTS approval_entry({', '.join(_PAIR_COLUMNS)}) AS SELECT "
    + ", ".join("NULL" for _ in _PAIR_COLUMNS),
    "CREATE TEMP TRIGGER IF NOT EXISTS approval_entry_insert INSTEAD OF INSERT ON approval_entry BEGIN"
    f" INSERT INTO txns({', '.join(_FRESH_COLUMNS)}) VALUES ({', '.join('NEW.' + c for c in _FRESH_COLUMNS)});"
    " INSERT INTO postings(entry, txn, kind, account, amount, at) VALUES"
    " (NEW.entry, NEW.id, NEW.entry_kind, NEW.source, -NEW.moved, NEW.moved_at),"
    " (NEW.entry, NEW.id, NEW.entry_kind, NEW.target, NEW.moved, NEW.moved_at); END",
)
_PAIR_SQL = f"INSERT INTO approval_entry VALUES ({','.join('?' * len(_PAIR_COLUMNS))})"
#: The same for the commonest commit, one approval just recorded by ``record_approval`` (unchanged
#: since): what an approval always holds (rc 00, approved, merchant credit = cardholder debit, the
#: entry moving the amount at the row's time) is written by the trigger, not bound (a str parameter
#: costs ~0.9k instructions to bind).
_APPROVAL_COLUMNS = ("id", "tid", "stan", "ref", "kind", "mti", "mid", "pan", "amount", "extra", "fingerprint",
                     "batch", "debit", "hold", "created_at", "day", "entry", "entry_kind", "source", "target")
_APPROVAL_SCHEMA = (
    f"CREATE TEMP VIEW IF NOT EXISTS approval({', '.join(_APPROVAL_COLUMNS)}) AS SELECT "
    + ", ".join("NULL" for _ in _APPROVAL_COLUMNS),
    "CREATE TEMP TRIGGER IF NOT EXISTS approval_insert INSTEAD OF INSERT ON approval BEGIN"
    " INSERT INTO txns(id, tid, stan, ref, kind, mti, mid, pan, amount, rc, extra, fingerprint, batch, status,"
    " cardholder_debit, hold, merchant_credit, created_at, day) VALUES (NEW.id, NEW.tid, NEW.stan, NEW.ref,"
    " NEW.kind, NEW.mti, NEW.mid, NEW.pan, NEW.amount, '00', NEW.extra, NEW.fingerprint, NEW.batch, 'approved',"
    " NEW.debit, NEW.hold, NEW.debit, NEW.created_at, NEW.day);"
    " INSERT INTO postings(entry, txn, kind, account, amount, at) VALUES"
    " (NEW.entry, NEW.id, NEW.entry_kind, NEW.source, -NEW.amount, NEW.created_at),"
    " (NEW.entry, NEW.id, NEW.entry_kind, NEW.target, NEW.amount, NEW.created_at); END",
)
_APPROVAL_SQL = f"INSERT INTO approval VALUES ({','.join('?' * len(_APPROVAL_COLUMNS))})"
#: The same again, narrowed to the two shapes the host records on every sale and pre-authorization:
#: per kind, a view whose trigger also writes the entry kind and both accounts (``card:<pan>`` to
#: ``payable:<mid>`` or ``hold:<pan>``, concatenated by SQLite: cheaper than binding them), and a
#: statement per (kind, MTI, batch) with those two as SQL literals. 12 parameters instead of 20,
#: 9 of them str instead of 15; what is stored is the same text, column for column.
_SHAPED_KINDS = {   # kind -> entry kind, cardholder debit, hold, target account expression
    "sale": ("sale", "NEW.amount", "0", "'payable:' || NEW.mid"),
    "preauth": ("preauth_hold", "0", "NEW.amount", "'hold:' || NEW.pan"),
}
_SHAPED_COLUMNS = ("id", "tid", "stan", "ref", "mti", "mid", "pan", "amount", "extra", "fingerprint", "batch",
                   "created_at", "day", "entry")
_SHAPED_SCHEMA = tuple(
    statement
    for kind, (entry_kind, debit, hold, target) in _SHAPED_KINDS.items()
    for statement in (
        f"CREATE TEMP VIEW IF NOT EXISTS approval_{kind}({', '.join(_SHAPED_COLUMNS)}) AS SELECT "
        + ", ".join("NULL" for _ in _SHAPED_COLUMNS),
        f"CREATE TEMP TRIGGER IF NOT EXISTS approval_{kind}_insert INSTEAD OF INSERT ON approval_{kind} BEGIN"
        " INSERT INTO txns(id, tid, stan, ref, kind, mti, mid, pan, amount, rc, extra, fingerprint, batch, status,"
        " cardholder_debit, hold, merchant_credit, created_at, day) VALUES (NEW.id, NEW.tid, NEW.stan, NEW.ref,"
        f" '{kind}', NEW.mti, NEW.mid, NEW.pan, NEW.amount, '00', NEW.extra, NEW.fingerprint, NEW.batch, 'approved',"
        f" {debit}, {hold}, {debit}, NEW.created_at, NEW.day);"
        " INSERT INTO postings(entry, txn, kind, account, amount, at) VALUES"
        f" (NEW.entry, NEW.id, '{entry_kind}', 'card:' || NEW.pan, -NEW.amount, NEW.created_at),"
        f" (NEW.entry, NEW.id, '{entry_kind}', {target}, NEW.amount, NEW.created_at); END",
    )
)
#: (kind, mti, batch) -> the shaped statement, "" when that shape has none (see :func:`_shaped_sql`)
_SHAPED_SQL: dict[tuple[str, str, str], str] = {}


def _shaped_sql(kind: str, mti: str, batch: str) -> str:
    """The statement inserting a ``kind`` approval with this MTI and batch as literals ("" if none:
    only the kinds of :data:`_SHAPED_KINDS`, and only digits are ever written into SQL text)."""
    key = (kind, mti, batch)
    sql = _SHAPED_SQL.get(key)
    if sql is None:
        sql = ""
        if kind in _SHAPED_KINDS and len(mti) == 4 and mti.isdigit() and mti.isascii() \
                and (not batch or (batch.isdigit() and batch.isascii())):
            sql = f"INSERT INTO approval_{kind} VALUES (?,?,?,?,'{mti}',?,?,?,?,?,'{batch}',?,?,?)"
        if len(_SHAPED_SQL) >= 256:   # (a batch number per settlement: stay bounded)
            _SHAPED_SQL.clear()
        _SHAPED_SQL[key] = sql
    return sql
_Rows = list[list[Any]]
#: What one commit writes: (new rows without NULLs, other new rows, updated rows), (postings,
#: transfers, new NULL-free rows each with its transfer), other statements.
_Batch = tuple[tuple[list[tuple[Any, ...]], _Rows, _Rows],
               tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]],
               list[tuple[str, tuple[Any, ...]]]]


def _json_encoder() -> Any:
    """``json.dumps`` (default options, identical text) without its per-call Python wrappers: the
    extra fields of every request row are encoded on the commit path."""
    from json import encoder

    make = getattr(encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has the C encoder
        return json.dumps
    encode = make(None, None, encoder.encode_basestring_ascii, None, ": ", ", ", False, False, True)
    return lambda obj: "".join(encode(obj, 0))


_dumps = _json_encoder()


def _extra_json(extra: dict[str, Any]) -> str:
    """The JSON text of a row's replayable response fields. The usual ``{"37": RRN, "38": auth
    code}`` of an approval is formatted directly (digits need no escaping; the same text
    ``json.dumps`` gives for that order); anything else goes through the JSON encoder."""
    if len(extra) == 2:
        rrn = extra.get("37")
        auth = extra.get("38")
        if rrn.__class__ is str and auth.__class__ is str and rrn.isdigit() and auth.isdigit() \
                and rrn.isascii() and auth.isascii():
            return f'{{"37": "{rrn}", "38": "{auth}"}}'
    return _dumps(extra)


def _pair(fresh: list[tuple[Any, ...]], transfers: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Each transfer joined to its new row as :data:`_PAIR_SQL` parameters, taking those rows out of
    ``fresh``; [] (``fresh`` untouched) unless every transfer belongs to a row of ``fresh``.

    Posting ids are given in insertion order: the pairs keep the transfers' order, and are written
    after any other posting, as the transfers were.
    """
    at = {values[_FRESH_ID]: i for i, values in enumerate(fresh)}
    paired = []
    used = set()
    for transfer in transfers:
        i = at.get(transfer[1])
        if i is None or i in used:
            return []
        entry, _, kind, source, target, amount, moved_at = transfer
        paired.append((*fresh[i], entry, kind, source, target, amount, moved_at))
        used.add(i)
    fresh[:] = [values for i, values in enumerate(fresh) if i not in used]
    return paired


class _Pending:
    """A commit handed to the writer thread: done once ``wait()`` returns; ``error`` if it failed.

    Deliberately not a ``concurrent.futures.Future``: the writer thread holds the GIL for as little
    Python as possible (every bytecode it runs is one the event loop waits for), so completion is a
    C-level lock release plus one callback.
    """

    __slots__ = ("_lock", "done_at", "error", "on_done")

    def __init__(self, on_done: Any = None) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.error: BaseException | None = None
        self.on_done = on_done
        self.done_at = 0.0   # perf_counter() when the writer thread finished (stage timings)

    def wait(self) -> None:
        """Block until the commit finished; raise its error if it failed."""
        with self._lock:
            pass
        if self.error is not None:
            raise self.error

    def done(self) -> bool:
        return not self._lock.locked()

    def exception(self) -> BaseException | None:
        return self.error


class _Writer:
    """The ledger's single writer thread: runs one commit at a time, in submission order."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self.thread.start()

    def submit(self, fn: Any, on_done: Any = None) -> _Pending:
        pending = _Pending(on_done)
        self.queue.put((fn, pending))
        return pending

    def _run(self) -> None:
        get = self.queue.get
        while True:
            item = get()
            if item is None:
                return
            fn, pending = item
            try:
                fn()
            except BaseException as exc:  # handed to the event loop, which fails the waiting responses
                pending.error = exc
            pending.done_at = perf_counter()
            callback = pending.on_done
            pending._lock.release()
            if callback is not None:
                try:
                    callback(pending)
                except Exception:  # e.g. the event loop already closed: nobody is waiting any more
                    pass

    def shutdown(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=30)


#: Seconds between two background WAL checkpoints (``Ledger.open(checkpoint="background")``).
CHECKPOINT_INTERVAL = 1.0


class _Checkpointer:
    """A thread with its own SQLite connection that checkpoints the WAL, so commits never do.

    PASSIVE checkpoints copy committed WAL frames into the database file (and fsync it) without
    taking the write lock; the writer restarts the WAL from its start once everything is copied.
    """

    def __init__(self, path: str, synchronous: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute(f"PRAGMA synchronous={synchronous}")
        self.conn.execute("PRAGMA wal_autocheckpoint=0")
        self.stopping = threading.Event()
        self.checkpoints = 0
        self.thread = threading.Thread(target=self._run, name="ledger-checkpointer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(CHECKPOINT_INTERVAL):
            try:
                self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self.checkpoints += 1
            except sqlite3.Error:
                pass  # busy or closing: the next round tries again; the WAL stays valid meanwhile

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        try:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass
        self.conn.close()


class Ledger:
    """SQLite-backed double-entry ledger with an in-memory write-through mirror.

    Use :meth:`open`. All methods are synchronous and cheap (memory reads, SQLite writes); the
    host decides when to :meth:`commit` (see module docstring).
    """

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.conn = conn
        self.path = path
        self._group = False          # a group transaction is open
        self._depth = 0              # nesting of step() outside a group
        self._pending_rows: dict[int, TxnRow] = {}
        self._pending_postings: list[tuple[Any, ...]] = []
        #: two-legged entries (entry, txn, kind, source, target, amount, at): one statement, two rows
        self._pending_transfers: list[tuple[Any, ...]] = []
        self._pending_sql: list[tuple[str, tuple[Any, ...]]] = []
        self._writer: _Writer | None = None
        self._writer_future: _Pending | None = None
        self._conn_lock = threading.Lock()
        self._checkpointer: _Checkpointer | None = None
        self.on_rollback: list[Any] = []
        self._step = _Step(self)
        self.write_delay = 0.0
        self._upsert_sql = (f"INSERT OR REPLACE INTO txns({', '.join(_TXN_COLUMNS)}) "
                            f"VALUES ({','.join('?' * len(_TXN_COLUMNS))})")
        self._insert_sql = self._upsert_sql.replace("INSERT OR REPLACE", "INSERT", 1)
        for statement in (*_PAIR_SCHEMA, *_APPROVAL_SCHEMA, *_SHAPED_SCHEMA):   # TEMP: nothing in the file changes
            conn.execute(statement)
        self._cursor = conn.cursor()   # the lone-approval commit's (Connection.execute makes one per call)
        #: (row, statement, parameters) of the approval ``record_approval`` recorded last, while it stands unchanged and uncommitted: the commit then needs no Python work on it
        self._approval: tuple[TxnRow, str, tuple[Any, ...]] | None = None
        self._reload()

    # -- lifecycle -----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str = ":memory:", *, synchronous: str = "FULL", checkpoint: str = "auto") -> Ledger:
        """Open (creating if needed) a ledger file, or ``":memory:"``.

        ``synchronous="FULL"`` makes every commit survive a power cut; ``"NORMAL"`` survives a
        process crash (SIGKILL) but may lose the last commits on power loss (WAL semantics).

        ``checkpoint="background"`` (file ledgers) moves WAL checkpoints off the commit path: by
        default SQLite runs one inside whichever COMMIT crosses 1000 WAL pages, copying them into
        the database file and fsyncing it — tens of milliseconds added to the responses waiting for
        that commit. With "background", a checkpointer thread with its own connection runs a
        PASSIVE checkpoint every :data:`CHECKPOINT_INTERVAL` seconds instead (it never blocks the
        writer); durability is unchanged, the WAL is what makes a commit durable either way.
        """
        if synchronous.upper() not in ("FULL", "NORMAL", "OFF", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL, EXTRA or OFF, got {synchronous!r}")
        if checkpoint not in ("auto", "background"):
            raise ValueError(f"checkpoint must be 'auto' or 'background', got {checkpoint!r}")
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # 1 KiB pages for a new database (a no-op on an existing one): a write transaction first
        # copies each page it changes into the rollback journal (in-memory ledgers) — a sale
        # changes two or three pages, and copying 1 KiB ones measured ~4.6k instructions cheaper
        # per sale than 4 KiB ones. Before journal_mode: a WAL database's page size is fixed.
        conn.execute("PRAGMA page_size=1024")
        if path != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("COMMIT")
        ledger = cls(conn, path)
        if checkpoint == "background" and path != ":memory:" and not path.startswith("file:"):
            conn.execute("PRAGMA wal_autocheckpoint=0")
            ledger._checkpointer = _Checkpointer(path, synchronous.upper())
        return ledger

    def preallocate_wal(self, size: int) -> bool:
        """Give the WAL ``size`` bytes of written zeros, so that commits overwrite it in place.

        Why: with ``synchronous=FULL`` every COMMIT ends in an fdatasync of the WAL. While the WAL
        grows — and under steady load it never restarts, the background checkpoint cannot catch up
        with a writer that keeps appending — each fdatasync must also journal the new file size (an
        ext4 journal commit, queued behind every other process's fsyncs): measured here, COMMIT of
        a 25-sale group p50 0.6-0.7 ms, p99 1.3-2.3 ms; overwriting preallocated blocks 0.3-0.4 ms,
        p99 0.5-1.0 ms. Zeros are real writes, not ``fallocate`` (unwritten extents would be
        converted, and journaled, on first write).

        Safe for recovery: SQLite reads WAL frames only up to the first one whose salt or checksum
        does not match, and a zero header is no WAL at all — exactly as with the stale frames a
        restarted WAL leaves behind. Done only when the WAL is empty after a TRUNCATE checkpoint and
        under the write lock (BEGIN IMMEDIATE), so no other connection is writing frames meanwhile;
        returns False (and changes nothing) otherwise, e.g. while another process reads the ledger.
        The file shrinks back when the last connection closes (SQLite deletes the WAL).
        """
        if size <= 0 or self.path == ":memory:" or self.path.startswith("file:"):
            return False
        self.flush_writes()
        self._wait_writer()
        c = self.conn
        with self._conn_lock:
            busy, log, _ = c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy or log:
                return False
            wal = self.path + "-wal"
            c.execute("BEGIN IMMEDIATE")
            try:
                try:
                    fd = os.open(wal, os.O_WRONLY)
                except FileNotFoundError:
                    return False
                try:
                    if os.fstat(fd).st_size != 0:
                        return False
                    chunk = bytes(min(size, 1 << 20))
                    written = 0
                    while written < size:
                        written += os.write(fd, chunk[:size - written])
                    os.fsync(fd)
                finally:
                    os.close(fd)
            finally:
                c.execute("ROLLBACK")
        return True

    def close(self) -> None:
        """Commit nothing more: uncommitted steps are dropped (as in a crash); waits for the writer."""
        try:
            self._wait_writer()
        except Exception:
            pass
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        self.conn.close()

    def _reload(self) -> None:
        """Rebuild the in-memory mirror from what SQLite has durably stored."""
        self._approval = None
        self._pending_rows = {}
        self._pending_postings = []
        self._pending_transfers = []
        self._pending_sql = []
        c = self.conn
        self._balances: dict[str, int] = {}
        for account, total in c.execute("SELECT account, SUM(amount) FROM postings GROUP BY account"):
            self._balances[account] = int(total)
        self._cards = {r[0]: Card(r[0], r[1], r[2], r[3], r[4], int(r[5]), int(r[6]))
                       for r in c.execute("SELECT pan, name, status, pin_hash, expiry, daily_limit, pin_tries FROM cards")}
        self._merchants = {r[0]: Merchant(r[0], r[1], r[2], r[3], bool(r[4]), json.loads(r[5]))
                           for r in c.execute("SELECT mid, name, status, bank_account, bank_account_ok, terminals FROM merchants")}
        self._terminal_of: dict[str, str] = {t: m.mid for m in self._merchants.values() for t in m.terminals}
        self._terminal_keys = {r[0]: json.loads(r[1]) for r in c.execute("SELECT tid, keys FROM terminals")}
        self._txns: dict[int, TxnRow] = {}
        self._by_key: dict[tuple[str, str, str], int] = {}
        self._by_fingerprint: dict[str, int] = {}
        self._daily: dict[tuple[str, str], int] = {}
        cols = ", ".join(_TXN_COLUMNS)
        for row in c.execute(f"SELECT {cols} FROM txns ORDER BY id"):
            values = dict(zip(_TXN_COLUMNS, row))
            values["extra"] = json.loads(values["extra"])
            self._index(TxnRow(**values))
        self._reversals = {(r[0], r[1], r[2]): ReversalRow(*r)
                           for r in c.execute("SELECT tid, stan, ref, status, rc, txn, received_at FROM reversals")}
        self._next_txn = (c.execute("SELECT MAX(id) FROM txns").fetchone()[0] or 0) + 1
        self._taken_upto = self._next_txn   # rows with ids from here on are not in SQLite yet
        self._next_entry = (c.execute("SELECT MAX(entry) FROM postings").fetchone()[0] or 0) + 1
        self._meta = dict(c.execute("SELECT key, value FROM meta"))
        self._settlements = {r[0]: Settlement(*r[:12], bool(r[12])) for r in c.execute(
            "SELECT id, mid, day, amount, count, created_at, value_date, status, attempts, last_error,"
            " first_failed_at, paid_at, recredit FROM settlements")}
        self._terminal_batches = {(r[0], r[1]): {"status": r[2], "host_totals": json.loads(r[3]),
                                                 "terminal_totals": json.loads(r[4]), "at": r[5]}
                                  for r in c.execute("SELECT tid, batch, status, host_totals, terminal_totals, at"
                                                     " FROM terminal_batches")}

    def _index(self, row: TxnRow) -> None:
        self._txns[row.id] = row
        if row.dup_of is None:
            self._by_key[(row.tid, row.stan, row.ref)] = row.id
        if row.fingerprint and row.dup_of is None and row.status == "approved":
            self._by_fingerprint.setdefault(row.fingerprint, row.id)
        if row.kind in _DAILY_KINDS and row.rc == "00":
            k = (row.pan, row.day)
            self._daily[k] = self._daily.get(k, 0) + row.amount

    # -- transactions ----------------------------------------------------------------------------
    #
    # Every write is buffered in memory (rows, postings, other statements) and reaches SQLite only in
    # a commit: BEGIN IMMEDIATE, the buffered writes (executemany), COMMIT. Outside a group each
    # logical step commits on its own; inside a group (the host, per event-loop tick) the steps
    # share one commit. A commit can run inline or on the ledger's single writer thread
    # (:meth:`commit_in_background`), so the event loop builds the next group while SQLite fsyncs.
    def begin_group(self) -> None:
        """Defer commits: later steps join one group until :meth:`commit`."""
        self._group = True

    @property
    def in_group(self) -> bool:
        return self._group

    @property
    def has_pending(self) -> bool:
        return bool(self._pending_rows or self._pending_postings or self._pending_transfers or self._pending_sql)

    def _exec(self, sql: str, params: Sequence[Any]) -> None:
        self._pending_sql.append((sql, tuple(params)))

    def _take(self) -> _Batch:
        """Snapshot everything pending as SQL parameters and start a new buffer.

        Rows first recorded since the previous take are plain INSERTs (cheaper than INSERT OR
        REPLACE, and a duplicate id would fail the commit rather than overwrite); rows updated after
        an earlier take are upserts. A new row whose original/reversed_at/settlement/dup_of are all
        NULL (nearly every request) is inserted without those columns: CPython binds a None through
        the adapter protocol, four Python calls per row.
        """
        self._approval = None
        extra_at = _EXTRA_AT
        values_of = _ROW_VALUES
        fresh_values = _FRESH_VALUES
        nullable = _NULLABLE_VALUES
        nulls = _NULLS
        extra_json = _extra_json
        first_new = self._taken_upto
        fresh: list[tuple[Any, ...]] = []
        inserts: list[list[Any]] = []
        upserts: list[list[Any]] = []
        for row in self._pending_rows.values():
            if row.id >= first_new and nullable(row) == nulls:
                fresh.append((*fresh_values(row), extra_json(row.extra)))
            else:
                v = list(values_of(row))
                v[extra_at] = extra_json(row.extra)
                (inserts if row.id >= first_new else upserts).append(v)
        self._taken_upto = self._next_txn
        transfers = self._pending_transfers
        paired: list[tuple[Any, ...]] = []
        if transfers and len(transfers) <= len(fresh):
            paired = _pair(fresh, transfers)
            if paired:
                transfers = []
        taken = ((fresh, inserts, upserts), (self._pending_postings, transfers, paired), self._pending_sql)
        self._pending_rows, self._pending_postings, self._pending_transfers, self._pending_sql = {}, [], [], []
        return taken

    def _stage(self, batch: _Batch) -> None:
        """BEGIN and write ``batch`` into SQLite's page cache (CPU work, no I/O wait); raises after ROLLBACK."""
        (fresh, inserts, upserts), (postings, transfers, paired), statements = batch
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                c.execute(sql, params)
            if upserts:
                c.executemany(self._upsert_sql, upserts)
            if inserts:
                c.executemany(self._insert_sql, inserts)
            if fresh:
                c.executemany(_FRESH_SQL, fresh)
            if postings:
                c.executemany("INSERT INTO postings(entry, txn, kind, account, amount, at) VALUES (?,?,?,?,?,?)",
                              postings)
            if transfers:
                c.executemany(_TRANSFER_SQL, transfers)
            if paired:
                c.executemany(_PAIR_SQL, paired)
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    def _finish(self) -> None:
        """COMMIT what :meth:`_stage` wrote: the WAL write and fsync, with the GIL released throughout."""
        if self.write_delay:
            # a simulated slow disk, only on the writer thread of a real-time host (``--slow-commit``):
            # widens the window in which a crash finds committed-but-unanswered work
            time.sleep(self.write_delay)
        c = self.conn
        try:
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    def _write(self, batch: _Batch) -> None:
        """One SQLite transaction holding ``batch``; raises (after ROLLBACK) if it cannot commit."""
        with self._conn_lock:
            self._stage(batch)
            self._finish()

    def _wait_writer(self) -> None:
        future = self._writer_future
        if future is not None:
            self._writer_future = None
            future.wait()

    def commit(self) -> None:
        """Make every step so far durable (one SQLite transaction); ends the group."""
        self._wait_writer()
        self._group = False
        rows = self._pending_rows
        if len(rows) == 1 and len(self._pending_transfers) == 1 and not self._pending_postings \
                and not self._pending_sql and not self.write_delay:
            approval = self._approval
            if approval is not None and approval[0].id in rows:   # recorded, unchanged since
                sql, params = approval[1], approval[2]
                self._approval = None
                self._pending_rows = {}
                self._pending_transfers = []
                self._taken_upto = self._next_txn
            else:
                sql, params = _PAIR_SQL, self._lone_approval(rows)
            if params is not None:
                # one request row and its entry: one statement, its own (atomic) transaction
                try:
                    with self._conn_lock:
                        if self.conn.in_transaction:   # never expected: it must not commit on its own then
                            raise LedgerError("ledger connection already inside a transaction")
                        self._cursor.execute(sql, params)
                except BaseException:
                    self._reload()
                    self._run_rollback_hooks()
                    raise
                return
        if self.has_pending:
            batch = self._take()
            try:
                self._write(batch)
            except BaseException:
                self._reload()
                self._run_rollback_hooks()
                raise

    def _lone_approval(self, rows: dict[int, TxnRow]) -> tuple[Any, ...] | None:
        """The :data:`_PAIR_SQL` parameters of the one pending row and its one transfer, taking them
        out of the buffers; None (nothing taken) unless they are a new NULL-free row and its entry."""
        for row in rows.values():
            transfer = self._pending_transfers[0]
            if transfer[1] != row.id or row.id < self._taken_upto or _NULLABLE_VALUES(row) != _NULLS:
                return None
            self._pending_rows = {}
            self._pending_transfers = []
            self._taken_upto = self._next_txn
            entry, _, kind, source, target, amount, at = transfer
            return (*_FRESH_VALUES(row), _extra_json(row.extra), entry, kind, source, target, amount, at)
        return None

    def commit_in_background(self, on_done: Any = None) -> _Pending:
        """Hand everything pending to the writer thread; ``on_done(pending)`` runs *on the writer
        thread* once it is committed (or failed: ``pending.error``).

        The caller (the host) must not start another before this one completes; reads of the
        mirror stay valid meanwhile, and new steps buffer for the next commit.
        """
        self._group = False
        batch = self._take()
        if self._writer is None:
            self._writer = _Writer()
        # stage on the calling thread: binding parameters is CPU work under the GIL, which on the
        # writer thread would only fight the event loop for it (measured: slower); only COMMIT — the
        # WAL write and fsync, GIL released — runs on the writer thread
        self._conn_lock.acquire()
        try:
            self._stage(batch)
        except BaseException:
            self._conn_lock.release()
            raise

        def finish() -> None:
            try:
                self._finish()
            finally:
                self._conn_lock.release()

        future = self._writer.submit(finish, on_done)
        self._writer_future = future
        return future

    def writer_done(self, future: _Pending) -> None:
        """Called by the host when a background commit finished (success or failure)."""
        if self._writer_future is future:
            self._writer_future = None
        if future.exception() is not None:
            # the durable state is what SQLite has: rebuild the mirror and drop everything uncommitted
            self._pending_rows, self._pending_postings, self._pending_transfers, self._pending_sql = {}, [], [], []
            self._reload()
            self._run_rollback_hooks()

    def flush_writes(self) -> None:
        """Commit anything pending so that SQLite reflects every step (used before reading SQLite)."""
        self._wait_writer()
        if self.has_pending:
            group = self._group
            self.commit()
            self._group = group

    def rollback(self) -> None:
        """Drop uncommitted steps (a crash does the same) and rebuild the mirror from SQLite."""
        try:
            self._wait_writer()   # a commit already handed to SQLite completes, as it would in a crash
        except Exception:
            pass
        self._group = False
        self._depth = 0
        self._reload()
        self._run_rollback_hooks()

    def _run_rollback_hooks(self) -> None:
        for hook in list(self.on_rollback):
            hook()

    def step(self) -> _Step:
        """One logical step, atomic on its own (use as ``with ledger.step():``).

        Outside a group it commits when the outermost step ends. Inside a group it joins the
        group's commit; should it fail half-way, everything uncommitted is dropped (no response of
        that group has left yet: they all wait for its commit) and ``on_rollback`` hooks run so that
        the host fails the waiting responses.
        """
        return self._step

    # -- reference data ----------------------------------------------------------------------------
    def add_card(self, card: Card, balance: int, at: _dt.datetime) -> None:
        """Create (or replace the reference data of) a card; fund a new account from ``capital``."""
        with self.step():
            new = card.pan not in self._cards
            self._exec(
                "INSERT OR REPLACE INTO cards(pan, name, status, pin_hash, expiry, daily_limit, pin_tries)"
                " VALUES (?,?,?,?,?,?,?)",
                (card.pan, card.name, card.status, card.pin_hash, card.expiry, card.daily_limit, card.pin_tries))
            self._cards[card.pan] = card
            if new and balance:
                self.post("opening", None, [(CAPITAL, -balance), (card_account(card.pan), balance)], at)

    def add_merchant(self, merchant: Merchant) -> None:
        with self.step():
            self._exec(
                "INSERT OR REPLACE INTO merchants(mid, name, status, bank_account, bank_account_ok, terminals)"
                " VALUES (?,?,?,?,?,?)",
                (merchant.mid, merchant.name, merchant.status, merchant.bank_account,
                 int(merchant.bank_account_ok), json.dumps(merchant.terminals)))
            self._merchants[merchant.mid] = merchant
            for tid in merchant.terminals:
                self._terminal_of[tid] = merchant.mid

    def card(self, pan: str) -> Card | None:
        return self._cards.get(pan)

    def cards(self) -> list[Card]:
        return list(self._cards.values())

    def merchant(self, mid: str) -> Merchant | None:
        return self._merchants.get(mid)

    def merchants(self) -> list[Merchant]:
        return list(self._merchants.values())

    def merchant_of_terminal(self, tid: str) -> str | None:
        return self._terminal_of.get(tid)

    def update_card(self, pan: str, **changes: Any) -> Card:
        """Change status / pin_tries / daily_limit / expiry of a card (e.g. a scenario blocks it)."""
        card = self._cards.get(pan)
        if card is None:
            raise LedgerError(f"no card {mask_pan(pan)}")
        updated = replace(card, **changes)
        with self.step():
            self._exec("UPDATE cards SET status=?, expiry=?, daily_limit=?, pin_tries=? WHERE pan=?",
                              (updated.status, updated.expiry, updated.daily_limit, updated.pin_tries, pan))
            self._cards[pan] = updated
        return updated

    def update_merchant(self, mid: str, **changes: Any) -> Merchant:
        """Unfreeze a merchant or fix its bank details (``status="active"``, ``bank_account_ok=True``)."""
        merchant = self._merchants.get(mid)
        if merchant is None:
            raise LedgerError(f"no merchant {mid!r}")
        updated = replace(merchant, **changes)
        with self.step():
            self._exec("UPDATE merchants SET status=?, bank_account=?, bank_account_ok=? WHERE mid=?",
                              (updated.status, updated.bank_account, int(updated.bank_account_ok), mid))
            self._merchants[mid] = updated
        return updated

    def terminal_keys(self, tid: str) -> dict[str, str] | None:
        """Working keys (hex, clear — the host's HSM stand-in) delivered at the last sign-on."""
        return self._terminal_keys.get(tid)

    def set_terminal_keys(self, tid: str, keys: dict[str, str], at: _dt.datetime) -> None:
        with self.step():
            self._exec("INSERT OR REPLACE INTO terminals(tid, keys, signed_on_at) VALUES (?,?,?)",
                              (tid, json.dumps(keys), _iso(at)))
            self._terminal_keys[tid] = dict(keys)

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        return self._meta.get(key, default)

    def set_meta(self, key: str, value: str) -> None:
        with self.step():
            self._exec("INSERT OR REPLACE INTO meta(key, value) VALUES (?,?)", (key, value))
            self._meta[key] = value

    # -- money ----------------------------------------------------------------------------------
    def balance(self, account: str) -> int:
        return self._balances.get(account, 0)

    def balances(self) -> dict[str, int]:
        return dict(self._balances)

    def post(self, kind: str, txn: int | None, moves: Sequence[tuple[str, int]], at: _dt.datetime | str) -> int:
        """Write one balanced entry (its postings sum to zero) and return its number.

        ``at`` is a datetime or its ISO text (microseconds), as the host already has it.

        Must run inside :meth:`step` (or a group) so the entry and whatever it belongs to are atomic.
        """
        total = 0
        for _, amount in moves:
            total += amount
        if total != 0:
            shown = ", ".join(f"{_masked_account(a)} {v:+d}" for a, v in moves)
            raise ConservationError(f"entry {kind!r} does not balance: {shown}")
        entry = self._next_entry
        stamp = at if isinstance(at, str) else _iso(at)
        pending = self._pending_postings
        balances = self._balances
        for account, amount in moves:
            if amount:
                pending.append((entry, txn, kind, account, amount, stamp))
            balances[account] = balances.get(account, 0) + amount
        self._next_entry += 1
        return entry

    def transfer(self, kind: str, txn: int | None, source: str, target: str, amount: int, at: str) -> int:
        """:meth:`post` of the two-legged entry ``source -amount, target +amount`` (balanced by
        construction), in that posting order; ``at`` is ISO text. Returns the entry number."""
        entry = self._next_entry
        if amount:
            self._pending_transfers.append((entry, txn, kind, source, target, amount, at))
        balances = self._balances
        balances[source] = balances.get(source, 0) - amount
        balances[target] = balances.get(target, 0) + amount
        self._next_entry = entry + 1
        return entry

    def reversal_at(self, key: tuple[str, str, str]) -> ReversalRow | None:
        """:meth:`reversal` by the key's ``(tid, stan, ref)`` tuple."""
        return self._reversals.get(key)

    # -- transactions (requests) -------------------------------------------------------------------
    def find(self, key: TxnKey) -> TxnRow | None:
        """The first request recorded under ``key`` (its duplicates are separate rows when detection is off)."""
        txn_id = self._by_key.get((key.tid, key.stan, key.ref))
        return None if txn_id is None else self._txns[txn_id]

    def find_at(self, key: tuple[str, str, str]) -> TxnRow | None:
        """:meth:`find` by the key's ``(tid, stan, ref)`` tuple (the hot path has it, not a TxnKey)."""
        txn_id = self._by_key.get(key)
        return None if txn_id is None else self._txns[txn_id]

    def find_fingerprint(self, fingerprint: str) -> TxnRow | None:
        txn_id = self._by_fingerprint.get(fingerprint)
        return None if txn_id is None else self._txns[txn_id]

    def txn(self, txn_id: int) -> TxnRow:
        return self._txns[txn_id]

    def rows(self) -> list[TxnRow]:
        return list(self._txns.values())

    def daily_debits(self, pan: str, day: str) -> int:
        return self._daily.get((pan, day), 0)

    def record(self, *, tid: str, stan: str, ref: str, kind: str, mti: str, mid: str, pan: str, amount: int,
               rc: str, extra: dict[str, Any], fingerprint: str, batch: str, status: str, cardholder_debit: int,
               hold: int, merchant_credit: int, created_at: str, day: str, original: int | None = None,
               reversed_at: str | None = None, settlement: str | None = None, dup_of: int | None = None) -> TxnRow:
        """Insert a request row; must run inside :meth:`step` together with its postings."""
        row = TxnRow(self._next_txn, tid, stan, ref, kind, mti, mid, pan, amount, rc, extra, fingerprint, batch,
                     status, cardholder_debit, hold, merchant_credit, original, reversed_at, settlement,
                     created_at, dup_of, day)
        self._pending_rows[row.id] = row
        self._next_txn += 1
        self._index(row)
        return row

    def record_new(self, tid: str, stan: str, ref: str, kind: str, mti: str, mid: str, pan: str, amount: int,
                   rc: str, extra: dict[str, Any], fingerprint: str, batch: str, status: str, cardholder_debit: int,
                   hold: int, merchant_credit: int, created_at: str, day: str, dup_of: int | None) -> TxnRow:
        """:meth:`record` with positional arguments and no original/reversal/settlement (a new request):
        the host's per-sale path, where 20 keyword arguments cost more than the row itself."""
        row = TxnRow(self._next_txn, tid, stan, ref, kind, mti, mid, pan, amount, rc, extra, fingerprint, batch,
                     status, cardholder_debit, hold, merchant_credit, None, None, None, created_at, dup_of, day)
        self._pending_rows[row.id] = row
        self._next_txn += 1
        self._index(row)
        return row

    def record_approval(self, key: tuple[str, str, str], kind: str, mti: str, mid: str, pan: str, amount: int,
                        extra: dict[str, Any], fingerprint: str, batch: str, debit: int, hold: int, created_at: str,
                        day: str, dup_of: int | None, entry_kind: str, source: str, target: str,
                        extra_text: str | None = None) -> TxnRow:
        """An approved request and its entry (``source -amount, target +amount``), as one step.

        The host's per-sale call: :meth:`record_new` plus :meth:`transfer` without a step context
        (nothing between them can fail half-way: both only append to the pending buffers), and the
        commit when no group is open, as :meth:`step` would. ``debit`` is both the cardholder debit
        and the merchant credit (a sale's amount; 0 for a pre-authorization, which ``hold`` s it).
        ``extra_text``, when the caller has it, must be exactly ``_extra_json(extra)`` (the stored text).
        """
        row_id = self._next_txn
        tid, stan, ref = key
        row = TxnRow(row_id, tid, stan, ref, kind, mti, mid, pan, amount, "00", extra, fingerprint, batch,
                     "approved", debit, hold, debit, None, None, None, created_at, dup_of, day)
        self._pending_rows[row_id] = row
        self._next_txn = row_id + 1
        # _index, for an approved new row
        self._txns[row_id] = row
        if dup_of is None:
            self._by_key[key] = row_id
            if fingerprint and fingerprint not in self._by_fingerprint:
                self._by_fingerprint[fingerprint] = row_id
        if kind in _DAILY_KINDS:
            daily = self._daily
            k = (pan, day)
            daily[k] = daily.get(k, 0) + amount
        # transfer(entry_kind, row_id, source, target, amount, created_at), inline
        entry = self._next_entry
        self._next_entry = entry + 1
        balances = self._balances
        balances[source] = balances.get(source, 0) - amount
        balances[target] = balances.get(target, 0) + amount
        if amount:
            self._pending_transfers.append((entry, row_id, entry_kind, source, target, amount, created_at))
            if dup_of is None:
                if extra_text is None:
                    extra_text = _extra_json(extra)
                sql = _SHAPED_SQL.get((kind, mti, batch))
                if sql is None:
                    sql = _shaped_sql(kind, mti, batch)
                # the shaped statement, when it writes exactly this entry (what the host always asks)
                if sql and source == "card:" + pan and (
                        (kind == "sale" and entry_kind == "sale" and debit == amount and not hold
                         and target == "payable:" + mid)
                        or (kind == "preauth" and entry_kind == "preauth_hold" and not debit and hold == amount
                            and target == "hold:" + pan)):
                    self._approval = (row, sql, (row_id, tid, stan, ref, mid, pan, amount, extra_text, fingerprint,
                                                 created_at, day, entry))
                else:
                    self._approval = (row, _APPROVAL_SQL, (row_id, tid, stan, ref, kind, mti, mid, pan, amount,
                                                           extra_text, fingerprint, batch, debit, hold, created_at,
                                                           day, entry, entry_kind, source, target))
        if not self._group and not self._depth:
            self.commit()
        return row

    def update(self, row: TxnRow, **changes: Any) -> None:
        """Change a request row (status, net debit, hold, settlement ...) in SQLite and in memory."""
        was_approved = row.status == "approved"
        approval = self._approval
        if approval is not None and approval[0] is row:   # its stored form is no longer the prepared one
            self._approval = None
        for name, value in changes.items():
            setattr(row, name, value)
        self._pending_rows[row.id] = row
        if was_approved and row.status != "approved" and self._by_fingerprint.get(row.fingerprint) == row.id:
            del self._by_fingerprint[row.fingerprint]
        if row.kind in ("sale", "offline_sale", "completion") and row.rc == "00" and was_approved \
                and row.status in ("reversed", "voided"):
            k = (row.pan, row.day)
            self._daily[k] = self._daily.get(k, 0) - row.amount

    def authorization_reads(self, key: tuple[str, str, str], mid: str, tid: str, pan: str, day: str,
                            fingerprint: str) -> tuple[ReversalRow | None, Merchant | None, str | None,
                                                       TxnRow | None, Card | None, int, int]:
        """What authorizing a new request reads, in one call (reads only: their order is free): the
        reversal already received for ``key``, the merchant, the terminal's owner, the approved
        request with ``fingerprint``, the card, its available balance and its approved debits of
        ``day`` — :meth:`reversal_at`, :meth:`merchant`, :meth:`merchant_of_terminal`,
        :meth:`find_fingerprint`, :meth:`card`, :meth:`balance` of ``card:<pan>``, :meth:`daily_debits`."""
        twin = self._by_fingerprint.get(fingerprint)
        return (self._reversals.get(key), self._merchants.get(mid), self._terminal_of.get(tid),
                None if twin is None else self._txns[twin], self._cards.get(pan),
                self._balances.get("card:" + pan, 0), self._daily.get((pan, day), 0))

    def next_id(self) -> int:
        """The id the next :meth:`record` will get (lets a caller derive RRN/auth code before recording)."""
        return self._next_txn

    # -- reversals --------------------------------------------------------------------------------
    def reversal(self, key: TxnKey) -> ReversalRow | None:
        """The reversal already received for the original ``key`` (even if the original never arrived)."""
        return self._reversals.get((key.tid, key.stan, key.ref))

    def record_reversal(self, key: TxnKey, status: str, rc: str, txn: int | None, at: _dt.datetime) -> ReversalRow:
        row = ReversalRow(key.tid, key.stan, key.ref, status, rc, txn, _iso(at))
        self._exec(
            "INSERT OR REPLACE INTO reversals(tid, stan, ref, status, rc, txn, received_at) VALUES (?,?,?,?,?,?,?)",
            (row.tid, row.stan, row.ref, row.status, row.rc, row.txn, row.received_at))
        self._reversals[(key.tid, key.stan, key.ref)] = row
        return row

    def reversals(self) -> list[ReversalRow]:
        return list(self._reversals.values())

    # -- settlements --------------------------------------------------------------------------------
    def settlements(self, mid: str | None = None) -> list[Settlement]:
        found = [v for v in self._settlements.values() if mid is None or v.mid == mid]
        return sorted(found, key=lambda v: (v.day, v.mid, v.id))

    def save_settlement(self, s: Settlement) -> None:
        self._settlements[s.id] = s
        self._exec(
            "INSERT OR REPLACE INTO settlements(id, mid, day, amount, count, created_at, value_date, status,"
            " attempts, last_error, first_failed_at, paid_at, recredit) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (s.id, s.mid, s.day, s.amount, s.count, s.created_at, s.value_date, s.status, s.attempts,
             s.last_error, s.first_failed_at, s.paid_at, int(s.recredit)))

    def terminal_batch(self, tid: str, batch: str) -> dict[str, Any] | None:
        found = self._terminal_batches.get((tid, batch))
        return dict(found) if found is not None else None

    def closed_batches(self, tid: str) -> set[str]:
        return {b for (t, b), v in self._terminal_batches.items() if t == tid and v["status"] == "closed"}

    def save_terminal_batch(self, tid: str, batch: str, status: str, host_totals: dict[str, int],
                            terminal_totals: dict[str, int], at: _dt.datetime) -> None:
        self._terminal_batches[(tid, batch)] = {"status": status, "host_totals": dict(host_totals),
                                                "terminal_totals": dict(terminal_totals), "at": _iso(at)}
        self._exec(
            "INSERT OR REPLACE INTO terminal_batches(tid, batch, status, host_totals, terminal_totals, at)"
            " VALUES (?,?,?,?,?,?)",
            (tid, batch, status, json.dumps(host_totals), json.dumps(terminal_totals), _iso(at)))

    # -- the oracle's view --------------------------------------------------------------------------
    def transactions(self) -> list[LedgerTxn]:
        """One record per transaction key, in arrival order (see :class:`LedgerTxn`)."""
        paid = {s.id: s.paid_at for s in self.settlements()}
        dups: dict[int, list[TxnRow]] = {}
        for row in self._txns.values():
            if row.dup_of is not None:
                dups.setdefault(row.dup_of, []).append(row)
        out = []
        for row in self._txns.values():
            if row.dup_of is not None:
                continue
            group = [row, *dups.get(row.id, [])]
            settled = row.settlement
            out.append(LedgerTxn(
                key=row.key, kind=row.kind, mti=row.mti, mid=row.mid, pan=mask_pan(row.pan),
                amount=row.amount, rc=row.rc, approved=row.rc == "00",
                status=row.status, cardholder_debit=sum(r.cardholder_debit for r in group),
                hold=sum(r.hold for r in group), reversed=row.status in ("reversed", "reversed_before_arrival"),
                reversed_at=_from_iso(row.reversed_at), batch=row.batch, settled_batch=settled,
                merchant_credit=sum(r.merchant_credit for r in group),
                merchant_credited_at=_from_iso(paid.get(settled)) if settled else None,
                created_at=_from_iso(row.created_at) or _dt.datetime.min,
                times_posted=sum(1 for r in group if r.rc == "00" and r.kind == row.kind),
            ))
        return out

    # -- invariants ---------------------------------------------------------------------------------
    def check_conservation(self) -> None:
        """Raise :class:`ConservationError` unless money is conserved, entry by entry and in total.

        Checks, from SQLite (not the mirror): every entry's postings sum to 0; all accounts sum to
        0; the in-memory balances equal the stored ones; no hold is negative; each request's net
        cardholder debit equals the postings on its cardholder account.
        """
        self.flush_writes()
        c = self.conn
        bad = c.execute("SELECT entry, kind, SUM(amount) FROM postings GROUP BY entry HAVING SUM(amount) != 0"
                        " LIMIT 1").fetchone()
        if bad:
            raise ConservationError(f"entry {bad[0]} ({bad[1]}) sums to {bad[2]:+d}, not 0")
        total = c.execute("SELECT COALESCE(SUM(amount), 0) FROM postings").fetchone()[0]
        if total != 0:
            raise ConservationError(f"ledger sums to {total:+d}, not 0")
        stored = {a: int(v) for a, v in c.execute("SELECT account, SUM(amount) FROM postings GROUP BY account")}
        mirror = {a: v for a, v in self._balances.items() if v or a in stored}
        if {a: v for a, v in stored.items() if v or a in mirror} != mirror:
            diff = sorted(a for a in set(stored) | set(mirror) if stored.get(a, 0) != mirror.get(a, 0))
            raise ConservationError(f"in-memory balances differ from SQLite for {[_masked_account(a) for a in diff]}")
        for account, value in stored.items():
            if account.startswith("hold:") and value < 0:
                raise ConservationError(f"{_masked_account(account)} holds {value}, a negative hold")
        card_moves: dict[int, int] = {}
        hold_moves: dict[int, int] = {}
        for txn, account, amount in c.execute(
                "SELECT txn, account, SUM(amount) FROM postings WHERE txn IS NOT NULL"
                " AND (account LIKE 'card:%' OR account LIKE 'hold:%') GROUP BY txn, account"):
            target = card_moves if account.startswith("card:") else hold_moves
            target[txn] = target.get(txn, 0) + int(amount)
        for row in self._txns.values():
            # a request's own postings (and those of its reversal/void, tagged with its id) explain
            # exactly what it took from the cardholder: debited for good, or still held
            if -card_moves.get(row.id, 0) != row.cardholder_debit + row.hold or hold_moves.get(row.id, 0) != row.hold:
                raise ConservationError(
                    f"transaction {row.key} records a net cardholder debit of {row.cardholder_debit} and a hold"
                    f" of {row.hold}, but its postings move {-card_moves.get(row.id, 0)} from the card and"
                    f" {hold_moves.get(row.id, 0)} into holds")

    def total_cardholder_funds(self) -> int:
        return sum(v for a, v in self._balances.items() if a.startswith(("card:", "hold:")))


def _masked_account(account: str) -> str:
    kind, _, ident = account.partition(":")
    return f"{kind}:{mask_pan(ident)}" if kind in ("card", "hold") else account


def iter_accounts(balances: dict[str, int], prefix: str) -> Iterable[tuple[str, int]]:
    return ((a.partition(":")[2], v) for a, v in balances.items() if a.startswith(prefix))
