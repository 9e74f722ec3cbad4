"""The acquirer host with its issuer: answers ISO 8583 requests, moving money only in the ledger.

``Host.handle(msg)`` is sans-I/O apart from two awaits: the issuer-slow delay, and the group commit
that makes a response's postings durable *before* the response leaves. ``Host.serve(channel)``
runs one connection of any runtime channel (memory pipe, TCP, serial).

Exactly-once, the heart of it: a request is identified by its transaction key (TID, STAN, field 7 —
or the batch number in UnionPay, see :func:`iso8583.transactions.txn_key`). The first arrival is
recorded in the ledger in the same SQLite transaction as its postings; any later arrival with that
key gets the recorded answer and posts nothing. A reversal is recorded under its *original's* key,
whether or not the original has been seen, so a late original is never debited after its reversal.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import random
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import blake2b as _blake2b
from time import perf_counter
from typing import Any

from iso8583.mask import mask_pan, scrub_text
from iso8583.message import Message
from iso8583.transactions import (
    APPROVED_CODES,
    CREDIT_TYPES,
    DEBIT_TYPES,
    Family,
    SettlementTotals,
    TransactionError,
    TxnKey,
    TxnType,
    batch_number,
    classify,
    family_of,
    make_response,
    original_key,
    parse_amount,
    txn_key,
)

from . import security_glue as sec
from .config import HostConfig, active
from .ledger import (
    Card,
    Ledger,
    Merchant,
    TxnRow,
    card_account,
    hold_account,
    payable_account,
)
from .rules import RuleContext, evaluate
from .serve import serve_channel

EventSink = Callable[[dict[str, Any]], None]

#: Requests that reach the issuer's authorization (subject to issuer_unavailable / issuer_slow).
AUTHORIZED = frozenset({TxnType.SALE, TxnType.BALANCE, TxnType.PREAUTH, TxnType.COMPLETION, TxnType.VOID})
ADVICES = frozenset({TxnType.REFUND, TxnType.OFFLINE_SALE})
STATUS_RC = {"blocked": "14", "lost": "41", "stolen": "43", "expired": "54"}
#: Fields a response echoes from its request, per family: the same table ``make_response`` uses.
try:
    from iso8583.transactions import _ECHO as _ECHO_FIELDS
except ImportError:  # pragma: no cover - fall back to make_response itself
    _ECHO_FIELDS = {}
#: The same, as sets (``Host._response`` drops what is not echoed).
_ECHO_SETS = {family: frozenset(numbers) for family, numbers in _ECHO_FIELDS.items()}
#: Per family: the fields a response does not echo, by request "shape" (its field numbers in order).
_NOT_ECHOED: dict[str, dict[tuple[int, ...], tuple[int, ...]]] = {family: {} for family in _ECHO_FIELDS}
#: Response MTI of each request MTI seen (``Message.response_mti``, memoized).
_RESPONSE_MTI: dict[str, str] = {}
#: ``classify`` of ISO class 1/2 requests by (MTI, field 3, field 25): see ``Host._classify``.
_CLASSIFIED: dict[tuple[Any, ...], TxnType] = {}
#: The method answering each transaction type.
_HANDLERS = {
    TxnType.SIGN_ON: "_sign_on", TxnType.ECHO: "_echo",
    TxnType.BALANCE: "_authorize", TxnType.SALE: "_authorize", TxnType.PREAUTH: "_authorize",
    TxnType.COMPLETION: "_authorize", TxnType.VOID: "_authorize",
    TxnType.REFUND: "_advice", TxnType.OFFLINE_SALE: "_advice", TxnType.REVERSAL: "_reversal",
    TxnType.SETTLEMENT: "_settlement", TxnType.BATCH_UPLOAD: "_batch_upload",
    TxnType.SETTLEMENT_FINAL: "_settlement_final",
}


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome of authorization: a response code and, for a decline, which check said no."""

    rc: str
    reason: str = ""


# Members used on the hot path, bound once: on CPython 3.11 reading ``TxnType.SALE`` goes through
# the enum metaclass's ``__getattr__`` hook (≈ 10x a global read), twenty times per sale.
_BALANCE, _COMPLETION, _ECHO, _PREAUTH = TxnType.BALANCE, TxnType.COMPLETION, TxnType.ECHO, TxnType.PREAUTH
_SALE, _SIGN_ON, _VOID = TxnType.SALE, TxnType.SIGN_ON, TxnType.VOID


