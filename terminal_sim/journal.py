"""The terminal's journal: everything it must remember across a power cut, in SQLite.

A real terminal keeps this in battery-backed flash; here it is a SQLite database (a file, or a
shared-cache in-memory database that a simulated power cut can reopen). Each logical step of a
transaction is ONE SQLite transaction, so a power cut between any two steps leaves the journal in
a state recovery understands:

* ``begin_attempt`` allocates the STAN, records the attempt and — in the same transaction — the
  *reversal record* (``reversal = 'armed'`` plus the request needed to build the 0400) BEFORE the
  request leaves;
* ``decide`` records what the cardholder was shown, clears or confirms the reversal, adds the
  transaction to the batch and stores the receipt text, atomically;
* ``receipt_printed`` records each receipt that came out of the printer (and when);
* reversals and advices carry their own state (``pending`` until acknowledged).

The journal is also the oracle's source of truth for what the terminal showed and printed:
:meth:`Journal.attempts` gives one :class:`AttemptRecord` per attempt.

Track 2, PIN blocks and MACs are never stored; the PAN is stored (a reversal and the batch upload
need it, as on a real terminal) but every text the journal produces shows it masked.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import pathlib
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from iso8583.mask import mask_pan
from iso8583.message import Message

from .errors import TerminalError
from .printer import render_receipt

SCHEMA_VERSION = 3   # 3: compact request text, online receipts rendered from the row (2 and 1 migrate)
# 2: receipts clustered by attempt, no indexes written by a sale. A schema 2 journal needs no
# rewrite: its JSON requests and receipt texts stay readable (decode_fields, _receipt_text).

#: Fields never written to the journal: track data, PIN block, security control, MACs.
_NOT_STORED = frozenset({35, 36, 45, 52, 53, 64, 128})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    schema_version INTEGER NOT NULL,
    stan INTEGER NOT NULL,          -- last STAN used by a message that is not an attempt
    stan_seq INTEGER NOT NULL DEFAULT 0,  -- order of that use among all STAN uses
    batch INTEGER NOT NULL,         -- current (open) batch number
    keys TEXT,                      -- working keys as received at sign-on (encrypted under the TMK)
    keys_at REAL
);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    tid TEXT NOT NULL,
    kind TEXT NOT NULL,             -- sale, void, refund, preauth, completion, balance
    mode TEXT NOT NULL,             -- online | offline
    amount INTEGER NOT NULL,
    card TEXT NOT NULL,             -- masked PAN
    entry TEXT NOT NULL,
    batch INTEGER NOT NULL,
    original INTEGER,               -- attempt a void / completion / refund refers to
    created_at REAL NOT NULL,
    mti TEXT NOT NULL,              -- the attempt's first request: MTI, STAN, field 7, batch
    stan TEXT NOT NULL,
    f7 TEXT NOT NULL,
    req_batch TEXT NOT NULL,
    stan_seq INTEGER,               -- NULL: the request never left (refused before sending)
    request TEXT,                   -- the request (JSON, secrets removed): builds reversal / upload
    outcome TEXT,                   -- approved | declined | failed | NULL (nothing shown yet)
    rc TEXT,
    auth_code TEXT,
    rrn TEXT,
    detail TEXT,
    decided_at REAL,
    in_batch INTEGER NOT NULL DEFAULT 0,
    settled INTEGER NOT NULL DEFAULT 0,
    voided INTEGER NOT NULL DEFAULT 0,
    receipt TEXT,                   -- receipt text, or (schema 3) a receipt_spec to render it from
    reversal TEXT NOT NULL DEFAULT 'none',  -- none|armed|cleared|pending|acked|dropped
    reversal_reason TEXT,
    reversal_tries INTEGER NOT NULL DEFAULT 0,
    reversal_at REAL,
    advice TEXT NOT NULL DEFAULT 'none',    -- none|pending|acked|rejected|dropped
    advice_tries INTEGER NOT NULL DEFAULT 0,
    advice_at REAL
);
-- Only indexes that a sale does not write: every index an online sale touches is one more page
-- per commit. Open reversals and the current batch's first attempt are tracked by the Journal
-- object itself (one writer), see Journal.__init__.
CREATE INDEX IF NOT EXISTS attempts_advice ON attempts(id) WHERE advice = 'pending';
DROP INDEX IF EXISTS attempts_reversal;
DROP INDEX IF EXISTS attempts_batch;
CREATE TABLE IF NOT EXISTS requests (   -- further requests of an attempt (retransmissions)
    attempt INTEGER NOT NULL,
    mti TEXT NOT NULL,
    stan TEXT NOT NULL,
    f7 TEXT NOT NULL,               -- transmission date-time (empty in dialects without field 7)
    batch TEXT NOT NULL,
    sent_at REAL NOT NULL,
    stan_seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_attempt ON requests(attempt);
CREATE TABLE IF NOT EXISTS receipts (   -- clustered by attempt: one page written per print
    attempt INTEGER NOT NULL,
    id INTEGER NOT NULL,            -- order of the print among all prints
    copy TEXT NOT NULL,             -- original | reprint | recovery
    status TEXT NOT NULL,           -- printed | paper_out | jam
    outcome TEXT,                   -- what the receipt says (approved / declined)
    at REAL NOT NULL,
    PRIMARY KEY (attempt, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settlements (
    id INTEGER PRIMARY KEY,
    batch INTEGER NOT NULL,
    debit_count INTEGER NOT NULL, debit_amount INTEGER NOT NULL,
    credit_count INTEGER NOT NULL, credit_amount INTEGER NOT NULL,
    rc TEXT,
    uploaded INTEGER NOT NULL DEFAULT 0,
    closed INTEGER NOT NULL DEFAULT 0,
    at REAL NOT NULL
);
"""


# CPython 3.11's sqlite3 binds only exact int/float/str/bytearray parameters directly; a None goes
# through the adapter protocol, whose failed ``PrepareProtocol.__adapt__`` lookup formats and
# discards an AttributeError — about 1 µs per None, several per step on the hot path. An identity
# adapter for None (bound as NULL, exactly as before) is found first and costs a third of that.
# Process-wide but neutral; one registered by someone else is left alone.
if (type(None), sqlite3.PrepareProtocol) not in sqlite3.adapters:
    sqlite3.register_adapter(type(None), lambda value: value)


