"""Serving one runtime channel (memory pipe, TCP connection, serial line) with a Host.

The wire form comes from the runtime: ``iso8583.wire.Wire(spec)`` turns frames into messages and
back (TPDU / application header envelope for UnionPay); the channel does the length header or the
serial frame. Requests are handled concurrently, responses written in completion order — the
terminal matches them by (TID, STAN).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from iso8583.channels import ChannelClosed
from iso8583.wire import Wire

from .security_glue import spec_of

if TYPE_CHECKING:
    from .host import Host

MAX_IN_FLIGHT = 64
#: id(spec) -> (spec, Wire): the spec is kept so that its id cannot be reused by another object.
_WIRES: dict[int, tuple[Any, Any]] = {}


def _wire_of(host: Host) -> Any:
    spec = spec_of(host)
    cached = _WIRES.get(id(spec))
    if cached is None or cached[0] is not spec:
        # a Wire is immutable once built: one per spec serves every connection (a new one cost
        # ~6 µs per connection, and the simulated terminal opens one connection per sale)
        if len(_WIRES) >= 32:   # hosts built on many distinct spec objects (tests): stay bounded
            _WIRES.clear()
        cached = _WIRES[id(spec)] = (spec, Wire(spec))
    return cached[1]


class _Requests:
    """The requests of one connection: decoded, processed and answered — by the task reading the
    channel (:func:`serve_channel`) or, on an in-memory end, by :class:`DirectServer` with no task.

    Channels that can send without waiting (in-memory ends) get each request handled with no
    task of its own: decoded and processed as it arrives, answered from the group commit's
    callback (Host.after_commit) — what awaiting Host.handle does, minus a task, a future and
    two loop turns per request. Others (TCP, serial: sending may wait for the peer) keep a task.
    """

    __slots__ = ("channel", "drained", "gate", "host", "send_lock", "send_nowait", "tasks", "waiting", "wire")

    def __init__(self, host: Host, channel: Any) -> None:
        self.host = host
        self.channel = channel
        self.wire = _wire_of(host)
        self.send_nowait = getattr(channel, "send_nowait", None)
        self.tasks: set[asyncio.Task[None]] | None = None   # request tasks (made by run(), when needed)
        self.gate: asyncio.Semaphore | None = None       # created with the first request task
        self.send_lock: asyncio.Lock | None = None
        self.waiting = 0   # requests processed, their response not yet sent or dropped
        #: called when ``waiting`` drops to 0 (the reader's way to learn it: completing its future,
        #: or scheduling its close)
        self.drained: Callable[[], Any] | None = None

    async def one(self, frame: bytes) -> None:
        host, wire, channel = self.host, self.wire, self.channel
        try:
            try:
                msg, envelope = wire.unpack(frame)
            except Exception as exc:  # undecodable: say so (masked) and keep the connection
                host._emit("decode_error", detail=str(exc)[:200])
                return
            body = _body_bytes(frame, envelope)
            response = await host.handle(msg, envelope, body)
            if response is None or channel.closed:
                return
            out = wire.pack(response, envelope.reply() if envelope is not None else None)
            assert self.send_lock is not None
            async with self.send_lock:
                await channel.send(out)
        except ChannelClosed:
            pass
        finally:
            assert self.gate is not None
            self.gate.release()

    def inline(self, frame: bytes, last: bool = False) -> bool:
        """Handle ``frame`` without a task; False when it needs one (a slow issuer sleeps first).
        ``last``: nothing else happens before the caller returns to the loop (see Host.after_commit)."""
        host, wire = self.host, self.wire
        try:
            msg, envelope = wire.unpack(frame)
        except Exception as exc:  # undecodable: say so (masked) and keep the connection
            host._emit("decode_error", detail=str(exc)[:200])
            return True
        if host.crashed or not msg.is_request:
            return True
        if host.config.issuer_slow and host.needs_wait(msg):
            return False
        try:
            response = host.process(msg, _body_bytes(frame, envelope))
        except Exception:   # as a request task's failure: this request gets no answer
            return True
        self.waiting += 1
        # (a partial of a method rather than a closure: one object per request instead of a
        # function and a cell per variable it reads)
        host.after_commit(partial(self._committed, msg, envelope, response), last=last)
        return True

    def _committed(self, msg: Any, envelope: Any, response: Any, exc: BaseException | None) -> None:
        """The commit callback of a request handled by :meth:`inline`: answer it, or say why not."""
        host = self.host
        try:
            if exc is not None:   # rolled back (crash, failed step or commit): nothing may be answered
                host._emit("no_commit", mti=msg.mti, stan=msg.get(11), tid=msg.get(41),
                           detail=type(exc).__name__)
                return
            answer = host.finish(msg, response)
            if answer is None or self.channel.closed:
                return
            self.send_nowait(self.wire.pack(answer, envelope.reply() if envelope is not None else None))
        except Exception:   # ChannelClosed, or what a request task's failure would have been
            pass
        finally:
            self.waiting -= 1
            if not self.waiting and self.drained is not None:
                drained, self.drained = self.drained, None
                drained()

    async def run(self) -> None:
        """Read and answer requests until the peer closes (or the host crashes); then wait for the
        answers owed and close. (The body of :func:`serve_channel`.)"""
        host, channel = self.host, self.channel
        tasks = self.tasks
        if tasks is None:
            tasks = self.tasks = set()
        try:
            while not host.crashed:
                try:
                    frame = await channel.recv()
                except ChannelClosed:
                    break
                if self.send_nowait is not None and self.inline(frame):
                    continue
                if self.gate is None:
                    self.gate, self.send_lock = asyncio.Semaphore(MAX_IN_FLIGHT), asyncio.Lock()
                await self.gate.acquire()
                task = asyncio.create_task(self.one(frame))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            if self.waiting:   # as for request tasks: the answers owed are sent (or dropped) before closing
                drained = asyncio.get_running_loop().create_future()
                self.drained = lambda: drained.done() or drained.set_result(None)
                await drained
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            if not channel.closed:
                await channel.close()


async def serve_channel(host: Host, channel: Any) -> None:
    await _Requests(host, channel).run()


class DirectServer(_Requests):
    """Serves one in-memory channel end (the host end of posfault's DirectLink) with no task.

    What :func:`serve_channel` does, step for step, but driven by the inbox: instead of a task
    awaiting ``recv`` (a task, a future per wait, a loop turn per wake-up), the server leaves
    itself in the inbox as its waiting reader (completing it schedules :meth:`wake` with ``call_soon``,
    as completing a reader's future schedules its task) and runs :meth:`wake` where that task
    would have resumed. Each
    request is handled inline (decode, process, answer from the commit callback); the lone
    request of a connection is committed at once when nothing else is due (Host.after_commit
    ``last``). A request that must wait (issuer_slow) hands the connection over to a task running
    :func:`serve_channel`'s loop on the same state, started right where the server stood.

    ``on_error(exc)``: what ended serving with an error (after the channel is closed), as a task
    running ``serve_channel`` would have raised it. ``on_task(task)``: a task started for the
    connection (to be cancelled at shutdown).

    (It is the connection's :class:`_Requests` itself, which a task taking over goes on with.)
    """

    __slots__ = ("_inbox", "_over", "_start_soon", "loop", "on_error", "on_task")

    def __init__(self, host: Host, channel: Any, *, on_error: Callable[[BaseException], None] | None = None,
                 on_task: Callable[[asyncio.Task[Any]], None] | None = None) -> None:
        _Requests.__init__(self, host, channel)
        self.loop = loop = asyncio.get_running_loop()
        # where start() schedules the first step (see there), looked up once
        self._start_soon = getattr(loop, "call_after_current", None) or loop.call_soon
        self._inbox = channel.inbox
        self.on_error = on_error
        self.on_task = on_task
        self._over = False

    def reopen(self) -> bool:
        """Serve its channel again, once reopened as a new connection (a simulation reuses a
        finished link with its ends and this server): True when this server ended cleanly — no
        task took over, nothing owed — and is now as new; False when it cannot be reused."""
        if not self._over or self.waiting or self.drained is not None or self.tasks is not None:
            return False
        self._over = False
        return True

    # The inbox's waiting reader (what Inbox.put and Inbox.fail complete).
    def done(self) -> bool:
        return False

    def set_result(self, _value: Any) -> None:
        self.loop.call_soon(self.wake)

    def start(self) -> None:
        """Serve from now on: the first step runs right after the current callback (where a serving
        task started by ``VirtualEventLoop.start_later`` would run), or on the next turn."""
        self._start_soon(self.wake)

    def wake(self) -> None:
        """Handle what the inbox holds; then wait again (or end)."""
        if self._over:
            return
        host = self.host
        inbox = self._inbox
        frames = inbox._frames
        try:
            while not host.crashed:
                if frames:
                    frame = frames.popleft()
                    if self.inline(frame, not frames and not inbox.eof):
                        continue
                    frames.appendleft(frame)   # a request that must wait: a task takes over
                    self._to_task()
                    return
                # What channel.recv() does on an empty inbox (Inbox.arm_waiter): raise the error, end
                # at the end of the stream, or wait — this server being the waiter; and stop once
                # this end is closed.
                if inbox.arm_waiter(self.loop, self.channel.name, self) is not None:
                    if not self.channel.closed:
                        return
                    inbox._waiter = None
                break
        except ChannelClosed:
            pass
        except Exception as exc:
            self._end(exc)
            return
        self._end(None)

    wake.pump_safe = True  # type: ignore[attr-defined]  # starts no task, arms no timer (see DirectLink)

    def _to_task(self) -> None:
        self._over = True
        loop = self.loop
        task = loop.create_task(self._rest())
        start_next = getattr(loop, "start_next", None)
        if start_next is not None:
            start_next(task)   # its first step right where this server stood
        if self.on_task is not None:
            self.on_task(task)

    async def _rest(self) -> None:
        channel = self.channel
        try:
            await self.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self.on_error is not None:
                self.on_error(exc)
        finally:
            try:
                await channel.close()
            except Exception:
                pass

    def _end(self, exc: BaseException | None) -> None:
        self._over = True
        if self.waiting:   # the answers owed are sent (or dropped) before closing; then the close
            # runs where a serving task awaiting their end would have resumed
            self.drained = lambda: self.loop.call_soon(self._close, exc)
            return
        self._close(exc)

    def _close(self, exc: BaseException | None) -> None:
        channel = self.channel
        if not channel.closed:
            try:
                channel.close_nowait()
            except Exception as error:
                exc = exc or error
        if exc is not None and self.on_error is not None:
            self.on_error(exc)


def _body_bytes(frame: bytes, envelope: Any) -> bytes | None:
    """The encoded message inside a frame (after TPDU/header), for MAC checks over received bytes."""
    if envelope is None:
        return frame
    size = getattr(envelope, "size", None)
    if isinstance(size, int):
        return frame[size:]
    return None
