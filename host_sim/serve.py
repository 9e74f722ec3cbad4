"""Serving one runtime channel (memory pipe, TCP connection, serial line) with a Host.

The wire form comes from the runtime: ``iso8583.wire.Wire(spec)`` turns frames into messages and
back (TPDU / application header envelope for UnionPay); the channel does the length header or the
serial frame. Requests are handled concurrently, responses written in completion order — the
terminal matches them by (TID, STAN).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from iso8583.channels import ChannelClosed
from iso8583.wire import Wire

from .security_glue import spec_of

if TYPE_CHECKING:
    from .host import Host

MAX_IN_FLIGHT = 64
#: id(spec) -> (spec, Wire): the spec is kept so that its id cannot be reused by another object.
_WIRES: dict[int, tuple[Any, Any]] = {}


async def serve_channel(host: Host, channel: Any) -> None:
    spec = spec_of(host)
    cached = _WIRES.get(id(spec))
    if cached is None or cached[0] is not spec:
        # a Wire is immutable once built: one per spec serves every connection (a new one cost
        # ~6 µs per connection, and the simulated terminal opens one connection per sale)
        if len(_WIRES) >= 32:   # hosts built on many distinct spec objects (tests): stay bounded
            _WIRES.clear()
        cached = _WIRES[id(spec)] = (spec, Wire(spec))
    wire = cached[1]
    tasks: set[asyncio.Task[None]] = set()
    gate: asyncio.Semaphore | None = None       # created with the first request task
    send_lock: asyncio.Lock | None = None
    # Channels that can send without waiting (in-memory ends) get each request handled with no
    # task of its own: decoded and processed as it arrives, answered from the group commit's
    # callback (Host.after_commit) — what awaiting Host.handle does, minus a task, a future and
    # two loop turns per request. Others (TCP, serial: sending may wait for the peer) keep a task.
    send_nowait = getattr(channel, "send_nowait", None)
    waiting = 0                       # requests processed, their response not yet sent or dropped
    drained: asyncio.Future[None] | None = None

    async def one(frame: bytes) -> None:
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
            assert send_lock is not None
            async with send_lock:
                await channel.send(out)
        except ChannelClosed:
            pass
        finally:
            assert gate is not None
            gate.release()

    def inline(frame: bytes) -> bool:
        """Handle ``frame`` without a task; False when it needs one (a slow issuer sleeps first)."""
        nonlocal waiting
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
        waiting += 1

        def committed(exc: BaseException | None) -> None:
            nonlocal waiting
            try:
                if exc is not None:   # rolled back (crash, failed step or commit): nothing may be answered
                    host._emit("no_commit", mti=msg.mti, stan=msg.get(11), tid=msg.get(41),
                               detail=type(exc).__name__)
                    return
                answer = host.finish(msg, response)
                if answer is None or channel.closed:
                    return
                send_nowait(wire.pack(answer, envelope.reply() if envelope is not None else None))
            except Exception:   # ChannelClosed, or what a request task's failure would have been
                pass
            finally:
                waiting -= 1
                if not waiting and drained is not None and not drained.done():
                    drained.set_result(None)

        host.after_commit(committed)
        return True

    try:
        while not host.crashed:
            try:
                frame = await channel.recv()
            except ChannelClosed:
                break
            if send_nowait is not None and inline(frame):
                continue
            if gate is None:
                gate, send_lock = asyncio.Semaphore(MAX_IN_FLIGHT), asyncio.Lock()
            await gate.acquire()
            task = asyncio.create_task(one(frame))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        if waiting:   # as for request tasks: the answers owed are sent (or dropped) before closing
            drained = asyncio.get_running_loop().create_future()
            await drained
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if not channel.closed:
            await channel.close()


def _body_bytes(frame: bytes, envelope: Any) -> bytes | None:
    """The encoded message inside a frame (after TPDU/header), for MAC checks over received bytes."""
    size = getattr(envelope, "size", None)
    if envelope is None:
        return frame
    if isinstance(size, int):
        return frame[size:]
    return None