# One encoder for values that are neither text nor bytes (UnionPay's composite field 60).
_dumps = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
_VALUE_SEP, _BODY_SEP = "\x1f", "\x1e"


_LAYOUTS: dict[tuple[int, ...], tuple[str, tuple[int, ...], int]] = {}


def encode_fields(msg: Message) -> str:
    """:func:`encode_fields_general`, from a per-layout cache for the usual request: the field
    numbers, which positions are not stored and where field 55's bytes sit are worked out once
    per set of field numbers; then only the values are joined (equivalence is tested)."""
    fields = msg.fields
    layout = tuple(fields)
    found = _LAYOUTS.get(layout)
    if found is None:
        if len(_LAYOUTS) > 256:
            _LAYOUTS.clear()
        found = _LAYOUTS[layout] = _layout_plan(layout)
    head, drop, icc = found
    values = list(fields.values())
    if icc >= 0:
        value = values[icc]
        if value.__class__ is not bytes:
            return encode_fields_general(msg)
        values[icc] = value.hex()
    for index in drop:   # descending positions
        del values[index]
    try:
        body = _VALUE_SEP.join(values)
    except TypeError:   # a value that is not text
        return encode_fields_general(msg)
    if body.count(_VALUE_SEP) != len(values) - 1 or _BODY_SEP in body:
        return encode_fields_general(msg)
    return f"{msg.mti}{head}{body}"


def _layout_plan(layout: tuple[int, ...]) -> tuple[str, tuple[int, ...], int]:
    """(`` NUMBERS MARKS\x1e``, positions not stored (descending), position of field 55 among the
    stored values or -1) of a request with fields ``layout``, as :func:`encode_fields_general`
    writes it when every stored value is text but field 55's bytes."""
    kept = [n for n in layout if n not in _NOT_STORED]
    try:
        numbers = bytes(kept).hex()
    except ValueError:  # a field number beyond 255: not a field any dialect has
        raise TerminalError(f"request: field numbers must be 1..192, got {sorted(layout)}") from None
    drop = tuple(sorted((i for i, n in enumerate(layout) if n in _NOT_STORED), reverse=True))
    icc = layout.index(55) if 55 in layout else -1
    if icc >= 0:
        icc -= sum(1 for i in drop if i < icc)
    return f" {numbers} {'55x' if icc >= 0 else '-'}{_BODY_SEP}", drop, icc


def encode_fields_general(msg: Message) -> str:
    """A request as text for the journal, without track data, PIN block or MAC.

    Layout (schema 3): ``MTI NUMBERS MARKS\x1eVALUE\x1fVALUE...`` — NUMBERS are the field numbers
    as hex bytes, in order; the values are the fields' texts; MARKS (``-`` when none) lists the
    fields stored otherwise: ``55x`` bytes as hex, ``60j`` JSON (composite fields, anything not
    text, a text holding a separator). Every step is one C-level call over all fields — a Python
    loop over ~17 fields cost three times as much, on every attempt before its request leaves.
    Journals written before keep their JSON requests; :func:`decode_fields` reads both.
    """
    fields = msg.fields.copy()
    for number in _NOT_STORED.intersection(fields):
        del fields[number]
    marks = "-"
    icc = fields.get(55)
    if icc.__class__ is bytes:   # the one bytes field of a card request (EMV data)
        fields[55] = icc.hex()
        marks = "55x"
    values = list(fields.values())
    try:
        body = _VALUE_SEP.join(values)
        plain = body.count(_VALUE_SEP) == len(values) - 1 and _BODY_SEP not in body
    except TypeError:   # a value that is not text
        plain = False
    try:
        numbers = bytes(fields).hex()
    except ValueError:  # a field number beyond 255: not a field any dialect has
        raise TerminalError(f"request {msg.mti}: field numbers must be 1..192, got {sorted(fields)}") from None
    if not plain:
        marked = [] if marks == "-" else [marks]
        for i, (number, value) in enumerate(fields.items()):
            if number == 55 and marked and marked[0] == "55x":
                continue
            cls = value.__class__
            if cls is bytes or cls is bytearray:
                values[i] = value.hex()
                marked.append(f"{number}x")
            elif cls is not str or _VALUE_SEP in value or _BODY_SEP in value:
                values[i] = _dumps(value)
                marked.append(f"{number}j")
        body = _VALUE_SEP.join(values)
        marks = ",".join(marked) or "-"
    return f"{msg.mti} {numbers} {marks}{_BODY_SEP}{body}"


def decode_fields(text: str) -> Message:
    """The request :func:`encode_fields` stored (or, in a journal from before schema 3, its JSON)."""
    if text.startswith("{"):
        data = json.loads(text)
        mti = data.pop("mti")
        fields = {int(k): (bytes.fromhex(v["$b"]) if isinstance(v, dict) and "$b" in v else v)
                  for k, v in data.items()}
        return Message(mti, fields)
    head, _, body = text.partition(_BODY_SEP)
    try:
        mti, numbers_hex, marks = head.split(" ")
        numbers = bytes.fromhex(numbers_hex)
    except ValueError:
        raise TerminalError(f"journal request {head[:40]!r}: expected 'MTI NUMBERS MARKS'") from None
    values: list[Any] = body.split(_VALUE_SEP) if numbers else []
    if len(values) != len(numbers):
        raise TerminalError(f"journal request for MTI {mti}: {len(numbers)} fields named, {len(values)} values stored")
    out: dict[int, Any] = dict(zip(numbers, values))
    if marks != "-":
        for mark in marks.split(","):
            number = int(mark[:-1])
            out[number] = bytes.fromhex(out[number]) if mark[-1] == "x" else json.loads(out[number])
    return Message(mti, out)


#: A stored receipt that starts with this is not the text but what the text is rendered from,
#: besides the attempt's own columns (schema 3): merchant, MID, currency, date, STAN.
RECEIPT_SPEC = "\x1e"


