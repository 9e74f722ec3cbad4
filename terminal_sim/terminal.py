"""The POS terminal: the transaction state machine that decides what cardholder and merchant see.

The flow a well-made terminal follows (DESIGN §3), and which the firmware profiles break one
switch at a time:

1. before anything new, send pending reversals and advices (a terminal that cannot get its
   reversal out refuses new transactions);
2. allocate the STAN and write the attempt *and its reversal record* to the journal in one
   transaction — only then does the request leave;
3. wait for the matching response until the timeout; a response with a bad MAC or one that cannot
   be decoded counts as no response;
4. a trustworthy response clears the reversal, commits the outcome (and the batch entry) and only
   then prints; no trustworthy response turns the reversal *pending* and sends it (0400, repeated as
   0401 at the configured interval until a 0410 arrives);
5. on power-up, whatever the journal says is unfinished is finished: undecided attempts are
   reversed, approved-but-unprinted receipts are printed, reversals and advices are sent.

Steps a scenario can cut the power at (``on_step(step, attempt)`` raising :class:`PowerCut`):
``before-send``, ``after-send``, ``after-response``, ``before-print``, ``after-print`` for the
attempt's own request, and ``reversal-sent`` / ``advice-sent`` during recovery.

Time is ``loop.time()`` only (works on the virtual clock); business date-times come from the
injected ``clock``.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import operator
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from inspect import isawaitable
from typing import Any

from iso8583 import tlv
from iso8583.channels.base import ChannelError
from iso8583.framing import FramingError
from iso8583.mask import scrub_text
from iso8583.message import Message
from iso8583.transactions import (
    APPROVED_CODES,
    ENTRY_MODE,
    REVERSAL_REASON_MAC,
    REVERSAL_REASON_MALFORMED,
    REVERSAL_REASON_TERMINAL,
    REVERSAL_REASON_TIMEOUT,
    SettlementTotals,
    TxnType,
    format_amount,
    format_stan,
    is_approved,
    make_reversal,
    original_reference,
    rc_text,
    request_base,
    transmission_time,
)

from .cards import Card
from .config import TerminalConfig
from .errors import PrinterFault, TerminalError
from .journal import Journal, PendingMessage, receipt_spec
from .link import LinkError, WireLink
from .printer import Printer, Receipt, format_receipt, render_receipt
from .profiles import Profile, load_profile

Connector = Callable[[], Awaitable[Any]]
EventSink = Callable[[dict], None]
StepHook = Callable[[str, int], Any]

STEPS = ("before-send", "after-send", "after-response", "before-print", "after-print")
RECOVERY_STEPS = ("reversal-sent", "advice-sent")

#: What a dead link looks like: refused/closed/reset connections, channel errors (TCP, serial, memory).
_LINK_DOWN = (OSError, ConnectionError, ChannelError)
_EMV_TERMINAL_TAGS = {"9F02": 6, "9A": 3, "9F37": 4}
# Members used on the hot path, bound once: on CPython 3.11 reading ``TxnType.SALE`` goes through
# the enum metaclass's ``__getattr__`` hook (≈ 10x a global read).
_SALE, _VOID = TxnType.SALE, TxnType.VOID
_REVERSIBLE = frozenset((TxnType.SALE, TxnType.VOID, TxnType.PREAUTH, TxnType.COMPLETION))
_IN_BATCH = frozenset((TxnType.SALE, TxnType.COMPLETION))
_KIND_TO_TXN = {"sale": TxnType.SALE, "void": TxnType.VOID, "refund": TxnType.REFUND,
                "preauth": TxnType.PREAUTH, "completion": TxnType.COMPLETION, "balance": TxnType.BALANCE}
_REASONS = {"timeout": REVERSAL_REASON_TIMEOUT, "closed": REVERSAL_REASON_TIMEOUT,
            "bad_mac": REVERSAL_REASON_MAC, "malformed": REVERSAL_REASON_MALFORMED}


@dataclass(frozen=True, slots=True, init=False)
class TxnResult:
    """What the terminal showed for one transaction.

    ``TxnResult(attempt, outcome, rc, stan, receipt, auth_code, rrn, balance, detail)``; ``receipt``
    is the receipt text, or (from the terminal itself) the ``printer.render_receipt`` arguments,
    rendered when :attr:`receipt` is read.
    """

    attempt: int | None
    outcome: str                    # approved | declined | failed
    rc: str | None
    stan: str | None
    _receipt: str | tuple[Any, ...] | None = field(repr=False)   # see the ``receipt`` property
    auth_code: str | None
    rrn: str | None
    balance: int | None             # balance inquiry: available balance in minor units
    detail: str

    def __init__(self, attempt: int | None, outcome: str, rc: str | None = None, stan: str | None = None,
                 receipt: str | tuple[Any, ...] | None = None, auth_code: str | None = None,
                 rrn: str | None = None, balance: int | None = None, detail: str = "") -> None:
        setter = object.__setattr__
        setter(self, "attempt", attempt)
        setter(self, "outcome", outcome)
        setter(self, "rc", rc)
        setter(self, "stan", stan)
        setter(self, "_receipt", receipt)
        setter(self, "auth_code", auth_code)
        setter(self, "rrn", rrn)
        setter(self, "balance", balance)
        setter(self, "detail", detail)

    @property
    def approved(self) -> bool:
        return self.outcome == "approved"

    @property
    def receipt(self) -> str | None:
        """The receipt text if one was printed (rendered when first read)."""
        found = self._receipt
        return found if found is None or found.__class__ is str else render_receipt(*found)  # type: ignore[misc]


class _TxnResultFields:
    """A mutable twin of :class:`TxnResult` (same slots), only used by :func:`_txn_result`."""

    __slots__ = TxnResult.__slots__


def _txn_result(attempt: int | None, outcome: str, rc: str | None, stan: str | None,
                receipt: str | tuple[Any, ...] | None, auth_code: str | None, rrn: str | None,
                balance: int | None, detail: str) -> TxnResult:
    """``TxnResult(...)`` without the frozen dataclass's nine ``object.__setattr__`` calls (a
    third of the cost; one per transaction): the twin's attributes are set, then its class."""
    made = _TxnResultFields()
    made.attempt = attempt
    made.outcome = outcome
    made.rc = rc
    made.stan = stan
    made._receipt = receipt
    made.auth_code = auth_code
    made.rrn = rrn
    made.balance = balance
    made.detail = detail
    made.__class__ = TxnResult
    return made  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class SettleResult:
    ok: bool
    batch: int
    rc: str | None
    totals: SettlementTotals
    uploaded: int = 0
    detail: str = ""


@dataclass(slots=True)
class _Reply:
    kind: str                       # ok | timeout | closed | bad_mac | malformed
    msg: Message | None = None


