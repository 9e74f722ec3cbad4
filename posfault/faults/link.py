"""FaultLink: the interposer that pumps frames between a terminal-side and a host-side channel,
applying a :class:`~posfault.faults.rules.FaultPlan` to each message and recording it in the trace.

The same class runs in the simulation (between two memory-pipe ends) and in the real proxy
(between an accepted TCP or serial connection and an upstream TCP connection): it only uses the
:class:`~iso8583.channels.Channel` interface and the loop's clock.

Per direction there is one pump (the reading task). Deliveries due now are written inline; delayed
ones go to a small timer-driven outbox (a heap, one writer task per direction, created on first use)
so a delayed 0210 never holds back the messages behind it. When a side closes, what is still
pending towards the *other* side is delivered, then the other side is closed; what was pending
towards the closed side is recorded as ``undeliverable``. A reset (from a peer or a ``reset`` rule)
aborts both sides at once.

Trace events (``actor="net"``): ``recv`` (a message as its sender sent it, with the fault decision:
``action``, ``rules``), ``deliver`` (bytes actually written to the receiver, after faults),
``undeliverable``, ``reset``, ``closed``, ``error``. Each carries ``link``, ``conn`` and
``direction`` (``to_host``/``to_terminal``).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Callable
from typing import Any

from iso8583.channels.base import Channel, ChannelClosed, ChannelError, ChannelReset, ChannelTimeout
from iso8583.framing import FramingError
from iso8583.wire import Peek, Wire

from .rules import TO_HOST, TO_TERMINAL, Decision, Delivery, FaultPlan

__all__ = ["FaultLink"]

EventSink = Callable[[dict[str, Any]], None]
_NO_PEEK = Peek(None, None, "no wire given: frames are not decoded")


class _Outbox:
    """Deliveries towards one channel, written at their due time, in (due, arrival) order."""

    def __init__(self, link: FaultLink, direction: str, dst: Channel) -> None:
        self.link = link
        self.direction = direction
        self.dst = dst
        self.heap: list[tuple[float, int, Delivery]] = []
        self.seq = itertools.count()
        self.busy = False  # a write is in progress (TCP drain may suspend)
        self.writer: asyncio.Task[None] | None = None
        self.wake: asyncio.Future[None] | None = None
        self.loop = asyncio.get_running_loop()

    async def put(self, delivery: Delivery) -> None:
        if delivery.delay <= 0 and not self.heap and not self.busy and not delivery.gap:
            await self.write(delivery)
            return
        heapq.heappush(self.heap, (self.loop.time() + delivery.delay, next(self.seq), delivery))
        if self.writer is None:
            self.writer = self.loop.create_task(self._run(), name=f"{self.link.name}:{self.direction}:outbox")
        self._poke()

    def _poke(self) -> None:
        wake = self.wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def write(self, delivery: Delivery) -> None:
        self.busy = True
        try:
            await self.link._write(self.direction, self.dst, delivery)
        finally:
            self.busy = False

    async def _run(self) -> None:
        loop = self.loop
        while True:
            if not self.heap:
                self.wake = loop.create_future()
                await self.wake
                continue
            due = self.heap[0][0]
            if due > loop.time():
                self.wake = wake = loop.create_future()
                handle = loop.call_at(due, lambda w=wake: w.done() or w.set_result(None))
                try:
                    await wake
                finally:
                    handle.cancel()
                continue
            _, _, delivery = heapq.heappop(self.heap)
            await self.write(delivery)

    async def flush(self) -> None:
        """Wait until everything pending has been written (used before closing the receiver)."""
        while self.heap or self.busy:
            due = self.heap[0][0] if self.heap else self.loop.time()
            await asyncio.sleep(max(0.0, due - self.loop.time()))

    def abandon(self, reason: str) -> None:
        for _, _, delivery in sorted(self.heap):
            self.link._emit("undeliverable", self.direction, delivery.data, detail=reason, raw=delivery.raw)
        self.heap.clear()
        if self.writer is not None:
            self.writer.cancel()


def decide_and_record(link: Any, direction: str, frame: bytes, now: float, wrap: Any,
                      repack: Callable[..., bytes] | None) -> Decision:
    """Ask ``link.plan`` what to do with one whole frame and record the "recv" event.

    Shared by the pumped :class:`FaultLink` and the task-free ``DirectLink`` so that both decide and
    trace identically (the parity tests compare their traces). A rule that raises must not kill the
    link: the frame is forwarded and the failure reported as an "error" event.
    """
    peek = link._peeker(frame)
    try:
        decision = link.plan.decide(direction, frame, now, peek=peek, wrap=wrap, repack=repack)
    except Exception as exc:
        link._emit("error", direction, None, detail=f"fault plan failed: {type(exc).__name__}: {exc}")
        decision = Decision(deliveries=[Delivery(0.0, frame)])
    action = decision.action
    counts = link.counts
    counts[action] = counts.get(action, 0) + 1
    record = link._record
    if record is not None:
        event = {"actor": "net", "kind": "recv", "link": link.name, "direction": direction,
                 "conn": link.conn, "size": len(frame), "action": action, "frame": frame}
        if decision.fired:
            event["rules"] = [r.label for r in decision.fired]
            if link.wire is not None and peek().mti:
                event["mti"] = peek().mti
        record(event)
    return decision


def record_delivery(link: Any, direction: str, data: bytes, raw: bool, note: str) -> None:
    """Record the "deliver" event of bytes ``link`` handed to the receiving end (both link kinds)."""
    event = {"actor": "net", "kind": "deliver", "link": link.name, "direction": direction,
             "conn": link.conn, "size": len(data)}
    if raw:
        event["raw"] = True
        if link.keep_wire_bytes:
            event["wire_bytes"] = data  # exactly as written, header included (or not)
    else:
        event["frame"] = data       # the channel adds its length header
    if note:
        event["note"] = note
    link._record(event)


def connection_of(trace: Any, name: str) -> int | None:
    """The id of a new connection called ``name`` in ``trace`` (a :class:`posfault.trace.Trace`
    numbers them, for pcap addressing); None for any other events callable."""
    opener = getattr(trace, "connection_id", None)
    if opener is not None:
        return opener(name)  # type: ignore[no-any-return]
    opener = getattr(trace, "open_connection", None)
    return opener(name).id if opener is not None else None


class FaultLink:
    """Pump frames between ``terminal`` and ``host`` through ``plan``; ``await link.run()``.

    ``wire`` (optional) decodes frames for rules that need fields and for the trace; ``trace`` is any
    ``events`` callable (a :class:`posfault.trace.Trace` also gives the link a connection id for
    pcap export). ``name`` labels the link in events.
    """

    #: Whether "deliver" events of bytes written below the frame level keep those bytes
    #: (``wire_bytes``, for the pcap). A simulation that writes no pcap turns it off per link.
    keep_wire_bytes = True

    def __init__(self, terminal: Channel, host: Channel, plan: FaultPlan | None = None, *,
                 wire: Wire | None = None, trace: EventSink | None = None, name: str = "link") -> None:
        self._setup(terminal, host, plan, wire, trace, name)

    def _setup(self, terminal: Channel, host: Channel, plan: FaultPlan | None, wire: Wire | None,
               trace: EventSink | None, name: str) -> None:
        """What both link kinds set up (positional: DirectLink calls it once per connection)."""
        self.terminal = terminal
        self.host = host
        self.plan = plan if plan is not None else FaultPlan()
        self.wire = wire
        self.trace = trace
        self.name = name
        self.conn: int | None = connection_of(trace, name)
        self.counts: dict[str, int] = {}
        # Trace.record_owned skips the defensive copy (events are built fresh here); any other
        # events callable is called as is.
        self._record: Callable[[dict[str, Any]], None] | None = (
            getattr(trace, "record_owned", trace) if trace is not None else None)
        # Trace.record_lazy, when the trace has it: the per-message events, built when read.
        self._record_lazy: Callable[..., None] | None = getattr(trace, "record_lazy", None)
        self._record_lazy_pair: Callable[..., None] | None = getattr(trace, "record_lazy_pair", None)
        self._outboxes: dict[str, Any] = {}
        self._done = False
        self._task: asyncio.Task[None] | None = None

    # -- tracing ---------------------------------------------------------------------------------------
    def _emit(self, kind: str, direction: str, frame: bytes | None = None, **extra: Any) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.trace is None:
            return
        event: dict[str, Any] = {"actor": "net", "kind": kind, "link": self.name, "direction": direction}
        if self.conn is not None:
            event["conn"] = self.conn
        if frame is not None:
            event["size"] = len(frame)
        event.update({k: v for k, v in extra.items() if v is not None})
        if frame is not None:
            event["frame" if not extra.get("raw") else "wire_bytes"] = frame
        self._record(event)  # type: ignore[misc]

    # -- pumping ---------------------------------------------------------------------------------------
    async def _write(self, direction: str, dst: Channel, delivery: Delivery) -> None:
        if delivery.pieces:
            for i, piece in enumerate(delivery.pieces):
                if i and delivery.gap:
                    await asyncio.sleep(delivery.gap)
                note = f"fragment {i + 1}/{len(delivery.pieces)}"
                if not await self._write_one(direction, dst, piece, True, note):
                    return
            return
        await self._write_one(direction, dst, delivery.data, delivery.raw, delivery.note)

    async def _write_one(self, direction: str, dst: Channel, data: bytes, raw: bool, note: str) -> bool:
        try:
            if raw:
                await dst.send_raw(data)
            else:
                await dst.send(data)
        except (ChannelError, FramingError, OSError) as exc:
            self._emit("undeliverable", direction, data, detail=str(exc), raw=raw)
            return False
        if self._record is not None:
            record_delivery(self, direction, data, raw, note)
        return True

    def _peeker(self, frame: bytes) -> Callable[[], Peek]:
        cache: list[Peek] = []
        wire = self.wire

        def peek() -> Peek:
            if not cache:
                cache.append(wire.peek(frame) if wire is not None else _NO_PEEK)
            return cache[0]
        return peek

    async def _pump(self, direction: str, src: Channel, dst: Channel) -> str:
        outbox = self._outboxes[direction]
        loop = asyncio.get_running_loop()
        wire = self.wire
        repack = wire.pack if wire is not None else None
        while True:
            try:
                frame = await src.recv()
            except ChannelReset:
                return "reset"
            except (ChannelClosed, ChannelTimeout):  # an idle side (read timeout) is hung up gracefully
                return "closed"
            except (ChannelError, FramingError) as exc:
                self._emit("error", direction, None, detail=f"{src.name}: {exc}")
                return "error"
            decision = decide_and_record(self, direction, frame, loop.time(), dst.wrap, repack)
            if decision.reset:
                return "fault-reset"
            deliveries = decision.deliveries
            if (len(deliveries) == 1 and not decision.fired and not outbox.heap and not outbox.busy):
                await self._write_one(direction, dst, frame, False, "")  # the common case: forward now
                continue
            for delivery in deliveries:
                await outbox.put(delivery)

    async def run(self) -> None:
        """Pump both directions until one side closes or resets; then close/reset the other."""
        loop = asyncio.get_running_loop()
        self.plan.start(loop.time())
        self._outboxes = {TO_HOST: _Outbox(self, TO_HOST, self.host),
                          TO_TERMINAL: _Outbox(self, TO_TERMINAL, self.terminal)}
        pumps = {
            loop.create_task(self._pump(TO_HOST, self.terminal, self.host), name=f"{self.name}:to_host"): TO_HOST,
            loop.create_task(self._pump(TO_TERMINAL, self.host, self.terminal),
                             name=f"{self.name}:to_terminal"): TO_TERMINAL,
        }
        try:
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            first = next(iter(done))
            direction = pumps[first]
            how = first.result()
            other = TO_TERMINAL if direction == TO_HOST else TO_HOST
            if how in ("reset", "fault-reset", "error"):
                self._emit("reset", direction, None, detail={"reset": "peer reset", "fault-reset": "fault rule",
                                                             "error": "stream error"}[how])
                for box in self._outboxes.values():
                    box.abandon("connection reset")
                await self._reset_both()
            else:
                # The sender of `direction` closed: finish what is owed to the other side, then close it.
                receiver = self.host if direction == TO_HOST else self.terminal
                await self._outboxes[direction].flush()
                self._outboxes[other].abandon(f"{'terminal' if direction == TO_HOST else 'host'} closed")
                self._emit("closed", direction, None, detail=f"{(self.terminal if direction == TO_HOST else self.host).name} closed")
                await receiver.close()
        finally:
            self._done = True
            for task in pumps:
                task.cancel()
            for box in self._outboxes.values():
                if box.writer is not None:
                    box.writer.cancel()
            await asyncio.gather(*pumps, *(b.writer for b in self._outboxes.values() if b.writer),
                                 return_exceptions=True)
            for ch in (self.terminal, self.host):
                if not ch.closed:
                    with contextlib.suppress(Exception):
                        await ch.close()

    async def _reset_both(self) -> None:
        for ch in (self.terminal, self.host):
            with contextlib.suppress(Exception):
                await ch.reset()

    def start(self) -> asyncio.Task[None]:
        """Run in the background; returns the task (awaiting it waits for the link to end). Idempotent."""
        if self._task is not None:
            return self._task
        self._task = asyncio.get_running_loop().create_task(self.run(), name=f"{self.name}:run")
        return self._task

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def __aenter__(self) -> FaultLink:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return f"<FaultLink {self.name!r} {self.plan!r} counts={self.counts}>"