class Host:
    """An acquirer host and issuer over one :class:`~host_sim.ledger.Ledger`.

    ``dialect`` is a dialect name (``"iso87ascii"``, ``"unionpay_pos"`` ...) or a Spec; it picks the
    family (ISO 1987 or UnionPay) whose message vocabulary is used, and — when the codec is
    available — the spec used to compute MACs.
    """

    def __init__(self, ledger: Ledger, dialect: Any = "iso87ascii", config: HostConfig | None = None, *,
                 clock: Callable[[], _dt.datetime] | None = None, events: EventSink | None = None,
                 rng: random.Random | None = None, keys: Any = None, commit: str = "inline") -> None:
        if commit not in ("inline", "thread"):
            raise ValueError(f"commit must be 'inline' or 'thread', got {commit!r}")
        self.commit_mode = commit
        self._writing: Any = None
        self.ledger = ledger
        self.dialect = dialect
        self.family: Family = family_of(dialect)
        self.config = config or HostConfig()
        self.clock = clock or _dt.datetime.now
        self.events = events
        #: the sink ``_lazy_events`` was found for (see :meth:`_lazy_sink`); re-resolved when
        #: ``events`` is replaced
        self._lazy_of: Any = _NO_SINK
        self._lazy_events: Callable[..., None] | None = None
        self.rng = rng or random.Random(0)
        self.keys = keys  # terminal master keys (iso8583.security / fixtures/keys); loaded lazily
        self.crashed = False
        self._waiters: list[Any] = []   # futures or callbacks waiting for the group commit
        self._group_enabled = True
        self.stats = {"requests": 0, "responses": 0, "dropped": 0, "commits": 0}
        # perf_counter() stamps of the latest group commit, for stage timings (HostServer(timings=...)):
        # (commit started on the loop, COMMIT returned, the loop learnt of it)
        self.last_commit: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self._writing_started = 0.0
        self._writing_waiters: list[Any] = []
        ledger.on_rollback.append(self._on_rollback)

    # -- events ---------------------------------------------------------------------------------
    def _lazy_sink(self, events: EventSink) -> Callable[..., None] | None:
        """The ``record_lazy(build, *args)`` twin of ``events``, if it has one (else None), memoized
        for this sink.

        A :class:`posfault.trace.Trace` records ``record_lazy(build, *args)`` exactly as
        ``record_owned(build(*args))`` (same dict, same stamps and order), but builds the dict only
        when the trace is read — most of a benchmark's or campaign's events never are. Only a sink
        that *is* a trace's ``record_owned`` qualifies; any other callable gets its dicts as before.
        """
        owner = getattr(events, "__self__", None)
        lazy = getattr(owner, "record_lazy", None)
        if lazy is None or getattr(events, "__name__", None) != "record_owned" or not callable(lazy):
            lazy = None
        self._lazy_of = events
        self._lazy_events = lazy
        return lazy

    def _emit(self, kind: str, **data: Any) -> None:
        if self.events is not None:
            if "detail" in data:   # free text (rule names, reasons) never carries a clear PAN
                data["detail"] = scrub_text(str(data["detail"]))
            self.events({"actor": "host", "kind": kind, **data})

    # -- durability ------------------------------------------------------------------------------
    def _begin(self) -> None:
        if self._group_enabled and not self.ledger.in_group:
            self.ledger.begin_group()

    async def _durable(self) -> None:
        """Wait until every posting made so far is committed (one commit per event-loop tick).

        With ``commit="thread"`` the commit (and its fsync) runs on the ledger's writer thread while
        the loop keeps taking requests into the next group: classic group commit. A response never
        leaves before the commit holding its postings has returned.
        """
        if not self.ledger.has_pending and not self._waiters and self._writing is None:
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        if not self._waiters and self._writing is None:
            loop.call_soon(self._flush)
        self._waiters.append(waiter)
        await waiter

    def _flush(self) -> None:
        if self._writing is not None:
            return   # started again when the commit in flight completes
        waiters, self._waiters = self._waiters, []
        if not waiters:
            return
        started = perf_counter()
        if self.commit_mode == "thread" and self.ledger.has_pending:
            loop = asyncio.get_running_loop()
            self._writing = self.ledger.commit_in_background(
                lambda writing: loop.call_soon_threadsafe(self._written, waiters, writing))
            self._writing_started = started
            self._writing_waiters = waiters
            return
        try:
            self.ledger.commit()
            self.stats["commits"] += 1
        except Exception as exc:  # the group is rolled back: nobody gets an answer
            _settle(waiters, exc)
            return
        done = perf_counter()
        self.last_commit = (started, done, done)
        _settle(waiters, None)

    def poll_commit(self) -> None:
        """Settle the background commit now if the writer thread has finished it.

        A busy loop learns of a finished commit through ``call_soon_threadsafe`` only after the
        current iteration — every ready connection's frames — which measured up to 4 ms at p99 on
        50 connections, straight onto the response time. A front end calls this between frames:
        the responses leave and the next group's commit starts as soon as the COMMIT returned.
        """
        writing = self._writing
        if writing is not None and writing.done():
            self._written(self._writing_waiters, writing)

    def _written(self, waiters: list[Any], writing: Any) -> None:
        if self._writing is not writing:
            return   # already settled by poll_commit
        self._writing = None
        self._writing_waiters = []
        self.last_commit = (self._writing_started, writing.done_at, perf_counter())
        self.ledger.writer_done(writing)
        self.stats["commits"] += 1
        _settle(waiters, writing.exception())
        if self._waiters:   # requests that arrived during the fsync: the next group
            self._flush()

    def _on_rollback(self) -> None:
        """The ledger dropped uncommitted work: every response waiting for that commit must not leave."""
        waiters, self._waiters = self._waiters, []
        _settle(waiters, ConnectionAbortedError("uncommitted work rolled back"))

    def crash(self) -> None:
        """Lose everything not yet committed, as a process kill would; answer nothing until restart."""
        self.crashed = True
        self.ledger.rollback()
        self._emit("crash")

    def restart(self, ledger: Ledger | None = None) -> None:
        """Come back from :meth:`crash` on the durable state (optionally a reopened ledger file)."""
        if ledger is not None and ledger is not self.ledger:
            self.ledger = ledger
            ledger.on_rollback.append(self._on_rollback)
        self.crashed = False
        self._emit("restart")

    # -- entry point -----------------------------------------------------------------------------
    async def handle(self, msg: Message, envelope: Any = None, raw: bytes | None = None) -> Message | None:
        """Answer one request; ``None`` means no answer goes back (dropped, crashed, or a response in)."""
        if self.crashed or not msg.is_request:
            return None
        delay = self._slow_delay(msg)
        if delay:
            await asyncio.sleep(delay)
            if self.crashed:
                return None
        response = self.process(msg, raw)
        try:
            await self._durable()
        except Exception as exc:  # rolled back (crash, failed step or commit): nothing may be answered
            self._emit("no_commit", mti=msg.mti, stan=msg.get(11), tid=msg.get(41), detail=type(exc).__name__)
            return None
        return self.finish(msg, response)

    def needs_wait(self, msg: Message) -> bool:
        """Whether :meth:`handle` would sleep before processing (issuer_slow): such requests need a task."""
        return bool(self._slow_delay(msg))

    def _slow_delay(self, msg: Message) -> float:
        config = self.config
        if not config.issuer_slow or not config.issuer_slow_delay or msg.mti[1] not in "12":
            return 0.0
        try:
            txn = classify(msg, self.family)
        except TransactionError:
            return 0.0
        if txn in AUTHORIZED and active(config.issuer_slow, asyncio.get_running_loop().time()):
            return config.issuer_slow_delay
        return 0.0

    def process(self, msg: Message, raw: bytes | None = None) -> Message | None:
        """The synchronous core of :meth:`handle`: decide and post (not yet committed).

        The caller must not send the result before the group commit (:meth:`after_commit` or
        awaiting :meth:`handle`), then pass it through :meth:`finish`.
        """
        self.stats["requests"] += 1
        fields = msg.fields
        events = self.events
        if events is not None:   # what _emit("recv", ...) sends (no detail: nothing to scrub)
            amount = fields.get(4)
            amount = int(amount) if isinstance(amount, str) and amount.isdigit() else None
            lazy = self._lazy_events if events is self._lazy_of else self._lazy_sink(events)
            if lazy is not None:
                lazy(_recv_event, msg.mti, fields.get(11), fields.get(41), amount)
            else:
                events(_recv_event(msg.mti, fields.get(11), fields.get(41), amount))
        try:
            txn = self._classify(msg)
        except TransactionError as exc:
            return self._format_error(msg, str(exc))
        config = self.config
        if 64 in fields or 128 in fields or config.mac_required:
            mac_problem = self._check_mac(msg, txn, raw)
            if mac_problem is not None:
                return mac_problem if not config.mac_failure_drop else None
        if config.issuer_unavailable and (txn in AUTHORIZED or txn in ADVICES) \
                and active(config.issuer_unavailable, asyncio.get_running_loop().time()):
            return make_response(msg, "91", self.family)
        if self._group_enabled:
            ledger = self.ledger
            if not ledger._group:
                ledger._group = True   # ledger.begin_group()
        try:
            if txn is _SALE:   # (the handler of most requests, without the name lookup)
                return self._authorize(txn, msg)
            return getattr(self, _HANDLERS[txn])(txn, msg)
        except TransactionError as exc:
            return self._format_error(msg, str(exc))

    def _classify(self, msg: Message) -> TxnType:
        """:func:`classify`, memoized for ISO authorization/financial requests: there it reads only
        the MTI, field 3 and field 25 (UnionPay and other classes are classified every time)."""
        mti = msg.mti
        if self.family != "iso87" or mti[1] not in "12":
            return classify(msg, self.family)
        fields = msg.fields
        memo_key = (mti, fields.get(3), fields.get(25))
        try:
            txn = _CLASSIFIED.get(memo_key)
        except TypeError:   # an unhashable value: not memoizable
            return classify(msg, self.family)
        if txn is None:
            txn = classify(msg, self.family)   # raises for what it cannot classify: never memoized
            if len(_CLASSIFIED) >= 256:
                _CLASSIFIED.clear()
            _CLASSIFIED[memo_key] = txn
        return txn

    def finish(self, msg: Message, response: Message | None) -> Message | None:
        """After the commit: apply the lose-the-response switch and count; the response to send, or None."""
        if self.crashed:
            return None
        if response is None or (self.config.lose_response_after_commit and msg.mti[1] in "124"
                                and active(self.config.lose_response_after_commit, asyncio.get_running_loop().time())):
            self.stats["dropped"] += 1
            self._emit("drop", mti=msg.mti, stan=msg.get(11), tid=msg.get(41),
                       detail="response lost after commit" if response is not None else "no answer")
            return None
        fields = msg.fields
        if (64 in fields or 128 in fields) and self.config.mac_responses:
            response = self._stamp_mac(msg, response)
        self.stats["responses"] += 1
        events = self.events
        if events is not None:   # what _emit("send", ...) sends
            out = response.fields
            lazy = self._lazy_events if events is self._lazy_of else self._lazy_sink(events)
            if lazy is not None:
                lazy(_send_event, response.mti, out.get(11), out.get(41), out.get(39))
            else:
                events(_send_event(response.mti, out.get(11), out.get(41), out.get(39)))
        return response

    def _stamp_mac(self, msg: Message, response: Message) -> Message:
        """MAC the response to a MACed request with the terminal's working key (see HostConfig).

        Not when the request's own MAC failed (the host cannot trust that key exchange), nor when
        the terminal never signed on (no key). ``corrupt_response_mac`` stamps a wrong one on answers
        to authorization and financial requests (MTI classes 1 and 2).
        """
        tid = str(msg.get(41, ""))
        keys = self.ledger.terminal_keys(tid)
        if not keys or response.get(39) == (self.config.mac_failure_rc or ("A0" if self.family == "unionpay" else "96")):
            return response
        # authorization and financial answers only: the reversal that follows is answered with a
        # good MAC, so the terminal can clear it (the incident is the reversed approval, not a loop)
        corrupt = bool(self.config.corrupt_response_mac) and msg.mti[1] in "12" \
            and active(self.config.corrupt_response_mac, asyncio.get_running_loop().time())
        try:
            stamped = sec.stamp_mac(self, response, keys, corrupt=corrupt)
        except Exception as exc:  # a response the dialect cannot MAC: send it as it is, and say so
            self._emit("mac_stamp_failed", mti=response.mti, stan=response.get(11), tid=tid,
                       detail=type(exc).__name__)
            return response
        if corrupt:
            self._emit("mac_corrupted", mti=response.mti, stan=response.get(11), tid=tid, rc=response.get(39),
                       detail="response sent with a wrong MAC (corrupt_response_mac)")
        return stamped

    def after_commit(self, callback: Callable[[BaseException | None], None], *, last: bool = False) -> None:
        """Call ``callback(None)`` once everything posted so far is committed (``callback(exc)`` if it
        was rolled back instead). Immediately when nothing is pending. The callback-style twin of
        awaiting :meth:`handle`, for front ends that avoid a task per request.

        ``last``: the caller does nothing more before returning to the loop (it is about to wait for
        the next request). Then, when no group is forming and the loop can tell that the commit
        scheduled now would be the very next thing it runs (``nothing_due()``: the simulation's
        virtual loop, nothing else ready — one terminal, one request), the commit is made at once:
        the same order of everything, without a loop turn. Elsewhere (TCP front end, concurrent
        requests) requests arriving together still share one commit."""
        waiters = self._waiters
        if not waiters and self._writing is None:   # else a flush is already due: join its group
            if not self.ledger.has_pending:
                callback(None)
                return
            loop = asyncio.get_running_loop()
            if last and self.commit_mode == "inline":
                nothing_due = getattr(loop, "nothing_due", None)
                if nothing_due is not None and nothing_due():
                    waiters.append(callback)
                    self._flush()
                    return
            loop.call_soon(self._flush)
        waiters.append(callback)

    def handle_sync(self, msg: Message) -> Message | None:
        """Synchronous convenience for scripts and tests outside an event loop."""
        return asyncio.run(self.handle(msg))

    def _dispatch(self, txn: TxnType, msg: Message) -> Message | None:
        handler = getattr(self, _HANDLERS[txn])
        try:
            return handler(txn, msg)
        except TransactionError as exc:
            return self._format_error(msg, str(exc))

    # -- helpers -------------------------------------------------------------------------------------
    def _format_error(self, msg: Message, detail: str) -> Message | None:
        self._emit("format_error", mti=msg.mti, stan=msg.get(11), tid=msg.get(41), rc="30", detail=detail[:200])
        try:
            return make_response(msg, "30", self.family)
        except ValueError:
            return None

    def _now(self) -> _dt.datetime:
        return self.clock()

    def _batch(self, msg: Message) -> str:
        return batch_number(msg, self.family) if self.family == "unionpay" else ""

    def _response(self, msg: Message, rc: str, extra: dict[int, Any] | None = None) -> Message:
        """The response to ``msg``: what :func:`make_response` builds (echoed fields, 39), plus ``extra``.

        Built directly (the field numbers are known valid), which matters on the hot path."""
        echo = _ECHO_SETS.get(self.family)
        if echo is None:
            response = make_response(msg, rc, self.family)
        else:
            src = msg.fields
            fields = src.copy()   # (then deleting what is not echoed: measured cheaper than building)
            shape = tuple(src)
            memo = _NOT_ECHOED[self.family]
            drop = memo.get(shape)
            if drop is None:
                if len(memo) >= 1024:
                    memo.clear()
                drop = memo[shape] = tuple(n for n in shape if n not in echo)
            for number in drop:
                del fields[number]
            f60 = fields.get(60)
            if isinstance(f60, dict):
                fields[60] = dict(f60)
            fields[39] = rc
            mti = _RESPONSE_MTI.get(msg.mti)
            if mti is None:
                mti = _RESPONSE_MTI[msg.mti] = Message(msg.response_mti()).mti   # validated once
            response = _new_message(Message)   # the MTI is known valid: no per-response validation
            response.mti = mti
            response.fields = fields
        if extra:
            fields = response.fields
            for number, value in extra.items():
                if value is not None:
                    fields[number] = value
        return response

    @staticmethod
    def _extra_for(row_id: int, rc: str) -> dict[str, Any]:
        extra: dict[str, Any] = {37: f"{row_id:012d}"}
        if rc in APPROVED_CODES:
            extra[38] = f"{(row_id * 7919 + 104729) % 1_000_000:06d}"
        return extra

    def _replay(self, msg: Message, row: TxnRow) -> Message:
        """Answer a retransmission from the record: same rc and auth data, nothing posted."""
        same_body = row.fingerprint == _fingerprint(msg, self.family)
        rc = row.rc if (self.config.duplicate_response == "original" and same_body) else "94"
        extra = {int(k): v for k, v in row.extra.items()} if rc == row.rc else {}
        self._emit("duplicate", mti=msg.mti, stan=msg.get(11), tid=msg.get(41), rc=rc,
                   detail=f"retransmission of {row.key}; answered from the record, nothing posted")
        return self._response(msg, rc, extra)

    # -- network management ----------------------------------------------------------------------
    def _sign_on(self, txn: TxnType, msg: Message) -> Message:
        tid = str(msg.get(41, ""))
        if not tid:
            raise TransactionError("field 41: sign-on without a terminal id")
        delivered = sec.new_working_keys(self, tid)
        with self.ledger.step():
            self.ledger.set_terminal_keys(tid, delivered.clear_hex, self._now())
        self._emit("sign_on", tid=tid, detail=f"working keys delivered (KCV {delivered.kcv_text})")
        return self._response(msg, "00", {62: delivered.field62, 37: "000000000000"})

    def _echo(self, txn: TxnType, msg: Message) -> Message:
        return self._response(msg, "00")

    def _check_mac(self, msg: Message, txn: TxnType, raw: bytes | None) -> Message | None:
        if txn is _SIGN_ON or txn is _ECHO:
            return None
        fields = msg.fields
        has_mac = 64 in fields or 128 in fields
        if not has_mac and not self.config.mac_required:
            return None
        keys = self.ledger.terminal_keys(str(msg.get(41, "")))
        if not has_mac and not (keys and txn in AUTHORIZED | ADVICES):
            return None
        ok = bool(keys) and has_mac and sec.verify_mac(self, msg, keys, raw)
        if ok:
            return None
        rc = self.config.mac_failure_rc or ("A0" if self.family == "unionpay" else "96")
        self._emit("mac_failure", mti=msg.mti, stan=msg.get(11), tid=msg.get(41), rc=rc,
                   detail="MAC missing" if not has_mac else "MAC does not verify")
        return make_response(msg, rc, self.family)

    # -- authorizations and financial requests ------------------------------------------------------
    def _request_basics(self, msg: Message, txn: TxnType) -> tuple[str, int, str, str]:
        fields = msg.fields
        tid, mid = str(fields.get(41, "")), str(fields.get(42, ""))
        if len(tid) != 8:
            raise TransactionError(f"field 41: terminal id must be 8 characters, found {len(tid)}")
        if not mid:
            raise TransactionError("field 42: merchant id missing")
        stan = fields.get(11, "")
        if not (isinstance(stan, str) and len(stan) == 6 and stan.isdigit()):
            raise TransactionError(f"field 11: STAN must be 6 digits, found {stan!r}")
        pan = _pan_of(msg)
        text = fields.get(4)
        if text is None:
            if txn != _BALANCE:
                raise TransactionError("field 4: amount missing")
            return pan, 0, tid, mid
        return pan, parse_amount(text), tid, mid

    def _authorize(self, txn: TxnType, msg: Message) -> Message:
        # The hot path of the host (every sale), written for CPython: plain locals, the key as a
        # tuple, positional ledger calls, no per-request dict of row values (``_base`` builds one
        # only on the rarer paths: declines, balance, void, completion). Checks and their order are
        # those of a careful issuer; a decline is recorded so a retransmission gets the same answer.
        fields = msg.fields
        family = self.family
        config = self.config
        ledger = self.ledger
        tid = str(fields.get(41, ""))
        stan_value = fields.get(11, "")
        ref = str(_f60_part(fields, "60.2") if family == "unionpay" else fields.get(7, ""))
        kt = (tid, str(stan_value), ref)   # txn_key(msg, family), as a tuple
        detect = not (config.no_duplicate_detection
                      and active(config.no_duplicate_detection, asyncio.get_running_loop().time()))
        existing_id = ledger._by_key.get(kt)   # ledger.find_at(kt)
        existing = None if existing_id is None else ledger._txns[existing_id]
        if existing is not None and detect:
            return self._replay(msg, existing)
        # the request itself (what _request_basics checks, in its order)
        mid = str(fields.get(42, ""))
        if len(tid) != 8:
            raise TransactionError(f"field 41: terminal id must be 8 characters, found {len(tid)}")
        if not mid:
            raise TransactionError("field 42: merchant id missing")
        if not (isinstance(stan_value, str) and len(stan_value) == 6 and stan_value.isdigit()):
            raise TransactionError(f"field 11: STAN must be 6 digits, found {stan_value!r}")
        pan = fields.get(2)
        if not (pan.__class__ is str and pan.isdigit() and 12 <= len(pan) <= 19):
            pan = _pan_of(msg)   # a track-2 PAN, or the error naming what is wrong
        text = fields.get(4)
        if text.__class__ is str and text.isdigit():   # parse_amount(text), without the call
            amount = int(text)
        elif text is None:
            if txn is not _BALANCE:
                raise TransactionError("field 4: amount missing")
            amount = 0
        else:
            amount = parse_amount(text)   # raises, naming the field
        fingerprint = _fingerprint(msg, family, pan)
        now = self.clock()
        stamp = _iso(now)
        day = stamp[:10]
        draft = (kt, txn._value_, msg.mti, mid, pan, amount, fingerprint, self._batch(msg) if family == "unionpay" else "",
                 stamp, day, existing.id if existing is not None else None)

        # every ledger read of the checks below, in one call (reads only; the checks keep their order)
        rev, merchant, owner, twin, card, balance, daily = ledger.authorization_reads(kt, mid, tid, pan, day,
                                                                                     fingerprint)
        # a reversal got here first (the original was delayed in the network): never debit
        if txn is not _BALANCE and existing is None and rev is not None and rev.status == "unknown_original":
            with ledger.step():
                row = ledger.record(rc=config.late_original_rc, extra={}, status="reversed_before_arrival",
                                    **_base(draft))
                ledger.record_reversal(TxnKey(*kt), "late_original_blocked", rev.rc, row.id, now)
            self._emit("late_original", mti=msg.mti, stan=kt[1], tid=tid, amount=amount,
                       rc=config.late_original_rc, detail="original arrived after its reversal; not debited")
            return self._response(msg, config.late_original_rc)

        if merchant is None and self._merchant(mid) is None:
            return self._decline(msg, _base(draft), "03", f"unknown merchant {mid}")
        if owner is not None and owner != mid:
            return self._decline(msg, _base(draft), "58", f"terminal {tid} belongs to merchant {owner}, not {mid}")
        if amount <= 0 and txn is not _BALANCE and txn is not _VOID:
            return self._decline(msg, _base(draft), "13", "amount must be positive")
        if amount > config.max_amount:
            return self._decline(msg, _base(draft), "13", f"amount above the maximum {config.max_amount}")
        if twin is not None and config.content_duplicates and detect and (txn is _SALE or txn is _PREAUTH) \
                and fingerprint[0] == "L" and (twin.tid, twin.stan, twin.ref) != kt and twin.status == "approved":
            return self._decline(msg, _base(draft), "94",
                                 f"same card, amount and local time as approved {twin.key} (new STAN)")

        account = "card:" + pan   # card_account(pan)
        if config.rules:
            user = evaluate(config.rules, RuleContext(txn, msg, pan, amount, tid, mid, card, balance))
            if user is not None:
                return self._decline(msg, _base(draft), user[1], f"rule {user[0]!r}")
        if txn is _VOID or txn is _COMPLETION:
            base = _base(draft)
            return self._against_original(txn, msg, base, lambda rc, reason: self._decline(msg, base, rc, reason), card)
        checked = self._check_card(msg, card, pan, stamp)
        if checked is not None:
            return self._decline(msg, _base(draft), checked.rc, checked.reason)
        assert card is not None
        if txn is _BALANCE:
            with ledger.step():
                row = ledger.record(rc="00", extra={}, status="approved", **_base(draft))
                extra = self._extra_for(row.id, "00")
                extra[54] = _balance_field(balance, msg.get(49, "156"))
                ledger.update(row, extra={str(k): v for k, v in extra.items()})
            return self._response(msg, "00", extra)
        if balance < amount:
            return self._decline(msg, _base(draft), "51", f"available {balance} < amount {amount}")
        if txn is _SALE and daily + amount > card.daily_limit:
            return self._decline(msg, _base(draft), "61", f"daily limit {card.daily_limit} exceeded")
        row_id = ledger._next_txn   # next_id()
        # f"{n:012d}" / f"{n:06d}" for these non-negative ints, at a fifth of the cost
        rrn, auth = str(row_id).zfill(12), str((row_id * 7919 + 104729) % 1_000_000).zfill(6)
        # the stored text of the replay fields: digits need no JSON escaping (see ledger._extra_json)
        extra_text = f'{{"37": "{rrn}", "38": "{auth}"}}'
        # the row and its entry in one atomic ledger step
        if txn is _PREAUTH:
            ledger.record_approval(kt, "preauth", msg.mti, mid, pan, amount, {"37": rrn, "38": auth}, fingerprint,
                                   draft[7], 0, amount, stamp, day, draft[10], "preauth_hold", account,
                                   hold_account(pan), extra_text)
        else:
            ledger.record_approval(kt, draft[1], msg.mti, mid, pan, amount, {"37": rrn, "38": auth}, fingerprint,
                                   draft[7], amount, 0, stamp, day, draft[10], "sale", account,
                                   "payable:" + mid, extra_text)   # payable_account(mid)
        events = self.events
        if events is not None:
            # what _emit("posting", ...) sends, without its scrub_text pass: this detail is built
            # from the masked PAN and fixed words only, so there is nothing for it to mask
            masked = _MASKED_PANS.get(pan)
            if masked is None:
                masked = _masked_pan(pan)
            lazy = self._lazy_events if events is self._lazy_of else self._lazy_sink(events)
            if lazy is not None:
                lazy(_posting_event, msg.mti, kt[1], tid, amount, txn._value_, masked, txn is _PREAUTH)
            else:
                events(_posting_event(msg.mti, kt[1], tid, amount, txn._value_, masked, txn is _PREAUTH))
        response = self._response(msg, "00")   # + {37: rrn, 38: auth}, set directly
        out = response.fields
        out[37] = rrn
        out[38] = auth
        return response

    def _decline(self, msg: Message, base: dict[str, Any], rc: str, reason: str, status: str = "declined") -> Message:
        """Record a declined request (so a retransmission gets the same answer) and answer it."""
        with self.ledger.step():
            row = self.ledger.record(rc=rc, extra={}, status=status, **base)
            row.extra = {str(k): v for k, v in self._extra_for(row.id, rc).items()}
            self.ledger.update(row)
        self._emit("decline", mti=msg.mti, stan=base["stan"], tid=base["tid"], amount=base["amount"], rc=rc,
                   detail=reason)
        return self._response(msg, rc, {int(k): v for k, v in row.extra.items()})

    def _merchant(self, mid: str) -> Merchant | None:
        merchant = self.ledger.merchant(mid)
        if merchant is None and self.config.auto_enrol_merchants and mid.isdigit() and len(mid) == 15:
            merchant = Merchant(mid, f"auto-enrolled {mid}", "active", "", True, [])
            self.ledger.add_merchant(merchant)
        return merchant

    def _check_card(self, msg: Message, card: Card | None, pan: str, stamp: str) -> Decision | None:
        """Card status, expiry and PIN — the issuer checks in the order a real one applies them.

        ``stamp`` is the business date-time in ISO form (``YYYY-MM-DDT...``)."""
        if card is None:
            return Decision("14", "no such card")
        if card.status in STATUS_RC:
            return Decision(STATUS_RC[card.status], f"card {card.status}")
        yymm = stamp[2:4] + stamp[5:7]
        expiry = msg.fields.get(14)
        if card.expiry < yymm or (expiry is not None and str(expiry) < yymm):
            return Decision("54", "card expired")
        if card.pin_tries >= self.config.pin_tries:
            return Decision("75", "PIN tries exhausted")
        if 52 in msg.fields:
            keys = self.ledger.terminal_keys(str(msg.get(41, "")))
            outcome = sec.verify_pin(self, msg, pan, card, keys)
            if outcome == "no_keys":
                return Decision("96", "PIN block from a terminal that never signed on")
            if outcome == "wrong":
                tries = card.pin_tries + 1
                self.ledger.update_card(pan, pin_tries=tries)
                if tries >= self.config.pin_tries:
                    return Decision("75", f"wrong PIN, {tries} tries")
                return Decision("55", f"wrong PIN ({tries}/{self.config.pin_tries})")
            if card.pin_tries:
                self.ledger.update_card(pan, pin_tries=0)
        return None

    def _against_original(self, txn: TxnType, msg: Message, base: dict[str, Any], decline: Any,
                          card: Card | None) -> Message:
        """Void (undo a sale) or completion (capture a pre-authorization)."""
        okey = original_key(msg, self.family)
        if okey is None:
            raise TransactionError(f"field {'61' if self.family == 'unionpay' else '90'}: "
                                   f"{txn.value} without original data")
        orig = self.ledger.find(okey)
        now = self._now()
        pan, amount, mid = base["pan"], base["amount"], base["mid"]
        if txn == TxnType.VOID:
            if orig is None or orig.kind not in ("sale", "completion") or orig.rc != "00":
                return decline("25", f"no approved sale {okey} to void")
            if orig.status != "approved":
                return decline("12", f"original {okey} is {orig.status}")
            if orig.settlement is not None:
                return decline("12", f"original {okey} already settled")
            if orig.pan != pan or orig.mid != mid:
                return decline("12", "void names a sale of another card or merchant")
            if amount and amount != orig.amount:
                return decline("64", f"void amount {amount} != original {orig.amount}")
            with self.ledger.step():
                row = self.ledger.record(rc="00", extra={}, status="approved", original=orig.id, **base)
                self.ledger.post("void", orig.id, [(payable_account(orig.mid), -orig.amount),
                                                   (card_account(orig.pan), orig.amount)], now)
                self.ledger.update(orig, status="voided", cardholder_debit=0, merchant_credit=0)
                extra = self._extra_for(row.id, "00")
                self.ledger.update(row, extra={str(k): v for k, v in extra.items()})
            self._emit("posting", mti=msg.mti, stan=base["stan"], tid=base["tid"], amount=orig.amount, rc="00",
                       detail=f"void of {okey}: cardholder {mask_pan(pan)} re-credited")
            return self._response(msg, "00", extra)
        # completion
        if orig is None or orig.kind != "preauth" or orig.rc != "00":
            return decline("25", f"no approved pre-authorization {okey}")
        if orig.status != "approved" or orig.hold <= 0:
            return decline("12", f"pre-authorization {okey} is {orig.status}")
        if orig.pan != pan:
            return decline("12", "completion names a pre-authorization of another card")
        if amount > orig.hold:
            return decline("13", f"completion {amount} above the held {orig.hold}")
        with self.ledger.step():
            row = self.ledger.record(rc="00", extra={}, status="approved", original=orig.id, **base)
            self.ledger.post("preauth_release", orig.id, [(hold_account(pan), -orig.hold),
                                                          (card_account(pan), orig.hold)], now)
            self.ledger.update(orig, status="completed", hold=0)
            self.ledger.post("completion", row.id, [(card_account(pan), -amount), (payable_account(mid), amount)], now)
            extra = self._extra_for(row.id, "00")
            self.ledger.update(row, cardholder_debit=amount, merchant_credit=amount,
                               extra={str(k): v for k, v in extra.items()})
        self._emit("posting", mti=msg.mti, stan=base["stan"], tid=base["tid"], amount=amount, rc="00",
                   detail=f"completion of {okey}")
        return self._response(msg, "00", extra)

    # -- advices (store-and-forward) --------------------------------------------------------------------
    def _advice(self, txn: TxnType, msg: Message) -> Message:
        """Refund or offline sale: idempotent by key (0220 and its repeats 0221 post once), forced post."""
        key = txn_key(msg, self.family)
        existing = self.ledger.find(key)
        detect = not active(self.config.no_duplicate_detection, asyncio.get_running_loop().time())
        if existing is not None and detect:
            self._emit("duplicate", mti=msg.mti, stan=key.stan, tid=key.tid, rc=existing.rc,
                       detail=f"repeat advice {key}; already posted")
            return self._response(msg, existing.rc, {int(k): v for k, v in existing.extra.items()})
        pan, amount, tid, mid = self._request_basics(msg, txn)
        now = self._now()
        base = dict(tid=key.tid, stan=key.stan, ref=key.ref, kind=txn.value, mti=msg.mti, mid=mid, pan=pan,
                    amount=amount, fingerprint=_fingerprint(msg, self.family), batch=self._batch(msg), hold=0,
                    created_at=now.isoformat(timespec="microseconds"), day=now.date().isoformat(),
                    dup_of=existing.id if existing is not None else None)
        merchant = self._merchant(mid)
        rc = "00"
        if merchant is None:
            rc = "03"
        elif self.ledger.card(pan) is None:
            rc = "14"
        elif amount <= 0 or amount > self.config.max_amount:
            rc = "13"
        with self.ledger.step():
            row = self.ledger.record(rc=rc, extra={}, status="approved" if rc == "00" else "declined",
                                     cardholder_debit=0, merchant_credit=0, **base)
            extra = self._extra_for(row.id, rc)
            if rc == "00":
                sign = -1 if txn in CREDIT_TYPES else 1
                self.ledger.post(txn.value, row.id, [(card_account(pan), -sign * amount),
                                                     (payable_account(mid), sign * amount)], now)
                self.ledger.update(row, cardholder_debit=sign * amount, merchant_credit=sign * amount,
                                   extra={str(k): v for k, v in extra.items()})
            else:
                self.ledger.update(row, extra={str(k): v for k, v in extra.items()})
        self._emit("posting" if rc == "00" else "decline", mti=msg.mti, stan=key.stan, tid=tid, amount=amount,
                   rc=rc, detail=f"advice {txn.value}")
        return self._response(msg, rc, extra)

    # -- reversals ---------------------------------------------------------------------------------------
    def _reversal(self, txn: TxnType, msg: Message) -> Message:
        okey = original_key(msg, self.family) or txn_key(msg, self.family)
        now = self._now()
        known = self.ledger.reversal(okey)
        if known is not None:
            self._emit("duplicate", mti=msg.mti, stan=okey.stan, tid=okey.tid, rc=known.rc,
                       detail=f"repeat reversal of {okey}; already {known.status}")
            return self._response(msg, known.rc)
        orig = self.ledger.find(okey)
        if orig is None:
            if active(self.config.ignore_unknown_reversal, asyncio.get_running_loop().time()):
                self._emit("reversal", mti=msg.mti, stan=okey.stan, tid=okey.tid, rc="00",
                           detail=f"original {okey} unknown; acknowledged and forgotten (ignore_unknown_reversal)")
                return self._response(msg, "00")
            with self.ledger.step():
                self.ledger.record_reversal(okey, "unknown_original", "00", None, now)
            self._emit("reversal", mti=msg.mti, stan=okey.stan, tid=okey.tid, rc="00",
                       detail=f"original {okey} unknown; acknowledged and remembered")
            return self._response(msg, "00")
        if orig.rc != "00" or orig.status not in ("approved",):
            with self.ledger.step():
                self.ledger.record_reversal(okey, "applied", "00", orig.id, now)
                if orig.status == "declined":
                    self.ledger.update(orig, status="declined", reversed_at=_iso(now))
            self._emit("reversal", mti=msg.mti, stan=okey.stan, tid=okey.tid, rc="00",
                       detail=f"original {okey} was {orig.status}; nothing to undo")
            return self._response(msg, "00")
        if orig.settlement is not None:
            policy = self.config.late_reversal or ("reject" if self.family == "unionpay" else "reverse")
            if policy == "reject":
                with self.ledger.step():
                    self.ledger.record_reversal(okey, "rejected_settled", "12", orig.id, now)
                self._emit("reversal", mti=msg.mti, stan=okey.stan, tid=okey.tid, rc="12",
                           detail=f"original {okey} already settled in {orig.settlement}; reversal refused")
                return self._response(msg, "12")
        with self.ledger.step():
            self._undo(orig, now, settled=orig.settlement is not None)
            self.ledger.record_reversal(okey, "applied", "00", orig.id, now)
        self._emit("reversal", mti=msg.mti, stan=okey.stan, tid=okey.tid, amount=orig.amount, rc="00",
                   detail=f"{orig.kind} {okey} reversed")
        return self._response(msg, "00")

    def _undo(self, orig: TxnRow, now: _dt.datetime, *, settled: bool) -> None:
        """Undo the money effect of an approved request (inside a ledger step)."""
        stamp = _iso(now)
        if orig.kind == "preauth":
            if orig.hold:
                self.ledger.post("preauth_reversal", orig.id, [(hold_account(orig.pan), -orig.hold),
                                                               (card_account(orig.pan), orig.hold)], now)
            self.ledger.update(orig, status="reversed", hold=0, reversed_at=stamp)
        elif orig.kind == "void":
            sale = self.ledger.txn(orig.original) if orig.original is not None else None
            if sale is not None and sale.status == "voided":
                self.ledger.post("void_reversal", sale.id, [(card_account(sale.pan), -sale.amount),
                                                            (payable_account(sale.mid), sale.amount)], now)
                self.ledger.update(sale, status="approved", cardholder_debit=sale.amount,
                                   merchant_credit=sale.amount)
            self.ledger.update(orig, status="reversed", reversed_at=stamp)
        elif orig.kind == "balance":
            self.ledger.update(orig, status="reversed", reversed_at=stamp)
        else:  # sale, completion (and advices, if a terminal reverses one)
            net = orig.cardholder_debit
            if net:
                self.ledger.post(f"{orig.kind}_reversal", orig.id, [(card_account(orig.pan), net),
                                                                   (payable_account(orig.mid), -net)], now)
            if settled and orig.merchant_credit:
                # the merchant was already settled: carry a negative adjustment into the next settlement
                self.ledger.record(
                    tid=orig.tid, stan=orig.stan, ref=orig.ref, kind="adjustment", mti=orig.mti, mid=orig.mid,
                    pan=orig.pan, amount=orig.amount, rc="00", extra={}, fingerprint="", batch=orig.batch,
                    status="approved", cardholder_debit=0, hold=0, merchant_credit=-orig.merchant_credit,
                    created_at=stamp, day=now.date().isoformat(), dup_of=orig.id, original=orig.id)
                self.ledger.update(orig, status="reversed", cardholder_debit=0, reversed_at=stamp)
            else:
                self.ledger.update(orig, status="reversed", cardholder_debit=0, merchant_credit=0, reversed_at=stamp)

    # -- settlement with the terminal -----------------------------------------------------------------------
    def terminal_totals(self, tid: str, batch: str) -> SettlementTotals:
        """The host's own totals of a terminal's open batch (what 0500 is checked against)."""
        totals = SettlementTotals()
        for row in self._open_batch_rows(tid, batch):
            kind = TxnType(row.kind)
            if kind in DEBIT_TYPES or kind in CREDIT_TYPES:
                totals = totals.add(kind, row.amount)
        return totals

    def _open_batch_rows(self, tid: str, batch: str) -> list[TxnRow]:
        closed = self._closed_batches(tid)
        out = []
        for row in self.ledger.rows():
            if row.tid != tid or row.dup_of is not None or row.rc != "00" or row.status != "approved":
                continue
            if row.kind not in {t.value for t in DEBIT_TYPES | CREDIT_TYPES}:
                continue
            if row.batch in closed or (row.batch and row.batch != batch):
                continue
            out.append(row)
        return out

    def _closed_batches(self, tid: str) -> set[str]:
        return self.ledger.closed_batches(tid)

    def _settlement(self, txn: TxnType, msg: Message) -> Message:
        tid = str(msg.get(41, ""))
        batch = batch_number(msg, self.family)
        if not tid or not batch:
            raise TransactionError("settlement needs field 41 and a batch number (ISO field 60 / UnionPay 60.2)")
        theirs = SettlementTotals.from_message(msg, self.family)
        ours = self.terminal_totals(tid, batch)
        rc = "00" if theirs == ours else "95"
        now = self._now()
        with self.ledger.step():
            if rc == "00":
                self._close_batch(tid, batch, ours, theirs, now)
            else:
                self.ledger.save_terminal_batch(tid, batch, "mismatch", _totals_dict(ours), _totals_dict(theirs), now)
        self._emit("settlement", mti=msg.mti, tid=tid, rc=rc,
                   detail=f"batch {batch}: terminal {_totals_dict(theirs)} host {_totals_dict(ours)}")
        extra: dict[int, Any] = {}
        if self.family == "unionpay":
            extra[48] = msg.get(48)
            f60 = dict(msg.get(60) or {})
            extra[60] = f60
        else:
            extra.update({n: msg[n] for n in (74, 76, 86, 88) if n in msg})
        return self._response(msg, rc, {k: v for k, v in extra.items() if v is not None})

    def _close_batch(self, tid: str, batch: str, ours: SettlementTotals, theirs: SettlementTotals,
                     now: _dt.datetime) -> None:
        for row in self._open_batch_rows(tid, batch):
            if not row.batch:
                self.ledger.update(row, batch=batch)
        self.ledger.save_terminal_batch(tid, batch, "closed", _totals_dict(ours), _totals_dict(theirs), now)

    def _batch_upload(self, txn: TxnType, msg: Message) -> Message:
        """0320 after a 95: the terminal lists its transactions; the host notes any it never saw."""
        tid = str(msg.get(41, ""))
        batch = batch_number(msg, self.family)
        stan = str(msg.get(11, ""))
        known = any(r.stan == stan for r in self._open_batch_rows(tid, batch)) or \
            any(r.tid == tid and r.stan == stan for r in self.ledger.rows())
        if not known:
            with self.ledger.step():
                self.ledger.set_meta(f"upload_unknown:{tid}:{batch}:{stan}", str(_amount_or_none(msg)))
            self._emit("batch_upload", mti=msg.mti, tid=tid, stan=stan, detail="transaction unknown to the host")
        return self._response(msg, "00")

    def _settlement_final(self, txn: TxnType, msg: Message) -> Message:
        tid = str(msg.get(41, ""))
        batch = batch_number(msg, self.family)
        now = self._now()
        ours = self.terminal_totals(tid, batch)
        with self.ledger.step():
            prior = self.ledger.terminal_batch(tid, batch)
            theirs = prior["terminal_totals"] if prior else _totals_dict(ours)
            self._close_batch(tid, batch, ours, SettlementTotals(**theirs), now)
        self._emit("settlement_final", mti=msg.mti, tid=tid, rc="00", detail=f"batch {batch} closed")
        return self._response(msg, "00")

    # -- host-side settlement and payouts (simulated clock) ---------------------------------------------
    def run_settlement(self, day: _dt.date) -> list[Any]:
        """Daily cut-off for ``day``: see :func:`host_sim.settlement.settle_day`."""
        from .settlement import settle_day
        return settle_day(self.ledger, day, self.config, self._now(), self._closed_batches)

    def run_payouts(self, now: _dt.datetime | None = None) -> list[Any]:
        """Pay (or retry) every settlement whose value date has come: see :mod:`host_sim.payouts`."""
        from .payouts import run_payouts
        return run_payouts(self.ledger, now or self._now(), self.config, self.events)

    async def run_schedule(self, *, days: int | None = None) -> None:
        """Run cut-off and payouts at each daily cut-off of the injected clock (virtual or real).

        Sleeps with ``asyncio.sleep`` on the loop, so under the simulation's virtual clock a day
        passes in microseconds. Stops after ``days`` cut-offs (None: until cancelled).
        """
        done = 0
        while days is None or done < days:
            now = self._now()
            cutoff = _dt.datetime.combine(now.date(), self.config.cutoff, tzinfo=now.tzinfo)
            if cutoff <= now:
                cutoff += _dt.timedelta(days=1)
            await asyncio.sleep((cutoff - now).total_seconds())
            if not self.crashed:
                self._begin()
                self.run_settlement(cutoff.date())
                self.run_payouts(self._now())
                await self._durable()
            done += 1

    # -- serving a connection -------------------------------------------------------------------
    async def serve(self, channel: Any) -> None:
        """Answer requests on one channel until the peer closes it (or the host crashes).

        Requests on a connection are handled concurrently, as a real host would (a slow issuer
        does not hold up an echo); each response goes out after its postings are committed.
        """
        await serve_channel(self, channel)


