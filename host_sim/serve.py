"""Serving one runtime channel (memory pipe, TCP connection, serial line) with a Host.

The wire form comes from the runtime: ``iso8583.wire.Wire(spec)`` turns frames into messages and
back (TPDU / application header envelope for UnionPay); the channel does the length header or the
serial frame. Requests are handled concurrently, responses written in completion order — the
terminal matches them by (TID, STAN).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .host import Host

MAX_IN_FLIGHT = 64
#: id(spec) -> (spec, Wire): the spec is kept so that its id cannot be reused by another object.
_WIRES: dict[int, tuple[Any, Any]] = {}


async def serve_channel(host: Host, channel: Any) -> None:
    from iso8583.channels import ChannelClosed  # type: ignore[attr-defined]
    from iso8583.wire import Wire  # type: ignore[import-not-found]

    from .security_glue import spec_of

    spec = spec_of(host)
    cached = _WIRES.get(id(spec))
    if cached is None or cached[0] is not spec:
        # a Wire is immutable once built: one per spec serves every connection (a new one cost
        # ~6 µs per connection, and the simulated terminal opens one connection per sale)
        cached = _WIRES[id(spec)] = (spec, Wire(spec))
    wire = cached[1]
    tasks: set[asyncio.Task[None]] = set()
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    send_lock = asyncio.Lock()

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
            async with send_lock:
                await channel.send(out)
        except ChannelClosed:
            pass
        finally:
            gate.release()

    try:
        while not host.crashed:
            try:
                frame = await channel.recv()
            except ChannelClosed:
                break
            await gate.acquire()
            task = asyncio.create_task(one(frame))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
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