def receipt_spec(merchant: str, mid: str, currency: str, when: str, stan: str) -> str:
    """What the journal keeps of an online receipt (instead of its ~300-character text): the rest
    of it is the attempt row — kind, amount, masked card, entry, batch, rc, auth code, RRN,
    outcome. Written with the outcome, before printing; rendered again for a reprint or a
    recovery print exactly as it was printed."""
    return f"{RECEIPT_SPEC}{merchant}{_VALUE_SEP}{mid}{_VALUE_SEP}{currency}{_VALUE_SEP}{when}{_VALUE_SEP}{stan}"


def _receipt_text(stored: str, row: tuple[Any, ...]) -> str:
    """The receipt text of ``stored`` (text, or a :func:`receipt_spec`) for the attempt ``row``:
    (tid, kind, amount, card, entry, batch, rc, auth_code, rrn, outcome, mode)."""
    if not stored.startswith(RECEIPT_SPEC):
        return stored
    parts = stored[1:].split(_VALUE_SEP)
    if len(parts) != 5:
        raise TerminalError(f"journal receipt: expected 5 parts (merchant, MID, currency, date, STAN), "
                            f"found {len(parts)}")
    merchant, mid, currency, when, stan = parts
    tid, kind, amount, card, entry, batch, rc, auth, rrn, outcome, mode = row
    return render_receipt(merchant, mid, tid, kind, amount, currency, card, entry, stan, batch, rc, auth, rrn, when,
                          outcome, mode == "offline")


_TOKEN = re.compile(r"[0-9A-Za-z_.*-]{1,40}")


def _literal(value: Any) -> str | None:
    """``value`` as an SQL text literal when it is a plain token (digits, letters, ``_.*-``), else
    None (then it is bound): the only values inlined into a statement's text."""
    if value.__class__ is str and _TOKEN.fullmatch(value):
        return f"'{value}'"
    return None


_RECEIPT_COLUMNS = "tid, kind, amount, card, entry, batch, rc, auth_code, rrn, outcome, mode"


@dataclass(frozen=True, slots=True)
class RequestUse:
    """One request sent for an attempt: its MTI, STAN, field 7, batch and when it was sent."""

    mti: str
    stan: str
    f7: str
    batch: str
    sent_at: float


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """What the terminal did, showed and printed for one attempt (docs/CONTRACTS.md §7)."""

    attempt: int
    tid: str
    kind: str                      # sale | void | refund | preauth | completion | balance
    mode: str                      # online | offline (floor-limit approval, sent later as advice)
    amount: int                    # minor units
    card: str                      # masked PAN
    entry: str                     # chip | magstripe | contactless
    created_at: float              # loop.time() when the attempt started
    requests: tuple[RequestUse, ...]  # every original request sent, incl. retransmissions
    outcome: str | None            # approved | declined | failed | None (never shown: power cut)
    rc: str | None
    auth_code: str | None
    rrn: str | None
    shown_at: float | None         # when the outcome was shown
    detail: str | None             # why (e.g. "no trustworthy response (timeout)", "interrupted by power loss")
    receipt_printed: bool
    receipt_printed_at: float | None
    receipt_outcome: str | None    # what the first printed receipt says
    receipts_printed: int          # incl. reprints and recovery prints
    reversal: str                  # none | armed | cleared | pending | acked | dropped
    reversal_reason: str | None
    reversal_tries: int
    reversal_acked_at: float | None
    advice: str                    # none | pending | acked | rejected | dropped
    advice_tries: int
    advice_acked_at: float | None
    batch: int
    in_batch: bool
    settled: bool
    voided: bool
    original: int | None

    @property
    def stans(self) -> tuple[str, ...]:
        return tuple(r.stan for r in self.requests)

    @property
    def keys(self) -> tuple[tuple[str, str, str], ...]:
        """(tid, stan, ref) of each request: the transaction key the host ledger uses
        (``iso8583.transactions.TxnKey``): ref is field 7 in the ISO family, the batch in UnionPay."""
        return tuple((self.tid, r.stan, r.f7 or r.batch) for r in self.requests)


@dataclass(frozen=True, slots=True)
class PendingMessage:
    """A reversal or advice waiting to be sent (or acknowledged)."""

    attempt: int
    request: Message
    state: str
    reason: str | None
    tries: int


_memory_ids = itertools.count(1)