# -- pure helpers ------------------------------------------------------------------------------------
_NO_SINK = object()


def _recv_event(mti: str, stan: Any, tid: Any, amount: int | None) -> dict[str, Any]:
    return {"actor": "host", "kind": "recv", "mti": mti, "stan": stan, "tid": tid, "amount": amount}


def _send_event(mti: str, stan: Any, tid: Any, rc: Any) -> dict[str, Any]:
    return {"actor": "host", "kind": "send", "mti": mti, "stan": stan, "tid": tid, "rc": rc}


def _posting_event(mti: str, stan: str, tid: str, amount: int, kind: str, masked_pan: str,
                   held: bool) -> dict[str, Any]:
    """The ``posting`` event of an approved sale or pre-authorization (its detail names the card
    by its masked PAN only)."""
    return {"actor": "host", "kind": "posting", "mti": mti, "stan": stan, "tid": tid, "amount": amount, "rc": "00",
            "detail": f"{kind} {masked_pan} {'held' if held else 'debited'}"}


#: PAN -> mask_pan(PAN), for the cards seen (bounded): the posting event of every sale names its card.
_MASKED_PANS: dict[str, str] = {}


def _masked_pan(pan: str) -> str:
    if len(_MASKED_PANS) >= 4096:
        _MASKED_PANS.clear()
    masked = _MASKED_PANS[pan] = mask_pan(pan)
    return masked

