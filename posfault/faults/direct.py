"""DirectLink: the fault link of an in-memory connection, without pump tasks.

Why: a simulation opens one connection per transaction (as UnionPay terminals do) and runs
thousands of transactions per second. :class:`~posfault.faults.link.FaultLink` is written for
real transports — one reading task per direction, a supervising task, futures to wait on them —
which is the right shape for TCP and serial, but on a memory pipe it costs more than the terminal
and host logic it carries. Here the two channel ends hand what they send straight to the link,
which applies the same :class:`~posfault.faults.rules.FaultPlan` and writes the outcome into the
other end's inbox: no task and no future per connection or message; a delayed or fragmented
delivery is a loop timer.

The behaviour is FaultLink's, event for event (``recv``, ``deliver``, ``undeliverable``,
``reset``, ``closed``, ``error``, same fields and details), and the parity tests in
``tests/runtime/test_faults.py`` run both. What a side sends is processed once the sender yields —
right after its current step on :class:`~posfault.clock.VirtualEventLoop` (``call_after_current``),
on the next turn on another loop — so the sender's own "sent" event comes first in the trace, as
with a pumped link. :func:`posfault.faults.faulty_pipe` uses this class unless ``latency`` or
``idle_timeout`` is asked for (those need the pumped link's per-hop timing).

A reader about to wait on an empty end (the terminal waiting for its answer) first runs, itself,
what the loop would run next anyway once it yields — this link's drain, the host side's step
(``host_sim.serve.DirectServer``), the drain of the answer — as long as those callbacks can arm no
timer and start no task (no fault rule, no delayed delivery pending). When the answer is then
queued, ``recv`` returns it with no future, no timer and no loop turn; the order of everything is
the one the loop would have produced (``tests/sim/test_fast_paths.py`` runs both).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import sys
from collections import deque
from collections.abc import Callable
from typing import Any

from iso8583.channels.base import ChannelClosed, ChannelReset, ChannelTimeout, Inbox
from iso8583.channels.memory import MemoryChannel
from iso8583.framing import (
    DEFAULT_MAX_FRAME,
    Deframer,
    FrameTooLarge,
    FramingError,
    LengthPrefix,
    length_prefix,
)

from .link import FaultLink, connection_of, decide_and_record, record_delivery
from .rules import TO_HOST, TO_TERMINAL, Delivery, FaultPlan

__all__ = ["DirectLink", "direct_pipe"]

_refs = sys.getrefcount

_CLOSE = object()   # a graceful close travels behind the frames sent before it
_RESET = object()
_EXPIRED = object()  # what a timed-out receive's waiter is woken with


def _forward_event(link: str, direction: str, conn: int | None, frame: bytes) -> dict[str, Any]:
    """The "recv" event of a frame no rule could act on (what decide_and_record records for it)."""
    return {"actor": "net", "kind": "recv", "link": link, "direction": direction, "conn": conn,
            "size": len(frame), "action": "forward", "frame": frame}


def _deliver_event(link: str, direction: str, conn: int | None, frame: bytes) -> dict[str, Any]:
    """The "deliver" event of a whole frame (what record_delivery records for it)."""
    return {"actor": "net", "kind": "deliver", "link": link, "direction": direction, "conn": conn,
            "size": len(frame), "frame": frame}


def _side_of(link: str, direction: str) -> str:
    """The link's side that receives what is sent in ``direction`` (as a pumped link's channels are
    called: events, errors)."""
    return f"{link}:proxy-t" if direction == TO_HOST else f"{link}:proxy-h"


def _closed_event(link: str, direction: str, conn: int) -> dict[str, Any]:
    """The "closed" event of a link whose sender of ``direction`` closed (what FaultLink._emit
    records for it)."""
    return {"actor": "net", "kind": "closed", "link": link, "direction": direction, "conn": conn,
            "detail": f"{_side_of(link, direction)} closed"}


class _EndedLink:
    """What the ends of a finished :class:`DirectLink` refer to instead of it: what they read of
    their link once it is done."""

    _done = True
    _loop = None
    _wake_inline = None

    @staticmethod
    def _input(direction: str, item: Any, raw: bool) -> None:
        pass   # as DirectLink._input once done


_ENDED = _EndedLink()


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_result(_EXPIRED)


class _Woken:
    """The reader's stand-in waiter while :func:`_pump` runs the callbacks queued after the current
    one: completing it records where the reader's wake-up would have been queued then (how many
    callbacks were queued before it)."""

    __slots__ = ("after", "before")

    def __init__(self, after: Any) -> None:
        self.after = after
        self.before: int | None = None

    def done(self) -> bool:
        return self.before is not None

    def set_result(self, _value: Any) -> None:
        self.before = len(self.after)


def _pump_safe(callback: Any) -> bool:
    """Whether ``callback``, queued to run after the current one, may run inside a reader's step:
    it starts no task step and arms no timer (so nothing changes order). A direct link's drain when
    no rule, black hole or delayed delivery can make it arm a timer; a callback marked
    ``pump_safe`` (the host side's :class:`host_sim.serve.DirectServer` step)."""
    if getattr(callback, "__func__", None) is _DRAIN:
        link = callback.__self__
        plan = link.plan
        return not plan.rules and not link._outboxes and link._loop.time() >= plan.blackhole_until
    return getattr(callback, "pump_safe", False)


def _run_next(loop: Any, after: Any) -> None:
    """Run the first callback queued after the current one, as the loop would run it (a failure
    goes to the loop's exception handler, not to the reader whose step pumps it)."""
    callback, args, _context = after.popleft()
    try:
        callback(*args)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        loop._callback_failed(callback, exc, None)


def _pump(loop: Any, after: Any, inbox: Inbox) -> None:
    """Run the safe callbacks queued after the current one (a reader's step, about to wait on an
    empty ``inbox``) until the inbox is woken — a frame, the end, an error — or an unsafe one is
    next, exactly as the loop would run them once the reader yields. When woken, the callbacks
    queued before the reader's wake-up would have been still run first; those after it stay queued
    (they would run after the reader's step anyway). The first callback is safe (the caller just
    checked: it is not asked twice)."""
    woken = _Woken(after)
    inbox._waiter = woken  # type: ignore[assignment]
    try:
        while True:
            _run_next(loop, after)
            if not after or not _pump_safe(after[0][0]):
                break
            before = woken.before
            if before is not None:
                # (The link's own callbacks queue nothing ahead of the reader's wake-up: a drain
                # writes one direction's frames, the host side runs after it. Run them if any.)
                while before and after and _pump_safe(after[0][0]):
                    before -= 1
                    _run_next(loop, after)
                break
    finally:
        if inbox._waiter is woken:
            inbox._waiter = None


class _End(MemoryChannel):
    """One end of a direct faulty connection: receives like a memory pipe end, sends into the link."""

    # What MemoryChannel.__init__ (and Channel.__init__) set to the same value for every end, as
    # class defaults (an assignment makes the instance's own): a simulation makes two ends per
    # transaction, and the chain of initialisers cost more than the rest of the connection.
    # tests/runtime/test_channels.py checks that no attribute of a memory channel is missing.
    idle_timeout = None
    _closed = False
    #: Channel.closed, as a plain attribute kept equal to ``_closed`` (read several times per
    #: request: whether an answer may still be sent, whether the server goes on).
    closed = False
    peer = None
    latency = 0.0
    _deframer = None
    _in_flight = ()   # never used: an end sends into its link, never through MemoryChannel._push
    _timer = None
    _loop = None

    def __init__(self, link: DirectLink, out: str, name: str, prefix: LengthPrefix, max_frame: int) -> None:
        # ``prefix`` is already a LengthPrefix (the link normalises it once).
        self.name = name
        self.prefix = prefix
        self.max_frame = max_frame
        self.inbox = Inbox()
        self._max_length = prefix.max_length
        self._link = link
        self._out = out   # the direction of what this end sends

    def _reopen(self, link: DirectLink, name: str) -> None:
        """Be what ``__init__`` makes, for ``link`` and ``name`` (same direction, prefix and limit):
        open, nothing queued, no error (see :meth:`DirectLink.reopen`)."""
        self.name = name
        self._link = link
        self._closed = self.closed = False
        if self.idle_timeout is not None:
            self.idle_timeout = None
        inbox = self.inbox   # as a new Inbox()
        inbox._frames.clear()
        inbox._waiter = inbox._error = inbox.on_drained = None
        inbox.eof = False

    async def recv(self, timeout: float | None = ...) -> bytes:  # type: ignore[assignment]
        """As :meth:`Channel.recv`; a timed wait is one loop timer on the waiting future (the terminal
        waits for every response with a timeout; ``asyncio.timeout`` costs several times more)."""
        inbox = self.inbox
        frames = inbox._frames
        if frames:
            return frames.popleft()
        if self._closed:
            raise ChannelClosed(f"{self.name}: channel is closed")
        if timeout is ...:
            timeout = self.idle_timeout
        link = self._link
        loop = link._loop
        if (link._wake_inline is not None and loop._in_fast_callback and not loop._wake_inline  # type: ignore[attr-defined]
                and inbox._waiter is None and not inbox.eof):
            after = loop._after_current  # type: ignore[attr-defined]
            if after and _pump_safe(after[0][0]):
                # What runs next anyway — this link handing the frame over, the host side answering
                # it (host_sim.serve.DirectServer), the answer handed back — runs now, in order: when
                # the answer is back, no future, no timer and no loop turn are needed to wait for it.
                _pump(loop, after, inbox)
                if frames:
                    return frames.popleft()
        while not frames:
            waiter = inbox.arm_waiter(loop, self.name)
            if timeout is None:    # the host side: wait for the next frame or the end
                try:
                    await waiter
                finally:
                    if inbox._waiter is waiter:
                        inbox._waiter = None
                continue
            timer = loop.call_at(loop.time() + timeout, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                if inbox._waiter is waiter:
                    inbox._waiter = None
            if not frames and waiter.result() is _EXPIRED:
                raise ChannelTimeout(f"{self.name}: nothing received for {timeout:g} s (idle timeout)")
        return frames.popleft()

    async def send(self, frame: bytes) -> None:
        self.send_nowait(frame)

    def send_nowait(self, frame: bytes) -> None:
        """:meth:`send` without the coroutine: nothing here ever waits (the host answers from a
        commit callback with it)."""
        if self._closed:
            raise ChannelClosed(f"{self.name}: send on a closed channel")
        link = self._link
        if link._done:
            raise ChannelClosed(f"{self.name}: peer is closed")
        if len(frame) > self._max_length:
            raise FramingError(f"{self.name}: frame of {len(frame)} bytes does not fit a {self.prefix.kind} "
                               f"length header", expected=f"<= {self.prefix.max_length}", found=str(len(frame)))
        # link._input(self._out, frame, False), inline (the link is not done)
        link._queue.append((self._out, frame, False))
        if not link._scheduled:
            link._scheduled = True
            link._defer(link._drain)

    async def send_raw(self, data: bytes) -> None:
        if self._closed:
            raise ChannelClosed(f"{self.name}: send on a closed channel")
        if self._link._done:
            raise ChannelClosed(f"{self.name}: peer is closed")
        self._link._input(self._out, bytes(data), True)

    async def close(self) -> None:
        self.close_nowait()

    def close_nowait(self) -> None:
        """:meth:`close` without the coroutine (nothing here waits)."""
        if self._closed:
            return
        self._closed = self.closed = True
        inbox = self.inbox
        inbox.eof = True
        if inbox._waiter is not None:
            inbox._wake()
        link = self._link
        if not link._done:    # link._input(self._out, _CLOSE, False), inline
            link._queue.append((self._out, _CLOSE, False))
            if not link._scheduled:
                link._scheduled = True
                link._defer(link._drain)

    async def reset(self) -> None:
        self._closed = self.closed = True
        self.inbox.fail(ChannelReset(f"{self.name}: connection reset"))
        self._link._input(self._out, _RESET, False)


class _Outbox:
    """Deliveries towards one end, written at their due time in (due, arrival) order, by timers.

    A fragmented delivery with a gap keeps the outbox busy until its last piece is written, so
    nothing else interleaves with its bytes (as on a TCP stream)."""

    __slots__ = ("busy", "direction", "end", "heap", "link", "loop", "on_empty", "seq", "timer")

    def __init__(self, link: DirectLink, direction: str, end: _End) -> None:
        self.link = link
        self.direction = direction
        self.end = end
        self.loop = link._loop
        self.heap: list[tuple[float, int, Delivery]] = []
        self.seq = itertools.count()
        self.busy: tuple[Delivery, int] | None = None   # fragment in progress: (delivery, next piece)
        self.timer: asyncio.TimerHandle | None = None
        self.on_empty: Callable[[], None] | None = None

    @property
    def pending(self) -> bool:
        return bool(self.heap) or self.busy is not None

    def put(self, delivery: Delivery) -> None:
        if delivery.delay <= 0 and not self.heap and self.busy is None and not delivery.gap:
            self._write(delivery)
            return
        heapq.heappush(self.heap, (self.loop.time() + delivery.delay, next(self.seq), delivery))
        self._arm()

    def _arm(self) -> None:
        if self.busy is not None or not self.heap:
            return
        due = self.heap[0][0]
        timer = self.timer
        if timer is not None:
            if timer.when() <= due:
                return
            timer.cancel()
        self.timer = self.loop.call_at(due, self._run)

    def _run(self) -> None:
        self.timer = None
        heap = self.heap
        now = self.loop.time()
        while heap and self.busy is None and heap[0][0] <= now:
            _, _, delivery = heapq.heappop(heap)
            self._write(delivery)
            if self.link._done:
                return
        if self.busy is not None:
            return
        if heap:
            self._arm()
        elif self.on_empty is not None:
            done, self.on_empty = self.on_empty, None
            done()

    def _write(self, delivery: Delivery) -> None:
        if delivery.pieces:
            self._pieces(delivery, 0)
        else:
            self.link._write_one(self.direction, self.end, delivery.data, delivery.raw, delivery.note)

    def _pieces(self, delivery: Delivery, i: int) -> None:
        pieces = delivery.pieces
        while i < len(pieces):
            if i and delivery.gap:
                self.busy = (delivery, i)
                self.timer = self.loop.call_later(delivery.gap, self._resume)
                return
            note = f"fragment {i + 1}/{len(pieces)}"
            if not self.link._write_one(self.direction, self.end, pieces[i], True, note):
                break
            i += 1
        self.busy = None

    def _resume(self) -> None:
        self.timer = None
        busy, self.busy = self.busy, None
        if busy is None:
            return
        delivery, i = busy
        pieces = delivery.pieces
        note = f"fragment {i + 1}/{len(pieces)}"
        if self.link._write_one(self.direction, self.end, pieces[i], True, note) and i + 1 < len(pieces):
            self.busy = (delivery, i + 1)   # every later piece waits the gap again
            self.timer = self.loop.call_later(delivery.gap, self._resume)
            return
        if not self.link._done:
            self._run()

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.heap.clear()
        self.busy = None
        self.on_empty = None

    def abandon(self, reason: str) -> None:
        for _, _, delivery in sorted(self.heap):
            self.link._emit("undeliverable", self.direction, delivery.data, detail=reason, raw=delivery.raw)
        self.cancel()


class DirectLink(FaultLink):
    """A :class:`FaultLink` between two in-memory ends, driven by their sends instead of pump tasks.

    Build it with :func:`direct_pipe` (or :func:`posfault.faults.faulty_pipe`). It is live from
    construction; ``start()``/``run()`` return/await the link's end, ``stop()`` ends it silently
    (both ends then see end of stream), as for a pumped link.
    """

    # Per-link state that starts the same for every link (class defaults; set per link when it changes).
    _scheduled = False            # a drain is scheduled
    _closing: str | None = None   # the direction whose sender closed first
    _ended: asyncio.Future[None] | None = None
    #: Starts the host side's serving task, if its start was deferred (``start_later``): called
    #: once the first input (a frame, a close, a reset) has been handled, or when the link ends.
    on_first_input: Callable[[], None] | None = None
    #: What serves the host end, when its owner keeps it with the link (a simulation keeps its
    #: ``host_sim.serve.DirectServer`` here, to reuse both together: :meth:`reopen`).
    server: Any = None

    def __init__(self, plan: FaultPlan | None = None, *, wire: Any = None, trace: Any = None, name: str = "link",
                 header: LengthPrefix | str | None = "binary2", max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._loop = loop = asyncio.get_running_loop()
        prefix = header if header.__class__ is LengthPrefix else length_prefix(header)
        terminal_end = _End(self, TO_HOST, f"{name}:terminal", prefix, max_frame)
        host_end = _End(self, TO_TERMINAL, f"{name}:host", prefix, max_frame)
        self._setup(terminal_end, host_end, plan, wire, trace, name)   # FaultLink.__init__
        self.terminal_end = terminal_end
        self.host_end = host_end
        self._max_frame = max_frame
        self._prefix = prefix
        self._deframers: dict[str, Deframer] = {}
        self._queue: deque[tuple[str, Any, bool]] = deque()
        self._repack = wire.pack if wire is not None else None
        # self._outboxes (FaultLink's): created on first need (most links never delay)
        plan = self.plan
        if plan.origin is None:
            plan.start(loop.time())
        # What a side sends is handled once the sender yields: right after its current step on the
        # virtual loop (no extra iteration), on the next turn elsewhere.
        # A reader woken by what the link writes continues right after the link's callback (same
        # loop iteration) on the virtual loop; elsewhere, on the next turn as usual.
        hooks = getattr(loop, "link_hooks", None)
        if hooks is not None:   # a VirtualEventLoop
            self._defer, self._wake_inline = hooks
        else:
            self._defer = loop.call_soon
            self._wake_inline: Callable[[bool], bool] | None = None

    # -- reuse --------------------------------------------------------------------------------------------
    # A simulation opens a connection per sale; building a link, its two ends, their inboxes and a
    # host-side server, then freeing them, cost about a tenth of what the simulation layer spends on
    # a sale. A finished link that nobody else can reach is made a new connection instead.

    def reusable(self) -> bool:
        """Whether :meth:`reopen` may make this link a new connection without anyone being able to
        tell: the link is finished and idle (nothing scheduled, queued, delayed or half-deframed),
        and nothing holds it, its ends, their inboxes or its :attr:`server` but one another and the
        caller's single reference (reference counts; no weak reference either). Whoever kept an end
        (a test, a late reader), a callback still queued, a task still serving: each keeps a
        reference, and the link is then left alone (and freed once they let go)."""
        if (not self._done or self._scheduled or self._queue or self._outboxes or self._deframers
                or self._ended is not None or self.__weakref__ is not None):
            return False
        term, host, server = self.terminal_end, self.host_end, self.server
        # The references expected: to the link, the caller's, ``self`` and getrefcount's argument;
        # to an end, the link's two attributes naming it (terminal_end/terminal, host_end/host),
        # the local variable and the argument — to the host end also the server's channel and its
        # bound send_nowait; to an inbox, its end's and the argument — to the host end's also the
        # server's _inbox; to the server, the link's, the local variable and the argument.
        if server is None:
            served = _refs(host) == 4 and _refs(host.inbox) == 2
        else:
            served = _refs(host) == 6 and _refs(host.inbox) == 3 and _refs(server) == 3
        return (served and _refs(self) == 3 and _refs(term) == 4 and _refs(term.inbox) == 2
                and term.__weakref__ is None and host.__weakref__ is None
                and term._deframer is None and host._deframer is None)

    def reopen(self, plan: FaultPlan, name: str) -> None:
        """Make this finished, :meth:`reusable` link the new connection ``name``, as
        ``DirectLink(plan, name=name)`` with the other arguments it was made with: its ends
        renamed, open and empty, a new connection in the trace, counts from zero. (Its
        :attr:`server`, if any, is its keeper's to reopen.)"""
        self.plan = plan
        if plan.origin is None:
            plan.start(self._loop.time())
        self.terminal_end._reopen(self, f"{name}:terminal")
        self.host_end._reopen(self, f"{name}:host")
        self.name = name
        self.conn = connection_of(self.trace, name)
        self.counts = {}
        self._done = False
        self._closing = None
        self._scheduled = False

    def _outbox(self, direction: str) -> _Outbox:
        outbox = self._outboxes.get(direction)
        if outbox is None:
            end = self.host_end if direction == TO_HOST else self.terminal_end
            outbox = self._outboxes[direction] = _Outbox(self, direction, end)
        return outbox

    # Names of the link's own sides, as a pumped link's channels are called (events, errors).
    def _side_name(self, direction: str) -> str:
        """The side that receives what is sent in ``direction``."""
        return _side_of(self.name, direction)

    def _writer_name(self, direction: str) -> str:
        """The side that writes what travels in ``direction``."""
        return f"{self.name}:proxy-h" if direction == TO_HOST else f"{self.name}:proxy-t"

    # -- input from the ends ------------------------------------------------------------------------
    def _input(self, direction: str, item: Any, raw: bool) -> None:
        if self._done:
            return
        queue = self._queue
        if item is _RESET and queue:   # a reset loses what its side sent but the link has not read
            kept = [entry for entry in queue if entry[0] != direction]
            queue.clear()
            queue.extend(kept)
        queue.append((direction, item, raw))
        if not self._scheduled:
            self._scheduled = True
            self._defer(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        loop = self._loop
        # On the virtual loop's fast path, readers woken by these writes continue right after this
        # callback (VirtualEventLoop.wake_inline, spelt out: twice per message).
        inline = self._wake_inline is not None and loop._in_fast_callback and not loop._wake_inline  # type: ignore[attr-defined]
        if inline:
            loop._wake_inline = True  # type: ignore[attr-defined]
            loop.call_soon = loop._call_soon_inline  # type: ignore[attr-defined,method-assign]
        try:
            queue = self._queue
            while queue and not self._done:
                direction, item, raw = queue.popleft()
                if item is _CLOSE:
                    self._source_closed(direction)
                elif item is _RESET:
                    if self._closing is None:
                        self._abort(direction, "peer reset")
                elif raw or (self._deframers and self._deframers.get(direction) is not None
                             and self._deframers[direction].buffered):
                    self._bytes_in(direction, item if raw else self._prefix.wrap(item))
                elif len(item) > self._max_frame:
                    self._stream_error(direction, FrameTooLarge(len(item), self._max_frame))
                else:
                    self._frame(direction, item)
        finally:
            if inline:
                loop._wake_inline = False  # type: ignore[attr-defined]
                del loop.call_soon
        start = self.on_first_input
        if start is not None:
            self.on_first_input = None
            start()

    def _bytes_in(self, direction: str, data: bytes) -> None:
        deframer = self._deframers.get(direction)
        if deframer is None:
            deframer = self._deframers[direction] = Deframer(self._prefix, self._max_frame)
        try:
            frames = deframer.feed(data)
        except FramingError as exc:
            for frame in getattr(exc, "frames", ()):
                self._frame(direction, frame)
                if self._done:
                    return
            self._stream_error(direction, exc)
            return
        for frame in frames:
            self._frame(direction, frame)
            if self._done:
                return

    # -- one message ------------------------------------------------------------------------------------
    def _frame(self, direction: str, frame: bytes) -> None:
        outbox = self._outboxes.get(direction)
        dst = self.host_end if direction == TO_HOST else self.terminal_end
        plan = self.plan
        if not plan.rules and self._loop.time() >= plan.blackhole_until:
            # No rule can act: the plan would forward it untouched (what FaultPlan.decide says).
            counts = self.counts
            counts["forward"] = counts.get("forward", 0) + 1
            inbox = dst.inbox
            if ((outbox is not None and outbox.pending) or dst._closed or inbox.eof or dst._deframer is not None
                    or len(frame) > dst._max_length):
                record = self._record
                lazy = self._record_lazy
                if lazy is not None:
                    lazy(_forward_event, self.name, direction, self.conn, frame)
                elif record is not None:
                    record(_forward_event(self.name, direction, self.conn, frame))
                if outbox is not None and outbox.pending:
                    outbox.put(Delivery(0.0, frame))
                else:
                    self._write_one(direction, dst, frame, False, "")
                return
            # What _write_one does for a frame the receiving end can take as it is: queue it and
            # wake the reader (Inbox.put; the inbox is open, as checked just above); then the
            # "recv" and "deliver" events, together (no event can come between them: waking a
            # reader only schedules it).
            inbox.put(frame)
            pair = self._record_lazy_pair
            if pair is not None:
                pair(_forward_event, _deliver_event, self.name, direction, self.conn, frame)
            elif self._record is not None:
                self._record(_forward_event(self.name, direction, self.conn, frame))
                self._record(_deliver_event(self.name, direction, self.conn, frame))
            return
        decision = decide_and_record(self, direction, frame, self._loop.time(), dst.wrap, self._repack)
        if decision.reset:
            self._abort(direction, "fault rule")
            return
        deliveries = decision.deliveries
        if len(deliveries) == 1 and not decision.fired and (outbox is None or not outbox.pending):
            self._write_one(direction, dst, frame, False, "")   # the common case: forward now
            return
        if outbox is None:
            outbox = self._outbox(direction)
        for delivery in deliveries:
            outbox.put(delivery)
            if self._done:
                return

    def _write_one(self, direction: str, dst: Any, data: bytes, raw: bool, note: str) -> bool:  # type: ignore[override]
        if dst._closed or dst.inbox.eof:
            error: Exception | None = ChannelClosed(f"{self._writer_name(direction)}: peer is closed")
        elif not raw and len(data) > dst._max_length:
            error = FramingError(f"{self._writer_name(direction)}: frame of {len(data)} bytes does not fit a "
                                 f"{dst.prefix.kind} length header", expected=f"<= {dst.prefix.max_length}",
                                 found=str(len(data)))
        else:
            error = None
            dst._deliver(data, raw)
        if error is not None:
            self._emit("undeliverable", direction, data, detail=str(error), raw=raw)
            return False
        if self._record is not None:
            record_delivery(self, direction, data, raw, note)
        return True

    # -- the end of the connection ----------------------------------------------------------------------
    def _source_closed(self, direction: str) -> None:
        """The sender of ``direction`` closed: finish what is owed to the other side, then close it."""
        if self._closing is not None:
            return
        self._closing = direction
        outbox = self._outboxes.get(direction)
        if outbox is not None and outbox.pending:
            outbox.on_empty = self._finish_close
        else:
            self._finish_close()

    def _finish_close(self) -> None:
        direction = self._closing
        assert direction is not None
        other = TO_TERMINAL if direction == TO_HOST else TO_HOST
        if other in self._outboxes:
            self._outboxes[other].abandon(f"{'terminal' if direction == TO_HOST else 'host'} closed")
        lazy = self._record_lazy
        if lazy is not None and self.conn is not None:
            # self._emit("closed", ...) as below, its event built when the trace is read (once per
            # connection: a simulation opens one per sale)
            counts = self.counts
            counts["closed"] = counts.get("closed", 0) + 1
            lazy(_closed_event, self.name, direction, self.conn)
        else:
            self._emit("closed", direction, None, detail=f"{self._side_name(direction)} closed")
        self._finish()

    def _stream_error(self, direction: str, exc: Exception) -> None:
        if self._closing is not None:
            return
        self._emit("error", direction, None, detail=f"{self._side_name(direction)}: {exc}")
        self._abort(direction, "stream error")

    def _abort(self, direction: str, detail: str) -> None:
        self._emit("reset", direction, None, detail=detail)
        for direction_ in (TO_HOST, TO_TERMINAL):   # the pumped link's order
            if direction_ in self._outboxes:
                self._outboxes[direction_].abandon("connection reset")
        for end in (self.terminal_end, self.host_end):
            end.inbox.fail(ChannelReset(f"{end.name}: connection reset by peer"))
        self._finish()

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        for outbox in self._outboxes.values():
            outbox.cancel()
        self._queue.clear()
        for end in (self.terminal_end, self.host_end):
            inbox = end.inbox
            inbox.eof = True
            if inbox._waiter is not None:
                inbox._wake()
        ended = self._ended
        if ended is not None and not ended.done():
            ended.set_result(None)
        start = self.on_first_input
        if start is not None:   # ended before any input (stopped): the serving side still sees the end
            self.on_first_input = None
            start()
        # The ends no longer reach the link (it reaches them, for who inspects it): the connection's
        # objects form no reference cycle, so they are freed as soon as nobody holds them, without
        # waiting for (and feeding) the garbage collector — one connection per simulated sale.
        self.terminal_end._link = self.host_end._link = _ENDED  # type: ignore[assignment]

    # -- FaultLink's control surface ----------------------------------------------------------------------
    def start(self) -> asyncio.Future[None]:  # type: ignore[override]
        """Already running; returns a future that completes when the link ends."""
        if self._ended is None:
            self._ended = self._loop.create_future()
            if self._done:
                self._ended.set_result(None)
        return self._ended

    async def run(self) -> None:
        await self.start()

    async def stop(self) -> None:
        self._finish()

    def __repr__(self) -> str:
        return f"<DirectLink {self.name!r} {self.plan!r} counts={self.counts}>"


_DRAIN = DirectLink._drain


def direct_pipe(plan: FaultPlan | None = None, *, wire: Any = None, trace: Any = None, name: str = "link",
                header: LengthPrefix | str | None = "binary2",
                max_frame: int = DEFAULT_MAX_FRAME) -> tuple[MemoryChannel, MemoryChannel, DirectLink]:
    """``(terminal_end, host_end, link)`` of a faulty in-memory connection (inside a running loop)."""
    link = DirectLink(plan, wire=wire, trace=trace, name=name, header=header, max_frame=max_frame)
    return link.terminal_end, link.host_end, link