class Terminal:
    """One POS terminal. Cheap to construct: the journal, link and printer are passed in."""

    def __init__(self, config: TerminalConfig, *, journal: Journal, connector: Connector,
                 printer: Printer | None = None, clock: Callable[[], _dt.datetime] | None = None,
                 rng: random.Random | None = None, events: EventSink | None = None,
                 on_step: StepHook | None = None, link: WireLink | None = None,
                 tmk: bytes | None = None) -> None:
        self.config = config
        self.profile: Profile = load_profile(config.profile)
        self.journal = journal
        self.connector = connector
        self.printer = printer if printer is not None else Printer()
        self.clock = clock or _dt.datetime.now
        self.rng = rng or random.Random(0)
        self.events = events
        self.on_step = on_step
        if link is None:
            from .link import Link, terminal_master_key

            link = Link(config.dialect, tmk=tmk if tmk is not None else terminal_master_key(config.tmk),
                        mac_algorithm=config.mac_algorithm, pin_format=config.pin_format, rng=self.rng)
        self.link = link
        self.family = link.family
        size = getattr(link, "field_size", None)
        self._f12_size = size(12) if size is not None else None
        # Field numbers the dialect lacks, when the link says (the real Link has them per dialect);
        # otherwise requests are filtered with link.supports().
        self._unsupported: frozenset[int] | None = getattr(link, "unsupported", None)
        self._bases: dict[tuple[TxnType, int], tuple[str, dict[int, Any]]] = {}
        self._keys: Any = None
        self._emv_day: tuple[int, bytes] = (-1, b"")
        self._clean_layouts: dict[tuple[int, ...], bool] = {}
        # Per card presented (by identity): its masked PAN and the request fields that depend on
        # the card alone — computed once, not per sale.
        self._cards: dict[int, tuple[Card, str, dict[int, Any]]] = {}
        self._templates: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._texts: tuple[Any, tuple[str, str]] = (None, ("", ""))
        stored = journal.keys()
        if stored:
            try:
                self._keys = link.unwrap_keys(stored)
            except Exception:  # a key that no longer decrypts: sign on again
                self._keys = None

    # -- plumbing ------------------------------------------------------------------------------
    def _emit(self, kind: str, **fields: Any) -> None:
        if self.events is not None:
            event = {"actor": "terminal", "kind": kind, "tid": self.config.tid}
            for k, v in fields.items():
                if v is not None:
                    event[k] = v
            self.events(event)

    @staticmethod
    def _time() -> float:
        return asyncio.get_running_loop().time()

    async def _step(self, step: str, attempt: int) -> None:
        if self.on_step is not None:
            result = self.on_step(step, attempt)
            if result is not None and isawaitable(result):
                await result

    async def _open(self) -> Any | None:
        try:
            return await self.connector()
        except _LINK_DOWN as exc:
            self._emit("connect_failed", detail=type(exc).__name__)
            return None

    @staticmethod
    async def _close(ch: Any) -> None:
        try:
            await ch.close()
        except Exception:
            pass

    async def _send(self, ch: Any, msg: Message, *, mac: bool = True, attempt: int | None = None) -> bool:
        """Pack (with MAC when keys exist) and send; False if the connection broke."""
        frame = self.link.pack(msg, self._keys if (mac and self.config.use_mac) else None)
        try:
            await ch.send(frame)
        except _LINK_DOWN as exc:
            self._emit("send_failed", mti=msg.mti, stan=msg.get(11), attempt=attempt, detail=type(exc).__name__)
            return False
        events = self.events
        if events is not None:
            stan = msg.fields.get(11)
            if stan is None:
                self._emit("send", mti=msg.mti, attempt=attempt)
            else:
                event = {"actor": "terminal", "kind": "send", "tid": self.config.tid, "mti": msg.mti, "stan": stan}
                if attempt is not None:
                    event["attempt"] = attempt
                events(event)
        return True

    async def _await_reply(self, ch: Any, request: Message, deadline: float, *, mac: bool = True,
                           attempt: int | None = None) -> _Reply:
        """The first trustworthy answer to ``request`` before ``deadline`` (loop time).

        Frames answering something else (a stale STAN) are ignored. A frame that cannot be decoded,
        or whose MAC is wrong, ends the wait: the terminal cannot trust anything on that exchange.
        """
        loop = asyncio.get_running_loop()
        keys = self._keys if (mac and self.config.use_mac) else None
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return _Reply("timeout")
            try:
                frame = await ch.recv(timeout=remaining)
            except TimeoutError:          # incl. ChannelTimeout
                return _Reply("timeout")
            except FramingError as exc:   # a broken byte stream: nothing on it can be trusted
                self._emit("recv_malformed", detail=scrub_text(str(exc))[:200])
                return _Reply("malformed")
            except (*_LINK_DOWN, EOFError) as exc:
                self._emit("recv_failed", detail=type(exc).__name__)
                return _Reply("closed")
            try:
                msg, mac_ok = self.link.unpack(frame, keys)
            except LinkError as exc:
                self._emit("recv_malformed", detail=scrub_text(str(exc))[:200])
                return _Reply("malformed")
            if not (msg.mti == _response_mti(request.mti) and msg.fields.get(11) == request.fields.get(11)
                    and msg.fields.get(41) == request.fields.get(41)):   # iso8583.transactions.matches
                self._emit("recv_unmatched", mti=msg.mti, stan=msg.get(11))
                continue
            events = self.events
            if events is not None:
                got = msg.fields
                rc = got.get(39)
                # matches() saw field 11: the event always has a STAN
                event = {"actor": "terminal", "kind": "recv", "tid": self.config.tid, "mti": msg.mti,
                         "stan": got[11]}
                if rc is not None:
                    event["rc"] = rc
                if attempt is not None:
                    event["attempt"] = attempt
                events(event)
            if keys is not None and (mac_ok is False or (mac_ok is None and self.config.require_response_mac
                                                         and is_approved(msg.get(39)))):
                self._emit("mac_failed", mti=msg.mti, stan=msg.get(11))
                return _Reply("bad_mac", msg)
            if keys is not None and msg.get(39) in self.config.resign_on_rc:
                self._emit("keys_rejected", mti=msg.mti, stan=msg.get(11), rc=msg.get(39))
                self._keys = None          # the next transaction signs on first (auto_sign_on)
            return _Reply("ok", msg)

    async def _exchange(self, request: Message, timeout: float, *, mac: bool = True) -> _Reply:
        """One request on a fresh connection, for messages that are not attempts."""
        ch = await self._open()
        if ch is None:
            return _Reply("closed")
        try:
            if not await self._send(ch, request, mac=mac):
                return _Reply("closed")
            return await self._await_reply(ch, request, self._time() + timeout, mac=mac)
        finally:
            await self._close(ch)

    def _allocate_stan(self) -> str:
        return format_stan(self.journal.next_stan)

    def _clock_texts(self, now: _dt.datetime) -> tuple[str, str]:
        """(MMDDhhmmss, ``now.isoformat(" ", "seconds")[:19]``) of ``now``, kept for the last
        instant: a request's date fields and its receipt's date are usually one business time
        (a virtual clock returns one datetime object per instant)."""
        cached = self._texts
        if cached[0] is now:
            return cached[1]
        d2 = _TWO_DIGITS
        month, day, hour, minute, second = d2[now.month], d2[now.day], d2[now.hour], d2[now.minute], d2[now.second]
        texts = (month + day + hour + minute + second,
                 f"{now.year:04d}-{month}-{day} {hour}:{minute}:{second}")
        self._texts = (now, texts)
        return texts

    def _stamp_times(self, fields: dict[int, Any], now: _dt.datetime | None = None) -> None:
        if now is None:
            now = self.clock()
        # One formatting for fields 7 (MMDDhhmmss), 12 (hhmmss) and 13 (MMDD).
        stamp = self._clock_texts(now)[0]
        if self._f12_size == 12:   # ISO 8583:1993: field 12 is YYMMDDhhmmss, field 13 is not a date
            fields[12] = f"{now.year % 100:02d}{stamp}"
            if self.family == "iso87":
                fields[7] = stamp
            return
        if self.family == "iso87":
            fields[7] = stamp
        fields[12] = stamp[4:]
        fields[13] = stamp[:4]

    def _filter(self, fields: dict[int, Any]) -> dict[int, Any]:
        """``fields`` without the ones the dialect does not have (in place: callers pass their own)."""
        unsupported = self._unsupported
        if unsupported is None:
            supports = self.link.supports
            return {n: v for n, v in fields.items() if supports(n)}
        layout = tuple(fields)   # a terminal builds a handful of layouts: remember each one's answer
        clean = self._clean_layouts.get(layout)
        if clean is None:
            if len(self._clean_layouts) > 256:
                self._clean_layouts.clear()
            clean = self._clean_layouts[layout] = unsupported.isdisjoint(layout)
        if not clean:
            for n in unsupported.intersection(fields):
                del fields[n]
        return fields

    def _batch_text(self) -> str:
        return f"{self.journal.batch:06d}"

    def _request_base(self, txn: TxnType) -> tuple[str, dict[int, Any]]:
        """``request_base`` for this terminal's family and open batch, from a small per-terminal
        cache (the template is rebuilt only when the batch changes); a fresh dict every call."""
        batch = self.journal.batch
        found = self._bases.get((txn, batch))
        if found is None:
            if len(self._bases) > 64:
                self._bases.clear()
            found = self._bases[(txn, batch)] = request_base(txn, self.family, batch=f"{batch:06d}")
        mti, template = found
        fields = dict(template)
        f60 = fields.get(60)
        if f60.__class__ is dict:       # UnionPay composite field 60: callers may change subfields
            fields[60] = dict(f60)
        return mti, fields

    def _card_info(self, card: Card) -> tuple[Card, str, dict[int, Any]]:
        """(card, masked PAN, fields read from the card alone) — cached per card object."""
        found = self._cards.get(id(card))
        if found is None or found[0] is not card:
            static: dict[int, Any] = {2: card.pan, 14: card.expiry, 22: ENTRY_MODE[card.entry]}
            if card.entry == "magstripe":
                static[35] = card.track2
            else:
                static[23] = card.card_seq
            if len(self._cards) > 64:
                self._cards.clear()
            found = self._cards[id(card)] = (card, card.masked_pan, static)
        return found

    def _card_fields(self, card: Card, amount: int, pin: str | None,
                     now: _dt.datetime | None = None) -> dict[int, Any]:
        fields = dict(self._card_info(card)[2])
        if card.entry != "magstripe":
            fields[55] = self._icc_data(card, amount, now)
        if pin:
            fields[52] = self.link.pin_block(pin, card.pan, self._keys)
        return fields

    def _icc_data(self, card: Card, amount: int, now: _dt.datetime | None = None,
                  amount_text: str | None = None) -> bytes:
        """Field 55 for this transaction: the card's EMV data with the terminal-supplied tags of
        *this* transaction — amount (9F02), date (9A), unpredictable number (9F37) — spliced in
        between the card's own bytes (their lengths are fixed), so the hot path does no TLV
        re-encoding."""
        found = _EMV_FORMATS.get(card.emv)
        if found is None:
            found = _EMV_FORMATS.setdefault(card.emv, _emv_format(_emv_plan(card.emv)))
        template, order = found
        if not order:
            return card.emv
        if now is None:
            now = self.clock()
        unpredictable = self.rng.getrandbits(32)   # drawn for every chip read (seeded runs stay stable)
        values = (bytes.fromhex(amount_text if amount_text is not None else f"{amount:012d}"),
                  self._emv_date(now), unpredictable.to_bytes(4, "big"))
        return template % order(values)

    def _emv_date(self, now: _dt.datetime) -> bytes:
        """EMV 9A (YYMMDD, BCD) of ``now``: formatted once per business day."""
        day = now.toordinal()
        cached = self._emv_day
        if cached[0] != day:
            cached = self._emv_day = (day, bytes.fromhex("%02d%02d%02d" % (now.year % 100, now.month, now.day)))  # noqa: UP031
        return cached[1]

    def _pin_for(self, card: Card, amount: int, pin: str | None) -> str | None:
        """The PIN the cardholder enters: ``pin`` if given ("" = none), else the card's own PIN when
        the terminal asks for one (always, except contactless at or below the CVM limit)."""
        if pin is not None:
            return pin or None
        if card.entry == "contactless" and amount <= self.config.contactless_cvm_limit:
            return None
        return card.pin or None

    def _build(self, txn: TxnType, *, amount: int | None, card: Card | None, pin: str | None = None,
               extra: dict[int, Any] | None = None) -> Message:
        if card is not None and not extra:
            return self._build_card(txn, amount, card, pin)
        return self._build_slow(txn, amount=amount, card=card, pin=pin, extra=extra)

    def _card_template(self, txn: TxnType, batch: int, card: Card, pin: bool,
                       amount: bool) -> tuple[Any, ...]:
        """The request of ``txn`` for ``card`` with placeholders where each transaction differs,
        its fields in the order :meth:`_build_slow` inserts them and already filtered for the
        dialect: (card, MTI, fields, chip?, field-60 dict?, fields to drop again)."""
        mti, fields = self._request_base(txn)
        fields.update(self._card_info(card)[2])
        varying = [11]
        if card.entry != "magstripe":
            fields[55] = b""
            varying.append(55)
        if pin:
            fields[52] = b""
            varying.append(52)
        if amount:
            fields[4] = ""
            varying.append(4)
        fields[11] = ""
        before = set(fields)
        self._stamp_times(fields, _dt.datetime(2000, 1, 1))
        varying += [n for n in fields if n not in before]
        fields[41] = self.config.tid
        fields[42] = self.config.mid
        fields[49] = self.config.currency
        fields = self._filter(fields)
        drop = tuple(n for n in varying if n not in fields)
        return (card, mti, fields, card.entry != "magstripe", fields.get(60).__class__ is dict, drop)

    def _build_card(self, txn: TxnType, amount: int | None, card: Card, pin: str | None) -> Message:
        """:meth:`_build_slow` for a card request without extra fields (sale, pre-authorization,
        balance): a per-card template copied, then only what differs per transaction is set — the
        same fields, values and order (tested for equivalence)."""
        batch = self.journal.batch
        key = (txn, batch, id(card), bool(pin), amount is not None)
        found = self._templates.get(key)
        if found is None or found[0] is not card:
            if len(self._templates) > 64:
                self._templates.clear()
            found = self._templates[key] = self._card_template(txn, batch, card, bool(pin), amount is not None)
        _, mti, template, chip, composite60, drop = found
        fields = template.copy()
        if composite60:
            fields[60] = dict(fields[60])
        now = self.clock()
        amount_text = None
        if amount is not None:
            amount_text = (f"{amount:012d}" if amount.__class__ is int and 0 <= amount <= 999_999_999_999
                           else format_amount(amount))
        if chip:
            fields[55] = self._icc_data(card, amount or 0, now, amount_text)
        if pin:
            fields[52] = self.link.pin_block(pin, card.pan, self._keys)
        if amount_text is not None:
            fields[4] = amount_text
        fields[11] = f"{self.journal.next_stan:06d}"   # format_stan (always 1..999999)
        self._stamp_times(fields, now)
        if drop:
            for number in drop:
                fields.pop(number, None)
        return _message(mti, fields)

    def _build_slow(self, txn: TxnType, *, amount: int | None, card: Card | None, pin: str | None = None,
                    extra: dict[int, Any] | None = None) -> Message:
        mti, fields = self._request_base(txn)
        now = self.clock()   # one business time for the request's date fields and EMV 9A
        amount_text = None
        if amount is not None:
            amount_text = (f"{amount:012d}" if amount.__class__ is int and 0 <= amount <= 999_999_999_999
                           else format_amount(amount))
        if card is not None:
            fields.update(self._card_info(card)[2])
            if card.entry != "magstripe":
                fields[55] = self._icc_data(card, amount or 0, now, amount_text)
            if pin:
                fields[52] = self.link.pin_block(pin, card.pan, self._keys)
        if amount_text is not None:
            fields[4] = amount_text
        fields[11] = self._allocate_stan()
        self._stamp_times(fields, now)
        fields[41] = self.config.tid
        fields[42] = self.config.mid
        fields[49] = self.config.currency
        if extra:
            fields.update(extra)
        return _message(mti, self._filter(fields))

    def _receipt(self, kind: str, amount: int, card_masked: str, entry: str, request: Message,
                 rc: str | None, auth: str | None, rrn: str | None, outcome: str, offline: bool = False) -> str:
        return format_receipt(
            merchant=self.config.merchant_name, mid=self.config.mid, tid=self.config.tid, kind=kind,
            amount=amount, currency=self.config.currency, card=card_masked, entry=entry,
            stan=str(request.get(11, "")), batch=self.journal.batch, rc=rc, auth_code=auth, rrn=rrn,
            when=self.clock().isoformat(" ", "seconds")[:19], outcome=outcome, offline=offline)

    async def _print(self, attempt: int, text: str | tuple[Any, ...], outcome: str, *, copy: str = "original",
                     steps: bool = True) -> bool:
        """Print a receipt, recording the result in the journal right after the paper comes out.
        ``text`` may be the ``render_receipt`` arguments instead (rendered when someone reads it)."""
        hook = self.on_step if steps else None   # as in _online
        if hook is not None and (waiting := hook("before-print", attempt)) is not None and isawaitable(waiting):
            await waiting
        at = self._time()
        try:
            self.printer.print(Receipt(attempt, text, copy, at) if text.__class__ is str
                               else Receipt.lazy(attempt, text, copy, at))  # type: ignore[arg-type]
            status = "printed"
        except PrinterFault as fault:
            status = fault.kind
        self.journal.receipt_printed(attempt, copy=copy, status=status, outcome=outcome, at=at)
        if self.events is not None:   # hot path: no event arguments built when nobody listens
            self.events({"actor": "terminal", "kind": "print" if status == "printed" else "print_failed",
                         "tid": self.config.tid, "attempt": attempt, "detail": f"{copy} {status}"})
        if hook is not None and (waiting := hook("after-print", attempt)) is not None and isawaitable(waiting):
            await waiting
        return status == "printed"

    # -- keys ----------------------------------------------------------------------------------
    @property
    def signed_on(self) -> bool:
        return self._keys is not None

    async def _ensure_keys(self) -> bool:
        if self._keys is not None or not self.config.use_mac:
            return True
        if not self.config.auto_sign_on:
            return False
        return (await self.sign_on()).approved

    async def sign_on(self) -> TxnResult:
        """0800 sign-on: the host sends fresh working keys (PIN key, MAC key) under the TMK."""
        request = self._build(TxnType.SIGN_ON, amount=None, card=None)
        request.pop(49, None)
        self.journal.use_stan(int(request[11]))
        reply = await self._exchange(request, self.config.response_timeout, mac=False)
        if reply.kind != "ok" or reply.msg is None:
            return TxnResult(None, "failed", stan=request[11], detail=f"sign-on: {reply.kind}")
        rc = reply.msg.get(39)
        if not is_approved(rc) or 62 not in reply.msg:
            return TxnResult(None, "declined", rc, request[11], detail=f"sign-on: {rc_text(rc)}")
        field62 = reply.msg[62]
        try:
            keys = self.link.unwrap_keys(field62)
        except Exception as exc:
            return TxnResult(None, "failed", rc, request[11],
                             detail=f"sign-on: field 62 rejected ({scrub_text(str(exc))})")
        stored = field62.hex() if isinstance(field62, (bytes, bytearray)) else str(field62)
        batch = None
        f60 = reply.msg.get(60)
        if (isinstance(f60, dict) and str(f60.get("60.2", "")).isdigit() and int(f60["60.2"]) > 0
                and not self.journal.batch_transactions()):
            batch = int(f60["60.2"])   # UnionPay: adopt the host's batch number, unless a batch is open
        self.journal.save_keys(stored, self._time(), batch)
        self._keys = keys
        self._emit("signed_on", stan=request[11])
        return TxnResult(None, "approved", rc, request[11], detail="working keys installed")

    async def echo(self) -> TxnResult:
        request = self._build(TxnType.ECHO, amount=None, card=None)
        request.pop(49, None)
        self.journal.use_stan(int(request[11]))
        reply = await self._exchange(request, self.config.response_timeout, mac=False)
        if reply.kind != "ok" or reply.msg is None:
            return TxnResult(None, "failed", stan=request[11], detail=f"echo: {reply.kind}")
        rc = reply.msg.get(39)
        return TxnResult(None, "approved" if is_approved(rc) else "declined", rc, request[11])

    # -- recovery ------------------------------------------------------------------------------
    async def power_up(self) -> list[int]:
        """Finish what the journal says is unfinished; returns the attempts it reversed or printed."""
        at = self._time()
        self._emit("power_up")
        touched = self.journal.recover_undecided(at, reason=REVERSAL_REASON_TERMINAL)
        if self.profile.print_unprinted_on_power_up:
            for attempt, text in self.journal.unprinted_approvals():
                await self._print(attempt, text, "approved", copy="recovery", steps=False)
                touched.append(attempt)
        await self.flush()
        return touched

    async def flush(self, *, advices: bool = True) -> bool:
        """Send pending reversals, then pending advices. True when nothing is left pending."""
        for pending in self.journal.pending_reversals():
            if not await self._send_reversal(pending):
                return False
        if advices:
            for pending in self.journal.pending_advices():
                if not await self._send_advice(pending):
                    return False
        return True

    async def recover(self, *, within: float = 3600.0) -> bool:
        """Keep sending pending reversals and advices, a round every ``reversal_interval``
        seconds, until none is left or ``within`` seconds have passed (what an idle terminal's
        background task does). True when nothing is left pending."""
        deadline = self._time() + within
        while True:
            if await self.flush():
                return True
            if self._time() + self.config.reversal_interval > deadline:
                return False
            await asyncio.sleep(self.config.reversal_interval)

    async def _send_reversal(self, pending: PendingMessage) -> bool:
        """0400, then 0401 repeats at the configured interval, until a 0410 arrives."""
        cfg = self.config
        reason = pending.reason or REVERSAL_REASON_TIMEOUT
        if not await self._ensure_keys():
            return False
        for i in range(cfg.reversal_max_tries):
            if i:
                await asyncio.sleep(cfg.reversal_interval)
            tries = self.journal.reversal_try(pending.attempt, self._time())
            transmission = transmission_time(self.clock()) if self.family == "iso87" else None
            reversal = make_reversal(pending.request, reason, self.family, repeat=tries > 1,
                                     transmission=transmission)
            reversal = _message(reversal.mti, self._filter(reversal.fields))
            self._emit("reversal_send", attempt=pending.attempt, mti=reversal.mti, stan=reversal.get(11),
                       detail=f"try {tries} reason {reason}")
            ch = await self._open()
            if ch is None:
                continue
            try:
                if not await self._send(ch, reversal, attempt=pending.attempt):
                    continue
                await self._step("reversal-sent", pending.attempt)
                reply = await self._await_reply(ch, reversal, self._time() + cfg.reversal_timeout,
                                                attempt=pending.attempt)
            finally:
                await self._close(ch)
            if reply.kind == "ok":
                self.journal.set_reversal(pending.attempt, "acked", at=self._time())
                self._emit("reversal_acked", attempt=pending.attempt, stan=reversal.get(11),
                           rc=reply.msg.get(39) if reply.msg else None)
                return True
        self._emit("reversal_unacked", attempt=pending.attempt)
        return False

    async def _send_advice(self, pending: PendingMessage) -> bool:
        """0220, then 0221 repeats, until a 0230 arrives."""
        cfg = self.config
        if not await self._ensure_keys():
            return False
        for i in range(cfg.advice_max_tries):
            if i:
                await asyncio.sleep(cfg.reversal_interval)
            tries = self.journal.advice_try(pending.attempt, self._time())
            advice = pending.request.copy()
            if tries > 1:
                advice.mti = advice.repeat_mti()
            ch = await self._open()
            if ch is None:
                continue
            try:
                if not await self._send(ch, advice, attempt=pending.attempt):
                    continue
                await self._step("advice-sent", pending.attempt)
                reply = await self._await_reply(ch, advice, self._time() + cfg.reversal_timeout,
                                                attempt=pending.attempt)
            finally:
                await self._close(ch)
            if reply.kind == "ok" and reply.msg is not None:
                rc = reply.msg.get(39)
                state = "acked" if is_approved(rc) or rc == "94" else "rejected"
                self.journal.set_advice(pending.attempt, state, self._time(), rc=rc, rrn=reply.msg.get(37))
                self._emit("advice_" + state, attempt=pending.attempt, stan=advice.get(11), rc=rc)
                return True
        self._emit("advice_unacked", attempt=pending.attempt)
        return False

    # -- transactions --------------------------------------------------------------------------
    async def sale(self, amount: int, *, card: Card, pin: str | None = None) -> TxnResult:
        """A purchase. Chip cards at or below the floor limit are approved offline (advice 0220)."""
        _check_amount("sale", amount)
        if card.entry == "chip" and 0 < amount <= self.config.floor_limit:
            return await self._offline_sale(amount, card)
        return await self._online("sale", _SALE, amount, card, pin)

    async def balance(self, *, card: Card, pin: str | None = None) -> TxnResult:
        return await self._online("balance", TxnType.BALANCE, None, card, pin)

    async def preauth(self, amount: int, *, card: Card, pin: str | None = None) -> TxnResult:
        _check_amount("pre-authorization", amount)
        return await self._online("preauth", TxnType.PREAUTH, amount, card, pin)

    async def completion(self, preauth_attempt: int, amount: int | None = None, *,
                         card: Card | None = None) -> TxnResult:
        """Complete an approved pre-authorization (for at most its amount)."""
        original = self.journal.attempt(preauth_attempt)
        if original.kind != "preauth" or original.outcome != "approved":
            raise TerminalError(f"attempt {preauth_attempt} is not an approved pre-authorization")
        amount = original.amount if amount is None else amount
        _check_amount("completion", amount)
        if amount > original.amount:
            raise TerminalError(f"completion amount {amount} exceeds the pre-authorized {original.amount}")
        orig_req = self.journal.request_of(preauth_attempt)
        extra = {38: original.auth_code, **original_reference(orig_req, self.family)}
        return await self._online("completion", TxnType.COMPLETION, amount, card, None,
                                  original=preauth_attempt, orig_request=orig_req, extra=extra)

    async def void(self, attempt: int, *, card: Card | None = None) -> TxnResult:
        """Void an approved sale or completion of the current (unsettled) batch."""
        original = self.journal.attempt(attempt)
        if original.kind not in ("sale", "completion") or original.outcome != "approved" or original.mode != "online":
            raise TerminalError(f"attempt {attempt} is not an approved online sale or completion")
        if original.voided or original.settled:
            raise TerminalError(f"attempt {attempt} is already {'voided' if original.voided else 'settled'}")
        orig_req = self.journal.request_of(attempt)
        extra: dict[int, Any] = {37: original.rrn, 38: original.auth_code,
                                 **original_reference(orig_req, self.family)}
        return await self._online("void", TxnType.VOID, original.amount, card, "", original=attempt,
                                  orig_request=orig_req, extra=extra)

    async def refund(self, amount: int, *, card: Card, original: int | None = None) -> TxnResult:
        """A refund, sent store-and-forward (0220) and kept until the host acknowledges it."""
        _check_amount("refund", amount)
        extra: dict[int, Any] = {}
        if original is not None:
            rec = self.journal.attempt(original)
            extra.update({37: rec.rrn, **original_reference(self.journal.request_of(original), self.family)})
        return await self._local_approval("refund", TxnType.REFUND, amount, card, extra, original=original,
                                          send_now=True)

    async def _offline_sale(self, amount: int, card: Card) -> TxnResult:
        auth = f"Y1{self.rng.randrange(10000):04d}"
        return await self._local_approval("sale", TxnType.OFFLINE_SALE, amount, card, {38: auth},
                                          offline=True)

    async def _local_approval(self, kind: str, txn: TxnType, amount: int, card: Card, extra: dict[int, Any], *,
                              original: int | None = None, offline: bool = False, send_now: bool = False
                              ) -> TxnResult:
        """Approve locally, journal the advice, print; the advice goes to the host store-and-forward."""
        if self.profile.flush_before_transaction:
            await self.flush()
        request = self._build(txn, amount=amount, card=card, pin="", extra=extra)
        receipt = self._receipt(kind, amount, card.masked_pan, card.entry, request, None, request.get(38), None,
                                "approved", offline=offline)
        attempt = self.journal.begin_local(
            tid=self.config.tid, kind=kind, amount=amount, pan=card.pan, entry=card.entry, request=request,
            at=self._time(), mode="offline" if offline else "online", original=original,
            receipt=receipt, auth_code=request.get(38))
        self._emit("approved_locally", attempt=attempt, stan=request.get(11), amount=amount)
        await self._print(attempt, receipt, "approved")
        if send_now:
            pending = [p for p in self.journal.pending_advices() if p.attempt == attempt]
            if pending:
                await self._send_advice(pending[0])
        return TxnResult(attempt, "approved", None, request.get(11), receipt, request.get(38))

    async def _online(self, kind: str, txn: TxnType, amount: int | None, card: Card | None, pin: str | None,
                      *, original: int | None = None, orig_request: Message | None = None,
                      extra: dict[int, Any] | None = None) -> TxnResult:
        cfg, profile, journal = self.config, self.profile, self.journal
        amount_value = amount or 0
        if card is None and orig_request is not None:
            card_fields = {n: orig_request[n] for n in (2, 14) if n in orig_request}
            masked = journal.attempt(original).card if original is not None else ""
            entry = "manual"   # key-entered from the journal: the card is not presented again
            extra = {**card_fields, 22: ENTRY_MODE["manual"], **(extra or {})}
        elif card is not None:
            masked, entry = self._card_info(card)[1], card.entry
        else:
            raise TerminalError(f"{kind} needs a card")
        pan = card.pan if card is not None else str((extra or {}).get(2, ""))
        # Nothing to flush and keys in place (the usual case): no coroutines for the checks.
        clean = profile.flush_before_transaction and (not journal.may_have_pending() or await self.flush())
        keys_ok = self._keys is not None or not cfg.use_mac or await self._ensure_keys()
        if (profile.flush_before_transaction and not clean) or not keys_ok:
            why = "pending reversal not acknowledged" if keys_ok else "not signed on (no working keys)"
            request = self._build(txn, amount=amount, card=card, pin="", extra=extra)
            attempt = journal.begin_attempt(tid=cfg.tid, kind=kind, amount=amount_value, pan=pan, entry=entry,
                                            request=request, at=self._time(), arm_reversal=False,
                                            original=original, sent=False)
            journal.decide(attempt, outcome="failed", at=self._time(), detail=why)
            self._emit("refused", attempt=attempt, detail=why)
            return TxnResult(attempt, "failed", detail=why)
        reversible = txn in _REVERSIBLE
        armed = reversible and profile.persist_reversal_before_send
        loop_time = asyncio.get_running_loop().time
        if card is not None and not extra:   # a sale, pre-authorization or balance: what _build does
            request = self._build_card(txn, amount, card, self._pin_for(card, amount_value, pin))
            attempt = journal.begin(cfg.tid, kind, amount_value, masked, entry, request, loop_time(), armed, True,
                                    "online", original)
        else:
            entered = self._pin_for(card, amount_value, pin) if card is not None else None
            request = self._build_slow(txn, amount=amount, card=card, pin=entered, extra=extra)   # _build's other case
            attempt = journal.begin_attempt(tid=cfg.tid, kind=kind, amount=amount_value, pan=pan, entry=entry,
                                            request=request, at=loop_time(), arm_reversal=armed, original=original,
                                            masked=masked if card is not None else None)
        events = self.events
        if events is not None:
            events({"actor": "terminal", "kind": "attempt", "tid": cfg.tid, "attempt": attempt,
                    "stan": request.fields[11], "amount": amount_value,
                    "detail": f"{kind} armed={'True' if armed else 'False'}"})
        # The step hook (what _step does, without making a coroutine or a call frame per step); a
        # power cut raises from it.
        hook = self.on_step
        if hook is not None and (waiting := hook("before-send", attempt)) is not None and isawaitable(waiting):
            await waiting
        try:
            ch = await self.connector()
        except _LINK_DOWN as exc:
            self._emit("connect_failed", detail=type(exc).__name__)
            journal.decide(attempt, outcome="failed", at=self._time(), detail="cannot connect to host",
                           reversal="cleared" if armed else None)
            return TxnResult(attempt, "failed", stan=request.get(11), detail="cannot connect to host")
        # ``self._send(ch, request, attempt=attempt)`` inline (the request has a STAN): one
        # coroutine less per attempt.
        frame = self.link.pack(request, self._keys if cfg.use_mac else None)
        try:
            await ch.send(frame)
            sent = True
        except _LINK_DOWN as exc:
            sent = False
            self._emit("send_failed", mti=request.mti, stan=request.get(11), attempt=attempt,
                       detail=type(exc).__name__)
        if sent and events is not None:
            events({"actor": "terminal", "kind": "send", "tid": cfg.tid, "mti": request.mti,
                    "stan": request.fields[11], "attempt": attempt})
        if hook is not None and (waiting := hook("after-send", attempt)) is not None and isawaitable(waiting):
            await waiting
        reply = (await self._await_reply(ch, request, loop_time() + cfg.response_timeout, attempt=attempt)
                 if sent else _Reply("closed"))
        if (reply.msg is not None and hook is not None and (waiting := hook("after-response", attempt)) is not None
                and isawaitable(waiting)):
            await waiting
        if reply.kind == "ok":
            try:
                await ch.close()
            except Exception:
                pass
            return await self._conclude(attempt, kind, txn, amount_value, masked, entry, request, reply.msg,
                                        reversible=reversible, original=original)
        # No trustworthy answer.
        if profile.retransmit_new_stan and reply.kind in ("timeout", "closed"):
            await self._close(ch)
            return await self._retransmit(attempt, kind, txn, amount_value, masked, entry, request,
                                          reversible=reversible, original=original)
        reason = _REASONS[reply.kind]
        detail = f"no trustworthy response ({reply.kind})"
        if reversible and profile.reverse_on_failure:
            journal.decide(attempt, outcome="failed", at=self._time(), detail=detail, reversal="pending",
                           reversal_reason=reason, request=None if armed else request)
            self._emit("reversal_pending", attempt=attempt, stan=request.get(11), detail=reason)
            pending = PendingMessage(attempt, request, "pending", reason, 0)
            if profile.late_response_grace > 0 and reply.kind == "timeout" and sent:
                return await self._reverse_but_listen(ch, attempt, kind, txn, amount_value, masked, entry,
                                                      request, pending)
            await self._close(ch)
            await self._send_reversal(pending)
        else:
            await self._close(ch)
            journal.decide(attempt, outcome="failed", at=self._time(), detail=detail,
                           reversal="dropped" if armed else None)
        return TxnResult(attempt, "failed", stan=request.get(11), detail=detail)

    async def _conclude(self, attempt: int, kind: str, txn: TxnType, amount: int, masked: str, entry: str,
                        request: Message, response: Message, *, reversible: bool, original: int | None,
                        keep_reversal: bool = False) -> TxnResult:
        """A trustworthy response came: commit what it says, then print (or the profile's order)."""
        got = response.fields
        rc = got.get(39)
        approved = rc in APPROVED_CODES   # is_approved
        auth, rrn = got.get(38), got.get(37)
        outcome = "approved" if approved else "declined"
        balance = None
        if kind == "balance" and approved:
            balance = _parse_balance(response.get(54))
        receipt: tuple[Any, ...] | None = None
        stored: str | None = None
        if approved and kind != "balance":
            # Rendered only when read (the printer roll, TxnResult.receipt); the journal keeps what
            # it is rendered from, with the outcome, before printing (journal.receipt_spec).
            cfg = self.config
            stan = str(request.fields.get(11, ""))
            when = self._clock_texts(self.clock())[1]
            receipt = (cfg.merchant_name, cfg.mid, cfg.tid, kind, amount, cfg.currency, masked, entry, stan,
                       self.journal.batch, rc, auth, rrn, when, outcome, False)
            stored = receipt_spec(cfg.merchant_name, cfg.mid, cfg.currency, when, stan)
        in_batch = approved and txn in _IN_BATCH
        void_original = original if (approved and txn is _VOID) else None
        reversal = None if keep_reversal else ("cleared" if reversible else None)
        if receipt is not None and self.profile.print_before_commit:
            await self._print(attempt, receipt, outcome)
            self.journal.decide(attempt, outcome=outcome, at=self._time(), rc=rc, auth_code=auth, rrn=rrn,
                                in_batch=in_batch, receipt=stored, reversal=reversal, void_original=void_original)
        else:
            if void_original is None:   # decide(), by position (see Journal.decide_answer)
                self.journal.decide_answer(attempt, outcome, self._time(), rc, auth, rrn, None, in_batch, stored,
                                           reversal)
            else:
                self.journal.decide(attempt, outcome=outcome, at=self._time(), rc=rc, auth_code=auth, rrn=rrn,
                                    in_batch=in_batch, receipt=stored, reversal=reversal,
                                    void_original=void_original)
            if self.events is not None:
                event = {"actor": "terminal", "kind": "decided", "tid": self.config.tid, "attempt": attempt,
                         "stan": request.fields[11]}
                if rc is not None:
                    event["rc"] = rc
                event["detail"] = outcome
                self.events(event)
            if receipt is not None:
                await self._print(attempt, receipt, outcome)
        return _txn_result(attempt, outcome, rc, request.fields.get(11), receipt, auth, rrn, balance,
                           _RC_TEXT.get(rc) or _rc_text(rc))

    async def _retransmit(self, attempt: int, kind: str, txn: TxnType, amount: int, masked: str, entry: str,
                          request: Message, *, reversible: bool, original: int | None) -> TxnResult:
        """The ``retransmit_new_stan`` firmware bug: send the same purchase again as a new request."""
        cfg, profile = self.config, self.profile
        current = request
        for _ in range(profile.retransmit_count):
            current = current.copy()
            fields = dict(current.fields)
            fields[11] = self._allocate_stan()
            self._stamp_times(fields)
            current = _message(current.mti, self._filter(fields))
            armed = reversible and profile.persist_reversal_before_send and profile.reverse_on_failure
            self.journal.add_request(attempt, current, self._time(), arm_reversal=armed)
            self._emit("retransmit", attempt=attempt, stan=current.get(11))
            ch = await self._open()
            if ch is None:
                continue
            try:
                sent = await self._send(ch, current, attempt=attempt)
                reply = (await self._await_reply(ch, current, self._time() + cfg.response_timeout,
                                                 attempt=attempt) if sent else _Reply("closed"))
            finally:
                await self._close(ch)
            if reply.kind == "ok":
                return await self._conclude(attempt, kind, txn, amount, masked, entry, current, reply.msg,  # type: ignore[arg-type]
                                            reversible=reversible, original=original)
        self.journal.decide(attempt, outcome="failed", at=self._time(), detail="no response after retransmission",
                            reversal="dropped" if reversible and profile.persist_reversal_before_send else None)
        return TxnResult(attempt, "failed", stan=current.get(11), detail="no response after retransmission")

    async def _reverse_but_listen(self, ch: Any, attempt: int, kind: str, txn: TxnType, amount: int,
                                  masked: str, entry: str, request: Message,
                                  pending: PendingMessage) -> TxnResult:
        """The ``late_response_accepted`` firmware bug: the reversal goes out while the old
        connection is still read, and a late approval on it is shown and printed anyway."""
        deadline = self._time() + self.profile.late_response_grace
        listener = asyncio.ensure_future(self._await_reply(ch, request, deadline, attempt=attempt))
        try:
            await self._send_reversal(pending)
            late = await listener
        finally:
            if not listener.done():
                listener.cancel()
            await self._close(ch)
        if late.kind == "ok" and late.msg is not None and is_approved(late.msg.get(39)):
            self._emit("late_response_accepted", attempt=attempt, stan=request.get(11))
            return await self._conclude(attempt, kind, txn, amount, masked, entry, request, late.msg,
                                        reversible=True, original=None, keep_reversal=True)
        return TxnResult(attempt, "failed", stan=request.get(11), detail="no response (timeout)")

    # -- settlement ----------------------------------------------------------------------------
    async def settle(self) -> SettleResult:
        """Close the batch: pending reversals (and advices) first, then 0500 with totals; on a
        totals mismatch (95) upload every transaction (0320) and send the closing message."""
        cfg, profile, journal = self.config, self.profile, self.journal
        batch = journal.batch
        upload_advices = profile.upload_advices_before_settlement
        if not await self.flush(advices=upload_advices) or not await self._ensure_keys():
            return SettleResult(False, batch, None, SettlementTotals(), detail="pending reversal/advice not sent")
        rows = journal.batch_transactions()
        totals = SettlementTotals()
        counted = []
        for attempt, kind, mode, amount, request, advice in rows:
            if not upload_advices and advice == "pending":
                continue  # the faulty firmware counts only what the host has seen
            totals = totals.add(TxnType.OFFLINE_SALE if mode == "offline" else _KIND_TO_TXN[kind], amount)
            counted.append((attempt, kind, request))
        request = self._build(TxnType.SETTLEMENT, amount=None, card=None, extra=totals.to_fields(self.family))
        journal.use_stan(int(request[11]))
        reply = await self._exchange(request, cfg.response_timeout)
        if reply.kind != "ok" or reply.msg is None:
            journal.record_settlement(batch=batch, totals=_tuple(totals), rc=None, uploaded=False, closed=False,
                                      at=self._time())
            return SettleResult(False, batch, None, totals, detail=f"settlement: {reply.kind}")
        rc = reply.msg.get(39)
        uploaded = 0
        if rc == "95":
            for attempt, _kind, original in counted:
                extra = {n: original[n] for n in (2, 3, 4, 14, 22, 37, 38) if n in original}
                extra.update(original_reference(original, self.family))
                upload = self._build(TxnType.BATCH_UPLOAD, amount=None, card=None, extra=extra)
                journal.use_stan(int(upload[11]))
                answer = await self._exchange(upload, cfg.response_timeout)
                if answer.kind != "ok":
                    journal.record_settlement(batch=batch, totals=_tuple(totals), rc=rc, uploaded=False,
                                              closed=False, at=self._time())
                    return SettleResult(False, batch, rc, totals, uploaded, f"batch upload of attempt {attempt} failed")
                uploaded += 1
            final = self._build(TxnType.SETTLEMENT_FINAL, amount=None, card=None,
                                extra=totals.to_fields(self.family))
            journal.use_stan(int(final[11]))
            closing = await self._exchange(final, cfg.response_timeout)
            if closing.kind != "ok":
                journal.record_settlement(batch=batch, totals=_tuple(totals), rc=rc, uploaded=True, closed=False,
                                          at=self._time())
                return SettleResult(False, batch, rc, totals, uploaded, "closing settlement message unanswered")
        elif not is_approved(rc):
            journal.record_settlement(batch=batch, totals=_tuple(totals), rc=rc, uploaded=False, closed=False,
                                      at=self._time())
            return SettleResult(False, batch, rc, totals, detail=f"settlement: {rc_text(rc)}")
        journal.record_settlement(batch=batch, totals=_tuple(totals), rc=rc, uploaded=uploaded > 0, closed=False,
                                  at=self._time())
        journal.close_batch(batch, at=self._time(), drop_advices=not upload_advices)
        self._emit("settled", detail=f"batch {batch:06d} rc {rc} uploaded {uploaded}")
        return SettleResult(True, batch, rc, totals, uploaded, rc_text(rc))

    # -- receipts ------------------------------------------------------------------------------
    async def reprint(self) -> bool:
        """Reprint the last receipt (the fix for 'charged, no receipt' after a printer fault)."""
        last = self.journal.last_receipt()
        if last is None:
            return False
        attempt, text, outcome = last
        return await self._print(attempt, text + "\n*** REPRINT ***", outcome, copy="reprint", steps=False)