def _settle(waiters: list[Any], exc: BaseException | None) -> None:
    for waiter in waiters:
        if not isinstance(waiter, _Future):
            waiter(exc)
        elif not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)


_Future = asyncio.Future
_new_message = object.__new__


def _iso(at: _dt.datetime) -> str:
    """``at.isoformat(timespec="microseconds")``: ISO text with microseconds always present.

    Built from lookup tables for a naive datetime (every business clock here): ``isoformat`` runs
    C ``printf`` machinery, ~8k instructions a call, and every request stamps its row; this is
    ~60 % of that. The date part is formatted once per day. Aware datetimes take ``isoformat``."""
    if at.tzinfo is not None:
        return at.isoformat(timespec="microseconds")
    day = _DAY
    if at.day != day[0] or at.month != day[1] or at.year != day[2]:
        day[:] = [at.day, at.month, at.year, f"{at.year:04d}-{at.month:02d}-{at.day:02d}T"]
    micro = at.microsecond
    return f"{day[3]}{_DIGITS2[at.hour]}:{_DIGITS2[at.minute]}:{_DIGITS2[at.second]}.{_DIGITS3[micro // 1000]}" \
           f"{_DIGITS3[micro % 1000]}"


_DIGITS2 = tuple(f"{n:02d}" for n in range(60))
_DIGITS3 = tuple(f"{n:03d}" for n in range(1000))
#: day, month, year and ISO date prefix (``YYYY-MM-DDT``) of the latest stamp
_DAY: list[Any] = [None, None, None, ""]


