"""Shared test helpers: a tiny stand-in codec, and linked terminal/host channel pairs over a FaultLink
on the memory pipe (virtual time) or on real loopback TCP (terminal -> proxy -> host)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from iso8583.channels import Channel, tcp
from iso8583.channels.memory import pipe
from iso8583.errors import DecodeError
from iso8583.message import Message
from iso8583.wire import Wire
from posfault.clock import run_virtual
from posfault.faults import FaultLink, FaultPlan, faulty_pipe
from posfault.trace import Trace


class TextSpec:
    """A trivial text dialect ("MTI;n=v;n=v"), so fault matching is tested apart from the real codec."""

    name = "text"
    wire = {"length": "binary2"}


def _encode(msg: Message, spec: Any) -> bytes:
    return ";".join([msg.mti, *(f"{n}={v}" for n, v in msg.items())]).encode()


def _decode(data: bytes, spec: Any) -> Message:
    try:
        mti, *parts = data.decode("ascii").split(";")
        return Message(mti, {int(k): v for k, v in (p.split("=", 1) for p in parts)})
    except Exception as exc:
        raise DecodeError(f"not a text message: {exc}", offset=0) from None


TEXT_WIRE = Wire(TextSpec(), encode=_encode, decode=_decode)


def msg(mti: str, stan: int, tid: str = "10000001", **extra: str) -> bytes:
    fields = {11: f"{stan:06d}", 41: tid, **{int(k[1:]): v for k, v in extra.items()}}
    return TEXT_WIRE.pack(Message(mti, fields))


def unpack(frame: bytes) -> Message:
    return TEXT_WIRE.unpack(frame)[0]


@contextlib.asynccontextmanager
async def memory_link(plan: FaultPlan, trace: Trace | None = None, **kw: Any) -> AsyncIterator[tuple[Channel, Channel, FaultLink]]:
    terminal, host, link = faulty_pipe(plan, wire=TEXT_WIRE, trace=trace, **kw)
    try:
        yield terminal, host, link
    finally:
        await link.stop()


@contextlib.asynccontextmanager
async def pumped_link(plan: FaultPlan, trace: Trace | None = None, **kw: Any) -> AsyncIterator[tuple[Channel, Channel, FaultLink]]:
    """The pumped FaultLink (a task per direction) between two memory pipes, as the proxy runs it:
    the reference the task-free DirectLink of ``faulty_pipe`` must match."""
    terminal, link_t = pipe(header=TEXT_WIRE.prefix, names=("link:terminal", "link:proxy-t"), **kw)
    link_h, host = pipe(header=TEXT_WIRE.prefix, names=("link:proxy-h", "link:host"), **kw)
    link = FaultLink(link_t, link_h, plan, wire=TEXT_WIRE, trace=trace, name="link")
    link.start()
    try:
        yield terminal, host, link
    finally:
        await link.stop()


@contextlib.asynccontextmanager
async def tcp_link(plan: FaultPlan, trace: Trace | None = None, **kw: Any) -> AsyncIterator[tuple[Channel, Channel, FaultLink]]:
    host_side: asyncio.Queue[Channel] = asyncio.Queue()
    links: asyncio.Queue[FaultLink] = asyncio.Queue()
    release = asyncio.Event()

    async def host_handler(ch: Channel) -> None:
        await host_side.put(ch)
        await release.wait()

    host_server = await tcp.serve(host_handler, name="host")

    async def proxy_handler(ch: Channel) -> None:
        upstream = await tcp.connect("127.0.0.1", host_server.port, name="upstream")
        link = FaultLink(ch, upstream, plan, wire=TEXT_WIRE, trace=trace, name="proxy")
        await links.put(link)
        await link.run()

    proxy = await tcp.serve(proxy_handler, name="proxy")
    terminal = await tcp.connect("127.0.0.1", proxy.port, name="terminal")
    try:
        host = await asyncio.wait_for(host_side.get(), 5)
        link = await asyncio.wait_for(links.get(), 5)
        yield terminal, host, link
    finally:
        release.set()
        await terminal.close()
        await proxy.close()
        await host_server.close()


LINKS = {"memory": memory_link, "pumped": pumped_link, "tcp": tcp_link}
#: Delays used per transport: virtual seconds are free, real ones must stay short.
SCALE = {"memory": 10.0, "pumped": 10.0, "tcp": 0.1}


def run_on(kind: str, main: Callable[[], Awaitable[Any]]) -> Any:
    if kind in ("memory", "pumped"):
        return run_virtual(main())
    return asyncio.run(asyncio.wait_for(main(), 20))


async def recv_all(ch: Channel, timeout: float) -> list[bytes]:
    """Every frame arriving within ``timeout`` seconds of quiet."""
    out = []
    while True:
        try:
            out.append(await ch.recv(timeout=timeout))
        except TimeoutError:
            return out