def _check_amount(what: str, amount: object) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or not 0 < amount <= 999_999_999_999:
        raise TerminalError(f"{what} amount must be a positive integer of minor units (<= 12 digits), "
                            f"got {amount!r}")


def _emv_plan(emv: bytes) -> tuple[Any, ...]:
    """A card's EMV data cut around the values of the terminal-supplied tags: ``(bytes, tag, bytes,
    tag, ..., bytes)`` in data order, or ``()`` when the card has none of them."""
    items = tlv.decode(emv)
    ends = [item.offset for item in items[1:]] + [len(emv)]
    slots = []
    for item, end in zip(items, ends):
        size = _EMV_TERMINAL_TAGS.get(item.tag)
        if size is not None and len(item.value) == size and item.offset is not None:
            slots.append((end - size, size, item.tag))
    if not slots:
        return ()
    plan: list[Any] = []
    pos = 0
    for start, size, tag in sorted(slots):
        plan += [emv[pos:start], tag]
        pos = start + size
    plan.append(emv[pos:])
    return tuple(plan)


_EMV_FORMATS: dict[bytes, tuple[bytes, Any]] = {}
_EMV_VALUE_INDEX = {"9F02": 0, "9A": 1, "9F37": 2}


def _emv_format(plan: tuple[Any, ...]) -> tuple[bytes, Any]:
    """An :func:`_emv_plan` as a ``bytes %`` template and a function picking, from (amount,
    date, unpredictable number), the values of its slots in order — one C-level formatting per
    chip read. ``(b"", None)`` when the card has no terminal-supplied tag."""
    if not plan:
        return b"", None
    template = b"%b".join(part.replace(b"%", b"%%") for part in plan[::2])
    indexes = [_EMV_VALUE_INDEX[tag] for tag in plan[1::2]]
    if len(indexes) == 1:
        index = indexes[0]
        return template, lambda values: (values[index],)
    return template, operator.itemgetter(*indexes)