def _f60_part(fields: dict[int, Any], name: str) -> Any:
    f60 = fields.get(60)
    return f60.get(name, "") if isinstance(f60, dict) else ""


def _base(draft: tuple[Any, ...]) -> dict[str, Any]:
    """The ``Ledger.record`` keywords of a new request row from ``_authorize``'s draft tuple."""
    (tid, stan, ref), kind, mti, mid, pan, amount, fingerprint, batch, stamp, day, dup_of = draft
    return dict(tid=tid, stan=stan, ref=ref, kind=kind, mti=mti, mid=mid, pan=pan, amount=amount,
                fingerprint=fingerprint, batch=batch, cardholder_debit=0, hold=0, merchant_credit=0,
                created_at=stamp, day=day, dup_of=dup_of)


def _pan_of(msg: Message) -> str:
    fields = msg.fields
    if 2 in fields:
        pan = str(fields[2])
    elif 35 in fields:
        track = str(fields[35])
        pan = track.replace("D", "=").split("=", 1)[0]
    else:
        raise TransactionError("field 2: PAN missing (and no track 2 in field 35)")
    if not (pan.isdigit() and 12 <= len(pan) <= 19):
        raise TransactionError(f"field 2: PAN must be 12..19 digits, found {len(pan)} characters")
    return pan