class Journal:
    """The terminal's persistent memory. One instance per open connection; see :meth:`reopen`.

    Each step of a sale is a single SQL statement (atomic on its own in autocommit mode) that
    writes as few pages as possible: an online sale is three commits (attempt + armed reversal
    before sending, outcome + receipt text before printing, the print after printing) and no
    index is written by any of them. What indexes would otherwise give — which attempts have an
    open reversal, where the current batch starts — the Journal keeps in memory, which is sound
    because one terminal owns its journal (one writer; a file journal is opened with an
    exclusive lock unless ``exclusive=False``) and both are rebuilt from the tables on open.
    Multi-statement steps run in one explicit transaction.
    """

    def __init__(self, conn: sqlite3.Connection, path: str, uri: bool, synchronous: str = "NORMAL",
                 exclusive: bool = True) -> None:
        self._conn = conn
        # The three statements of an online sale (and nothing that returns rows) run on one cursor
        # kept for the connection's life: ``conn.execute`` makes, registers and frees a cursor per
        # statement (about a tenth of a short INSERT's cost). Same statements, same transactions.
        self._write = conn.cursor().execute
        self.path = path
        self._uri = uri
        self._synchronous = synchronous
        self._exclusive = exclusive
        _create_schema(conn, memory="mode=memory" in path)
        row = conn.execute("SELECT schema_version, stan, batch, stan_seq FROM meta WHERE id = 1").fetchone()
        if row is None:
            conn.execute("INSERT INTO meta (id, schema_version, stan, batch) VALUES (1, ?, 0, 1)",
                         (SCHEMA_VERSION,))
            row = (SCHEMA_VERSION, 0, 1, 0)
        if row[0] == 1:
            _migrate_v1(conn)
        elif row[0] == 2:
            conn.execute("UPDATE meta SET schema_version = ? WHERE id = 1", (SCHEMA_VERSION,))
        elif row[0] != SCHEMA_VERSION:
            raise TerminalError(f"journal {path}: schema version {row[0]}, expected {SCHEMA_VERSION}")
        self._batch: int = row[2]
        self._batch_text = f"{row[2]:06d}"
        # The last STAN used is whichever use came last: a non-attempt message (meta), an attempt's
        # first request, or a retransmission. ``stan_seq`` orders them.
        candidates = [(row[3], row[1])]
        for query in ("SELECT stan_seq, stan FROM attempts WHERE stan_seq IS NOT NULL ORDER BY stan_seq DESC LIMIT 1",
                      "SELECT stan_seq, stan FROM requests ORDER BY stan_seq DESC LIMIT 1"):
            found = conn.execute(query).fetchone()
            if found is not None:
                candidates.append((found[0], int(found[1]) if str(found[1]).isdigit() else 0))
        self._seq, self._stan = max(candidates)
        # Attempts whose reversal is armed or pending: a superset of the truth (added before the
        # write that may arm one, removed after the write that closes one), so the queries below
        # that read the real state by id never miss one.
        self._open_reversals: set[int] = {
            r[0] for r in conn.execute("SELECT id FROM attempts WHERE reversal IN ('armed', 'pending')")}
        self._maybe_advices = True     # cleared when a query finds none, set by any write that adds one
        (self._receipt_seq,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM receipts").fetchone()
        self._batch_first = self._find_batch_first()
        self._insert_sql: dict[tuple[Any, ...], str] = {}
        self._decide_sql: dict[tuple[Any, ...], str] = {}

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | pathlib.Path = ":memory:", *, durable: bool = False,
             synchronous: str | None = None, exclusive: bool = True) -> Journal:
        """Open (creating if needed) a journal.

        ``":memory:"`` becomes a private shared-cache in-memory database so that :meth:`reopen`
        works; a ``file:...`` URI is used as given; anything else is a file path (WAL mode).
        ``durable=True`` makes every commit survive an OS crash too (synchronous=FULL); the default
        (NORMAL) survives the process dying at any point. ``synchronous="OFF"`` is for simulations,
        where power cuts are simulated inside one process and the OS never crashes.

        A file journal belongs to one terminal: it is locked exclusively while open (no lock
        traffic per commit, about a third of each commit's cost). ``exclusive=False`` lets other
        processes read it meanwhile (e.g. the ``sqlite3`` shell on a live terminal's journal).
        """
        text = str(path)
        uri = False
        if text == ":memory:":
            text = f"file:posfault-journal-{next(_memory_ids)}?mode=memory&cache=shared"
            uri = True
        elif text.startswith("file:"):
            uri = True
        sync = synchronous or ("FULL" if durable else "NORMAL")
        if sync.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise TerminalError(f"journal synchronous must be OFF, NORMAL, FULL or EXTRA, got {synchronous!r}")
        try:
            return cls(cls._connect(text, uri, sync.upper(), exclusive), text, uri, sync.upper(), exclusive)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):
                raise TerminalError(f"journal {text} is in use by another terminal (a journal is opened "
                                    "exclusively; Journal.open(..., exclusive=False) shares it)") from None
            raise

    @staticmethod
    def _connect(path: str, uri: bool, synchronous: str, exclusive: bool = True) -> sqlite3.Connection:
        conn = sqlite3.connect(path, uri=uri, isolation_level=None, check_same_thread=False,
                               cached_statements=256)
        if "mode=memory" not in path:
            if exclusive:   # before WAL is entered: the WAL index then lives in process memory
                conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
        return conn

    def reopen(self) -> Journal:
        """What a power cycle does: a fresh connection to the same database, the old one closed.

        Nothing uncommitted survives (there never is anything: every step is one transaction).
        A file is closed first (it is locked exclusively); an in-memory journal is reopened
        first (it lives only as long as a connection to it does).
        """
        memory = "mode=memory" in self.path
        if not memory:
            self._conn.close()
        conn = self._connect(self.path, self._uri, self._synchronous, self._exclusive)
        fresh = Journal(conn, self.path, self._uri, self._synchronous, self._exclusive)
        if memory:
            self._conn.close()
        return fresh

    def close(self) -> None:
        self._conn.close()

    def __repr__(self) -> str:
        return f"Journal({self.path!r}, stan={self._stan}, batch={self._batch})"

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- counters and keys -------------------------------------------------------------------
    @property
    def stan(self) -> int:
        """The last STAN used."""
        return self._stan

    @property
    def next_stan(self) -> int:
        return 1 if self._stan >= 999999 else self._stan + 1

    @property
    def batch(self) -> int:
        return self._batch

    def _take_stan(self, stan: str) -> int | None:
        """Advance the in-memory counter for a STAN about to be recorded; returns its sequence."""
        if not stan.isdigit():
            return None
        self._seq += 1
        self._stan = int(stan)
        return self._seq

    def use_stan(self, stan: int) -> None:
        """Record that ``stan`` went out for a message that is not an attempt (sign-on, settlement)."""
        seq = self._seq + 1
        self._conn.execute("UPDATE meta SET stan = ?, stan_seq = ? WHERE id = 1", (stan, seq))
        self._seq, self._stan = seq, stan

    def save_keys(self, keys: str, at: float, batch: int | None = None) -> None:
        self._conn.execute("UPDATE meta SET keys = ?, keys_at = ?, batch = COALESCE(?, batch) WHERE id = 1",
                           (keys, at, batch))
        if batch is not None and batch != self._batch:
            self._batch, self._batch_text = batch, f"{batch:06d}"
            self._batch_first = self._find_batch_first()

    def _find_batch_first(self) -> int:
        """A lower bound of the ids of the current batch's attempts (batch queries scan from it)."""
        row = self._conn.execute("SELECT MIN(id) FROM attempts WHERE batch = ?", (self._batch,)).fetchone()
        if row[0] is not None:
            return int(row[0])
        return int(self._conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM attempts").fetchone()[0])

    def keys(self) -> str | None:
        row = self._conn.execute("SELECT keys FROM meta WHERE id = 1").fetchone()
        return row[0] if row else None

    # -- attempt steps (each atomic) ------------------------------------------------------------
    def begin_attempt(self, *, tid: str, kind: str, amount: int, pan: str, entry: str, request: Message,
                      at: float, arm_reversal: bool, mode: str = "online", original: int | None = None,
                      advice: bool = False, sent: bool = True, masked: str | None = None) -> int:
        """Record the attempt, its request and STAN and (if asked) arm its reversal — one statement.

        Must be called before the request leaves; ``sent=False`` records an attempt refused
        before anything was sent (no STAN is used then). ``masked`` is the PAN already masked,
        when the caller has it.
        """
        card = masked if masked is not None else (mask_pan(pan) if pan else "")
        return self.begin(tid, kind, amount, card, entry, request, at, arm_reversal, sent, mode, original, advice)

    def begin(self, tid: str, kind: str, amount: int, card: str, entry: str, request: Message, at: float,
              arm_reversal: bool, sent: bool = True, mode: str = "online", original: int | None = None,
              advice: bool = False) -> int:
        """:meth:`begin_attempt` with the PAN already masked (``card``) and the arguments by
        position: what every online sale calls (matching a dozen keyword arguments costs about
        as much as binding the statement's values)."""
        fields = request.fields
        stan = fields.get(11, "")
        if stan.__class__ is not str:
            stan = str(stan)
        seq = self._take_stan(stan) if sent else None
        f7 = fields.get(7, "")
        batch = self._batch
        req_batch = self._batch_text if fields.get(60) is None else _batch_of(request, batch)
        if original is None and mode == "online" and not advice:
            # The usual online attempt: the columns that are the same attempt after attempt (TID,
            # kind, entry, batch, MTI, reversal state) are literals of a statement made once per
            # combination; what differs per attempt is bound.
            key = (tid, kind, entry, batch, request.mti, req_batch, arm_reversal)
            sql = self._insert_sql.get(key)
            if sql is None:
                sql = self._attempt_sql(key)
            if sql:
                cur = self._write(sql, (amount, card, at, stan, f7 if f7.__class__ is str else str(f7), seq,
                                        encode_fields(request)))
            else:   # a value that is not a plain token: everything bound
                cur = self._conn.execute(
                    "INSERT INTO attempts (tid, kind, mode, amount, card, entry, batch, created_at, mti, stan, f7,"
                    " req_batch, stan_seq, request, reversal) VALUES (?,?,'online',?,?,?,?,?,?,?,?,?,?,?,?)",
                    (tid, kind, amount, card, entry, batch, at, request.mti, stan, str(f7), req_batch, seq,
                     encode_fields(request), "armed" if arm_reversal else "none"))
        else:
            cur = self._conn.execute(
                "INSERT INTO attempts (tid, kind, mode, amount, card, entry, batch, original, created_at, mti, stan,"
                " f7, req_batch, stan_seq, request, reversal, advice) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (tid, kind, mode, amount, card, entry, batch, original, at, request.mti, stan, str(f7), req_batch,
                 seq, encode_fields(request), "armed" if arm_reversal else "none", "pending" if advice else "none"))
        attempt = int(cur.lastrowid or 0)
        if arm_reversal:
            self._open_reversals.add(attempt)
        if advice:
            self._maybe_advices = True
        return attempt

    def _attempt_sql(self, key: tuple[Any, ...]) -> str:
        """The INSERT of an online attempt with ``key``'s values as literals (bound instead when
        one is not a plain token), remembered per key (a handful per terminal)."""
        tid, kind, entry, batch, mti, req_batch, armed = key
        texts = [_literal(tid), _literal(kind), _literal(entry), str(int(batch)), _literal(mti), _literal(req_batch)]
        if len(self._insert_sql) > 32:
            self._insert_sql.clear()
        if None in texts:
            self._insert_sql[key] = ""
            return ""
        sql = ("INSERT INTO attempts (amount, card, created_at, stan, f7, stan_seq, request, tid, kind, mode, entry,"
               " batch, mti, req_batch, reversal) VALUES (?,?,?,?,?,?,?,{},{},'online',{},{},{},{},{})".format(
                   *texts, "'armed'" if armed else "'none'"))
        self._insert_sql[key] = sql
        return sql

    def begin_local(self, *, tid: str, kind: str, amount: int, pan: str, entry: str, request: Message, at: float,
                    mode: str, original: int | None, receipt: str, auth_code: str | None) -> int:
        """A locally approved attempt (offline sale, store-and-forward refund): the approval, the
        batch entry, the receipt text and the pending advice — one statement."""
        stan = str(request.get(11, ""))
        seq = self._take_stan(stan)
        cur = self._conn.execute(
            "INSERT INTO attempts (tid, kind, mode, amount, card, entry, batch, original, created_at, mti, stan, f7,"
            " req_batch, stan_seq, request, outcome, rc, auth_code, decided_at, in_batch, receipt, advice)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,'approved',NULL,?,?,1,?,'pending')",
            (tid, kind, mode, amount, mask_pan(pan), entry, self._batch, original, at, request.mti, stan,
             str(request.get(7, "")), _batch_of(request, self._batch), seq, encode_fields(request),
             auth_code, at, receipt))
        self._maybe_advices = True
        return int(cur.lastrowid or 0)

    def add_request(self, attempt: int, request: Message, at: float, *, arm_reversal: bool) -> None:
        """A further request for the same attempt (a retransmission, possibly under a new STAN)."""
        stan = str(request.get(11, ""))
        seq = self._take_stan(stan) or 0
        if arm_reversal:
            self._open_reversals.add(attempt)
        with self._tx() as c:
            c.execute("INSERT INTO requests VALUES (?,?,?,?,?,?,?)",
                      (attempt, request.mti, stan, str(request.get(7, "")), _batch_of(request, self._batch), at,
                       seq))
            c.execute("UPDATE attempts SET request = ?, reversal = CASE WHEN ? THEN 'armed' ELSE reversal END"
                      " WHERE id = ?", (encode_fields(request), arm_reversal, attempt))

    def decide(self, attempt: int, *, outcome: str, at: float, rc: str | None = None,
               auth_code: str | None = None, rrn: str | None = None, detail: str | None = None,
               in_batch: bool = False, receipt: str | None = None, reversal: str | None = None,
               reversal_reason: str | None = None, void_original: int | None = None,
               request: Message | None = None) -> None:
        """Record what was shown, and atomically what follows from it.

        ``receipt`` is the receipt's text or, for an online receipt, its :func:`receipt_spec`.
        ``reversal``: new reversal state (``cleared`` when a trustworthy answer came, ``pending``
        when the terminal must reverse, ``None`` to leave it). ``void_original`` takes a voided
        transaction out of the batch in the same transaction.
        """
        if reversal_reason is None and request is None and void_original is None:
            self.decide_answer(attempt, outcome, at, rc, auth_code, rrn, detail, in_batch, receipt, reversal)
            return
        if reversal == "pending":
            self._open_reversals.add(attempt)
        sql = ("UPDATE attempts SET outcome = ?, rc = ?, auth_code = ?, rrn = ?, detail = ?, decided_at = ?,"
               " in_batch = ?, receipt = ?, reversal = COALESCE(?, reversal),"
               " reversal_reason = COALESCE(?, reversal_reason), request = COALESCE(?, request) WHERE id = ?")
        args = (outcome, rc, auth_code, rrn, detail, at, int(in_batch), receipt, reversal, reversal_reason,
                encode_fields(request) if request is not None else None, attempt)
        if void_original is None:
            self._conn.execute(sql, args)
        else:
            with self._tx() as c:
                c.execute(sql, args)
                c.execute("UPDATE attempts SET voided = 1, in_batch = 0 WHERE id = ?", (void_original,))
        if reversal is not None and reversal not in ("armed", "pending"):
            self._open_reversals.discard(attempt)

    def decide_answer(self, attempt: int, outcome: str, at: float, rc: str | None, auth_code: str | None,
                      rrn: str | None, detail: str | None, in_batch: bool, receipt: str | None,
                      reversal: str | None) -> None:
        """:meth:`decide` for the usual decision (no reversal reason, no request to store late, no
        voided original), arguments by position: what a sale with a trustworthy answer calls.
        Nothing to keep from before but the reason, request and (when ``reversal`` is None)
        reversal state already stored."""
        if reversal == "pending":
            self._open_reversals.add(attempt)
        key = (outcome, rc, detail, in_batch, reversal)
        sql = self._decide_sql.get(key)
        if sql is None:
            sql = self._decision_sql(key)
        if sql:   # what is the same decision after decision (outcome, rc, ...) is in the text
            self._write(sql, (auth_code, rrn, at, receipt, attempt))
        elif reversal is None:
            self._conn.execute(
                "UPDATE attempts SET outcome = ?, rc = ?, auth_code = ?, rrn = ?, detail = ?, decided_at = ?,"
                " in_batch = ?, receipt = ? WHERE id = ?",
                (outcome, rc, auth_code, rrn, detail, at, 1 if in_batch else 0, receipt, attempt))
        else:
            self._conn.execute(
                "UPDATE attempts SET outcome = ?, rc = ?, auth_code = ?, rrn = ?, detail = ?, decided_at = ?,"
                " in_batch = ?, receipt = ?, reversal = ? WHERE id = ?",
                (outcome, rc, auth_code, rrn, detail, at, 1 if in_batch else 0, receipt, reversal, attempt))
        if reversal is not None and reversal not in ("armed", "pending"):
            self._open_reversals.discard(attempt)

    def _decision_sql(self, key: tuple[Any, ...]) -> str:
        """The usual decision's UPDATE with ``key``'s values (outcome, rc, detail, in_batch,
        reversal) as literals, or "" when one is not a plain token (then all are bound)."""
        outcome, rc, detail, in_batch, reversal = key
        texts = [_literal(outcome), "NULL" if rc is None else _literal(rc),
                 "NULL" if detail is None else _literal(detail)]
        if len(self._decide_sql) > 32:
            self._decide_sql.clear()
        if None in texts or (reversal is not None and _literal(reversal) is None):
            self._decide_sql[key] = ""
            return ""
        sql = ("UPDATE attempts SET outcome = {}, rc = {}, detail = {}, in_batch = {}, auth_code = ?, rrn = ?,"
               " decided_at = ?, receipt = ?{} WHERE id = ?").format(
                   *texts, 1 if in_batch else 0, "" if reversal is None else f", reversal = {_literal(reversal)}")
        self._decide_sql[key] = sql
        return sql

    def set_reversal(self, attempt: int, state: str, *, reason: str | None = None, at: float | None = None,
                     request: Message | None = None) -> None:
        """Move a reversal to ``state`` (pending / acked / cleared); ``request`` stores the original
        when it was not persisted before sending (the faulty profile's late write)."""
        opens = state in ("armed", "pending")
        if opens:
            self._open_reversals.add(attempt)
        self._conn.execute(
            "UPDATE attempts SET reversal = ?, reversal_reason = COALESCE(?, reversal_reason),"
            " reversal_at = COALESCE(?, reversal_at), request = COALESCE(?, request) WHERE id = ?",
            (state, reason, at, encode_fields(request) if request is not None else None, attempt))
        if not opens:
            self._open_reversals.discard(attempt)

    def reversal_try(self, attempt: int, at: float) -> int:
        """Count one transmission of a reversal (before it leaves); returns the try number."""
        row = self._conn.execute("UPDATE attempts SET reversal_tries = reversal_tries + 1, reversal_at = ?"
                                 " WHERE id = ? RETURNING reversal_tries", (at, attempt)).fetchone()
        return int(row[0]) if row else 0

    def advice_try(self, attempt: int, at: float) -> int:
        row = self._conn.execute("UPDATE attempts SET advice_tries = advice_tries + 1, advice_at = ?"
                                 " WHERE id = ? RETURNING advice_tries", (at, attempt)).fetchone()
        return int(row[0]) if row else 0

    def set_advice(self, attempt: int, state: str, at: float, *, rc: str | None = None,
                   rrn: str | None = None) -> None:
        self._conn.execute("UPDATE attempts SET advice = ?, advice_at = ?, rrn = COALESCE(rrn, ?),"
                           " in_batch = CASE WHEN ? = 'rejected' THEN 0 ELSE in_batch END WHERE id = ?",
                           (state, at, rrn, state, attempt))

    def receipt_printed(self, attempt: int, *, copy: str, status: str, outcome: str | None, at: float) -> None:
        """Record one print (or failed print: ``status`` is the fault) of a receipt for ``attempt``."""
        seq = self._receipt_seq + 1
        if copy == "original" and status == "printed":   # the usual print
            if outcome == "approved":
                self._write("INSERT INTO receipts (attempt, id, copy, status, outcome, at)"
                            " VALUES (?,?,'original','printed','approved',?)", (attempt, seq, at))
            else:
                self._write("INSERT INTO receipts (attempt, id, copy, status, outcome, at)"
                            " VALUES (?,?,'original','printed',?,?)", (attempt, seq, outcome, at))
        else:
            self._conn.execute("INSERT INTO receipts (attempt, id, copy, status, outcome, at) VALUES (?,?,?,?,?,?)",
                               (attempt, seq, copy, status, outcome, at))
        self._receipt_seq = seq

    def recover_undecided(self, at: float, *, reason: str) -> list[int]:
        """Power-up: attempts interrupted before their outcome was committed are shown as failed,
        and an armed reversal becomes pending (the request may have reached the host)."""
        with self._tx() as c:
            ids = [r[0] for r in c.execute("SELECT id FROM attempts WHERE outcome IS NULL ORDER BY id")]
            if ids:
                c.execute(
                    "UPDATE attempts SET outcome = 'failed', detail = 'interrupted by power loss', decided_at = ?,"
                    " reversal_reason = CASE WHEN reversal = 'armed' THEN ? ELSE reversal_reason END,"
                    " reversal = CASE WHEN reversal = 'armed' THEN 'pending' ELSE reversal END"
                    " WHERE outcome IS NULL", (at, reason))
            c.execute("UPDATE attempts SET reversal = 'pending', reversal_reason = COALESCE(reversal_reason, ?)"
                      " WHERE reversal = 'armed'", (reason,))
        return ids

    # -- queries -------------------------------------------------------------------------------
    def _reversal_rows(self) -> list[tuple[Any, ...]]:
        """(id, request, reversal, reason, tries) of the attempts that may have an open reversal."""
        if not self._open_reversals:
            return []
        ids = sorted(self._open_reversals)
        columns = "SELECT id, request, reversal, reversal_reason, reversal_tries FROM attempts"
        if len(ids) <= 200:   # by id (the usual case: a handful)
            rows = self._conn.execute(f"{columns} WHERE id IN ({','.join('?' * len(ids))}) ORDER BY id",
                                      ids).fetchall()
        else:                 # one scan beats a statement with thousands of parameters
            rows = self._conn.execute(f"{columns} WHERE reversal IN ('armed', 'pending') ORDER BY id").fetchall()
        still = {r[0] for r in rows if r[2] in ("armed", "pending")}
        self._open_reversals.intersection_update(still)
        return [r for r in rows if r[0] in still]

    def may_have_pending(self) -> bool:
        """False when no reversal or advice can be waiting (no query needed to know); True means
        :meth:`pending_reversals` / :meth:`pending_advices` must be asked."""
        return bool(self._open_reversals) or self._maybe_advices

    def pending_reversals(self) -> list[PendingMessage]:
        """Reversals the terminal has decided to send and that are not yet acknowledged."""
        return [PendingMessage(r[0], decode_fields(r[1]), r[2], r[3], r[4]) for r in self._reversal_rows()
                if r[1] and r[2] == "pending"]

    def armed_reversals(self) -> list[int]:
        """Attempts whose request may be on the wire right now (reversal armed, no answer yet)."""
        return [r[0] for r in self._reversal_rows() if r[2] == "armed"]

    def pending_advices(self) -> list[PendingMessage]:
        if not self._maybe_advices:
            return []
        rows = self._conn.execute(
            "SELECT id, request, advice, NULL, advice_tries FROM attempts WHERE advice = 'pending' ORDER BY id"
        ).fetchall()
        out = [PendingMessage(r[0], decode_fields(r[1]), r[2], r[3], r[4]) for r in rows if r[1]]
        if not out:
            self._maybe_advices = False
        return out

    def unprinted_approvals(self) -> list[tuple[int, str]]:
        """Approved attempts whose receipt never came out: (attempt, receipt text)."""
        rows = self._conn.execute(
            f"SELECT id, receipt, {_RECEIPT_COLUMNS} FROM attempts a WHERE outcome = 'approved'"
            " AND receipt IS NOT NULL AND NOT EXISTS"
            " (SELECT 1 FROM receipts r WHERE r.attempt = a.id AND r.status = 'printed') ORDER BY id").fetchall()
        return [(int(r[0]), _receipt_text(str(r[1]), r[2:])) for r in rows]

    def last_receipt(self) -> tuple[int, str, str] | None:
        """(attempt, receipt text, outcome) of the most recent attempt that has a receipt."""
        row = self._conn.execute(f"SELECT id, receipt, {_RECEIPT_COLUMNS} FROM attempts WHERE receipt IS NOT NULL"
                                 " ORDER BY id DESC LIMIT 1").fetchone()
        return (int(row[0]), _receipt_text(str(row[1]), row[2:]), str(row[11])) if row else None

    def request_of(self, attempt: int) -> Message:
        row = self._conn.execute("SELECT request FROM attempts WHERE id = ?", (attempt,)).fetchone()
        if row is None or not row[0]:
            raise TerminalError(f"journal has no request for attempt {attempt}")
        return decode_fields(row[0])

    def attempt(self, attempt: int) -> AttemptRecord:
        found = self.attempts(attempt)
        if not found:
            raise TerminalError(f"journal has no attempt {attempt}")
        return found[0]

    def batch_transactions(self, batch: int | None = None) -> list[tuple[int, str, str, int, Message, str]]:
        """(attempt, kind, mode, amount, request, advice state) of everything in ``batch``'s totals."""
        current = batch is None or batch == self._batch
        rows = self._conn.execute(
            "SELECT id, kind, mode, amount, request, advice FROM attempts WHERE id >= ? AND batch = ?"
            " AND in_batch = 1 AND settled = 0 ORDER BY id",
            (self._batch_first if current else 0, self._batch if batch is None else batch)).fetchall()
        return [(int(r[0]), str(r[1]), str(r[2]), int(r[3]), decode_fields(r[4]), str(r[5])) for r in rows]

    def record_settlement(self, *, batch: int, totals: tuple[int, int, int, int], rc: str | None,
                          uploaded: bool, closed: bool, at: float) -> int:
        cur = self._conn.execute(
            "INSERT INTO settlements (batch, debit_count, debit_amount, credit_count, credit_amount, rc, uploaded,"
            " closed, at) VALUES (?,?,?,?,?,?,?,?,?)", (batch, *totals, rc, int(uploaded), int(closed), at))
        return int(cur.lastrowid or 0)

    def close_batch(self, batch: int, *, at: float, drop_advices: bool = False) -> int:
        """Mark ``batch`` settled and open the next one; returns the new batch number.

        ``drop_advices`` is the ``offline_not_uploaded`` firmware bug: closing the batch also
        discards advices that never reached the host.
        """
        new = batch + 1 if batch < 999999 else 1
        first = self._batch_first if batch == self._batch else 0
        with self._tx() as c:
            c.execute("UPDATE attempts SET settled = 1 WHERE id >= ? AND batch = ? AND in_batch = 1", (first, batch))
            if drop_advices:
                c.execute("UPDATE attempts SET advice = 'dropped', advice_at = ? WHERE advice = 'pending'", (at,))
            c.execute("UPDATE settlements SET closed = 1 WHERE batch = ?", (batch,))
            c.execute("UPDATE meta SET batch = ? WHERE id = 1", (new,))
        self._batch, self._batch_text = new, f"{new:06d}"
        self._batch_first = self._find_batch_first()
        return new

    def settlements(self) -> list[dict[str, Any]]:
        cur = self._conn.execute("SELECT * FROM settlements ORDER BY id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def attempts(self, only: int | None = None) -> list[AttemptRecord]:
        """Every attempt in order (or just ``only``), with the STANs used and receipt facts."""
        where, args = ("WHERE id = ?", (only,)) if only is not None else ("", ())
        rows = self._conn.execute(
            "SELECT id, tid, kind, mode, amount, card, entry, created_at, outcome, rc, auth_code, rrn,"
            " decided_at, detail, reversal, reversal_reason, reversal_tries, reversal_at, advice,"
            " advice_tries, advice_at, batch, in_batch, settled, voided, original, mti, stan, f7, req_batch,"
            " stan_seq FROM attempts " + where + " ORDER BY id", args).fetchall()
        awhere = "WHERE attempt = ? " if only is not None else ""
        extra: dict[int, list[RequestUse]] = {}
        for a, mti, stan, f7, batch, sent in self._conn.execute(
                "SELECT attempt, mti, stan, f7, batch, sent_at FROM requests " + awhere + "ORDER BY stan_seq", args):
            extra.setdefault(a, []).append(RequestUse(mti, stan, f7, batch, sent))
        prints: dict[int, list[Any]] = {}
        for a, outcome, at in self._conn.execute(
                "SELECT attempt, outcome, at FROM receipts WHERE status = 'printed' "
                + ("AND attempt = ? " if only is not None else "") + "ORDER BY attempt, id", args):
            seen = prints.get(a)
            if seen is None:
                prints[a] = [at, outcome, 1]
            else:
                seen[2] += 1
        out = []
        for r in rows:
            first = (RequestUse(r[26], r[27], r[28], r[29], r[7]),) if r[30] is not None else ()
            printed_at, receipt_outcome, count = prints.get(r[0], (None, None, 0))
            out.append(AttemptRecord(
                attempt=r[0], tid=r[1], kind=r[2], mode=r[3], amount=r[4], card=r[5], entry=r[6],
                created_at=r[7], requests=first + tuple(extra.get(r[0], ())), outcome=r[8], rc=r[9],
                auth_code=r[10], rrn=r[11], shown_at=r[12], detail=r[13], receipt_printed=printed_at is not None,
                receipt_printed_at=printed_at, receipt_outcome=receipt_outcome, receipts_printed=count,
                reversal=r[14], reversal_reason=r[15], reversal_tries=r[16],
                reversal_acked_at=r[17] if r[14] == "acked" else None, advice=r[18], advice_tries=r[19],
                advice_acked_at=r[20] if r[18] == "acked" else None, batch=r[21], in_batch=bool(r[22]),
                settled=bool(r[23]), voided=bool(r[24]), original=r[25]))
        return out


_template_lock = threading.Lock()


@functools.cache
def _template(pid: int) -> sqlite3.Connection:
    """An empty journal of the current schema, built once per process (private, in memory; keyed by
    process id so that a forked worker never uses a connection made before the fork)."""
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    conn.executescript(_SCHEMA)
    conn.execute("INSERT INTO meta (id, schema_version, stan, batch) VALUES (1, ?, 0, 1)", (SCHEMA_VERSION,))
    return conn


def _create_schema(conn: sqlite3.Connection, *, memory: bool) -> None:
    """Make ``conn`` hold the current schema: nothing to do for a current journal (a reopen after a
    power cut), a copy of the template for a new in-memory one (about ten times cheaper than
    running the DDL — simulations make one per run), the DDL otherwise (new files; schema 1)."""
    try:
        found = conn.execute("SELECT schema_version FROM meta WHERE id = 1").fetchone()
    except sqlite3.OperationalError:   # no meta table: a new database
        found = None
        if memory and conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0:
            with _template_lock:
                _template(os.getpid()).backup(conn)
            return
    if found is None or found[0] != SCHEMA_VERSION:
        conn.executescript(_SCHEMA)


def _migrate_v1(conn: sqlite3.Connection) -> None:
    """Schema 1 -> 3: receipts become a table clustered by attempt (the old rowid keeps the order);
    nothing else changes (see SCHEMA_VERSION)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        layout = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'receipts'").fetchone()
        if layout is not None and "WITHOUT ROWID" not in str(layout[0]).upper():
            conn.execute("ALTER TABLE receipts RENAME TO receipts_v1")
            conn.execute(_SCHEMA[_SCHEMA.index("CREATE TABLE IF NOT EXISTS receipts"):
                                 _SCHEMA.index("CREATE TABLE IF NOT EXISTS settlements")])
            conn.execute("INSERT INTO receipts (attempt, id, copy, status, outcome, at)"
                         " SELECT attempt, id, copy, status, outcome, at FROM receipts_v1")
            conn.execute("DROP TABLE receipts_v1")
        conn.execute("UPDATE meta SET schema_version = ? WHERE id = 1", (SCHEMA_VERSION,))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _batch_of(request: Message, default: int) -> str:
    f60 = request.get(60)
    if isinstance(f60, dict):
        return str(f60.get("60.2", ""))
    return f"{default:06d}"