def _message(mti: str, fields: dict[int, Any]) -> Message:
    """A Message from an MTI and fields the terminal built itself (both already valid: skip
    re-validation, as the codec's decoder does)."""
    msg = Message.__new__(Message)
    msg.mti = mti
    msg.fields = fields
    return msg


def _parse_balance(value: Any) -> int | None:
    """Field 54 additional amounts: the first 20-character block's last 13 chars are C/D + 12 digits."""
    if not isinstance(value, str) or len(value) < 20:
        return None
    sign, digits = value[7], value[8:20]
    if not digits.isdigit():
        return None
    return -int(digits) if sign == "D" else int(digits)


def _tuple(t: SettlementTotals) -> tuple[int, int, int, int]:
    return (t.debit_count, t.debit_amount, t.credit_count, t.credit_amount)


_RESPONSE_MTIS: dict[str, str | None] = {}


def _response_mti(mti: str) -> str | None:
    """``Message.response_mti`` of a request MTI, memoized (None for an MTI that has none)."""
    found = _RESPONSE_MTIS.get(mti, "")
    if found == "":
        try:
            found = Message(mti).response_mti()
        except ValueError:
            found = None
        _RESPONSE_MTIS[mti] = found
    return found


_RC_TEXT: dict[str | None, str] = {}
_TWO_DIGITS = tuple(f"{i:02d}" for i in range(100))


def _rc_text(rc: str | None) -> str:
    """``rc_text``, memoized per response code."""
    text = _RC_TEXT[rc] = rc_text(rc)
    if len(_RC_TEXT) > 256:
        _RC_TEXT.clear()
    return text