def _amount_or_none(msg: Message) -> int | None:
    value = msg.get(4)
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _fingerprint(msg: Message, family: Family, pan: str | None = None) -> str:
    """What a retransmission must repeat: card, amount, type; ``L`` prefix if local date/time present.

    The ``L`` form (with fields 12/13) also detects a retransmission under a *new* STAN. ``pan``
    may be passed when the caller already extracted it. Stored in the ledger: the text must stay
    exactly this (a BLAKE2b of the ``|``-joined parts) for fingerprints of older rows to match.
    """
    if pan is None:
        try:
            pan = _pan_of(msg)
        except TransactionError:
            pan = ""
    fields = msg.fields
    get = fields.get
    f60 = get(60)
    code = f60.get("60.1", "") if isinstance(f60, dict) else ""
    # f-string fields are str() of each value, as "|".join(str(...)) was; a copy of a prepared
    # BLAKE2b state skips the constructor's keyword parsing
    if 12 in fields and 13 in fields:
        digest = _BLAKE2B_12.copy()
        digest.update(f"{pan}|{get(3, '')}|{get(4, '')}|{code}|{get(41, '')}|{get(42, '')}|{fields[12]}|{fields[13]}"
                      .encode())
        return "L" + digest.hexdigest()
    digest = _BLAKE2B_12.copy()
    digest.update(f"{pan}|{get(3, '')}|{get(4, '')}|{code}|{get(41, '')}|{get(42, '')}".encode())
    return "N" + digest.hexdigest()


_BLAKE2B_12 = _blake2b(digest_size=12)


def _balance_field(balance: int, currency: str) -> str:
    """Field 54 additional amounts: account type 10, amount type 02 (available), currency, C/D, n12."""
    sign = "C" if balance >= 0 else "D"
    return f"1002{str(currency)[:3]:0>3}{sign}{abs(balance):012d}"


def _totals_dict(t: SettlementTotals) -> dict[str, int]:
    return {"debit_count": t.debit_count, "debit_amount": t.debit_amount,
            "credit_count": t.credit_count, "credit_amount": t.credit_amount}


__all__ = ["Host", "TxnKey"]
