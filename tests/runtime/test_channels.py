"""Channels: the memory pipe and TCP behave the same for frames, close, reset, limits and timeouts."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from iso8583.channels import ChannelClosed, ChannelReset, ChannelTimeout, memory, tcp
from iso8583.framing import FrameTooLarge, FramingError
from posfault.clock import run_virtual


@contextlib.asynccontextmanager
async def tcp_pair(header: str = "binary2", **kw):
    """A connected (client, server-side) TCP channel pair on 127.0.0.1."""
    accepted: asyncio.Queue = asyncio.Queue()
    done = asyncio.Event()

    async def handler(ch):
        await accepted.put(ch)
        await done.wait()

    server = await tcp.serve(handler, header=header, **kw)
    try:
        client = await tcp.connect("127.0.0.1", server.port, header=header, **kw)
        peer = await asyncio.wait_for(accepted.get(), 5)
        yield client, peer
        await client.close()
    finally:
        done.set()
        await server.close()


@contextlib.asynccontextmanager
async def mem_pair(header: str = "binary2", **kw):
    a, b = memory.pipe(header=header, **kw)
    yield a, b
    await a.close()


PAIRS = {"memory": mem_pair, "tcp": tcp_pair}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


@pytest.fixture(params=sorted(PAIRS))
def pair(request):
    return PAIRS[request.param]


@pytest.mark.network
def test_frames_both_ways_in_order(pair) -> None:
    async def main():
        async with pair("ascii4") as (a, b):
            for i in range(50):
                await a.send(f"req{i}".encode())
            got = [await b.recv() for _ in range(50)]
            await b.send(b"")
            await b.send(b"resp")
            return got, await a.recv(), await a.recv()

    got, empty, resp = run(main())
    assert got == [f"req{i}".encode() for i in range(50)]
    assert (empty, resp) == (b"", b"resp")


@pytest.mark.network
def test_raw_fragments_reassemble(pair) -> None:
    async def main():
        async with pair() as (a, b):
            wire = a.wrap(b"0800 hello") + a.wrap(b"second")
            for i in range(len(wire)):
                await a.send_raw(wire[i:i + 1])
            return await b.recv(), await b.recv()

    assert run(main()) == (b"0800 hello", b"second")


@pytest.mark.network
def test_graceful_close_delivers_queued_frames_then_closed(pair) -> None:
    async def main():
        async with pair() as (a, b):
            await a.send(b"last words")
            await a.close()
            first = await b.recv()
            with pytest.raises(ChannelClosed):
                await b.recv()
            with pytest.raises(ChannelClosed):
                await a.send(b"after close")
            return first

    assert run(main()) == b"last words"


@pytest.mark.network
def test_reset_raises_channel_reset_at_peer(pair) -> None:
    async def main():
        async with pair() as (a, b):
            await a.reset()
            with pytest.raises(ChannelReset):
                await asyncio.wait_for(b.recv(), 5)
            assert a.closed

    run(main())


@pytest.mark.network
def test_oversized_frame_rejected_by_reader(pair) -> None:
    async def main():
        async with pair(max_frame=64) as (a, b):
            await a.send(b"x" * 65)
            with pytest.raises(FrameTooLarge, match="65"):
                await asyncio.wait_for(b.recv(), 5)

    run(main())


@pytest.mark.network
def test_bad_length_header_fails_reader(pair) -> None:
    async def main():
        async with pair("ascii4") as (a, b):
            await a.send_raw(b"12AB....")
            with pytest.raises(FramingError, match="ASCII digits"):
                await asyncio.wait_for(b.recv(), 5)

    run(main())


@pytest.mark.network
def test_idle_timeout(pair) -> None:
    async def main():
        async with pair(idle_timeout=0.05) as (a, b):
            with pytest.raises(ChannelTimeout, match="idle"):
                await b.recv()
            await a.send(b"ok")
            return await b.recv(timeout=None)

    assert run(main()) == b"ok"


def test_memory_pipe_idle_timeout_on_virtual_clock() -> None:
    async def main(env):
        _a, b = memory.pipe(idle_timeout=60)
        with pytest.raises(ChannelTimeout):
            await b.recv()
        return env.now()

    assert run_virtual(main) == 60.0


def test_memory_pipe_latency_preserves_order_and_close_follows_frames() -> None:
    async def main(env):
        a, b = memory.pipe(latency=0.25)
        for i in range(5):
            await a.send(bytes([i]))
        await a.close()
        got = []
        async for frame in b:
            got.append((frame, env.now()))
        return got, env.now()

    got, end = run_virtual(main)
    assert [f for f, _ in got] == [bytes([i]) for i in range(5)]
    assert all(t == 0.25 for _, t in got) and end == 0.25


def test_memory_truncated_frame_swallows_next_like_tcp() -> None:
    async def main():
        a, b = memory.pipe()
        await a.send_raw(a.wrap(b"ABCDEFGH")[:6])  # header says 8, only 4 bytes of body
        await a.send(b"XYZW")                       # goes through the stream behind the partial frame
        return await b.recv()

    assert run_virtual(main()) == b"ABCD" + b"\x00\x04XY"


@pytest.mark.network
def test_tcp_server_refuses_beyond_max_connections() -> None:
    async def main():
        hold = asyncio.Event()

        async def handler(ch):
            await hold.wait()

        async with await tcp.serve(handler, max_connections=1) as server:
            first = await tcp.connect("127.0.0.1", server.port)
            await asyncio.sleep(0.05)
            second = await tcp.connect("127.0.0.1", server.port)
            with pytest.raises(ChannelClosed):
                await asyncio.wait_for(second.recv(), 5)
            assert server.refused == 1
            hold.set()
            await first.close()

    run(main())


@pytest.mark.network
def test_connect_refused_is_channel_error() -> None:
    async def main():
        server = await tcp.serve(lambda ch: asyncio.sleep(0))
        port = server.port
        await server.close()
        with pytest.raises(ChannelClosed, match=f"127.0.0.1:{port}"):
            await tcp.connect("127.0.0.1", port, timeout=2)

    run(main())


@pytest.mark.network
def test_tcp_back_pressure_pauses_reading_without_losing_frames() -> None:
    async def main():
        async with tcp_pair(max_queue=8, max_frame=5000) as (a, b):
            async def flood():
                for i in range(300):
                    await a.send(i.to_bytes(2, "big") * 2000)   # 1.2 MB in all
            sender = asyncio.create_task(flood())
            await asyncio.sleep(0.2)
            queued, paused = len(b.inbox), b.protocol._paused_reading
            got = [int.from_bytes((await b.recv(timeout=5))[:2], "big") for _ in range(300)]
            await sender
            return queued, paused, got

    queued, paused, got = run(main())
    assert paused                      # the reader stopped reading: the rest waits in the kernel
    assert queued < 150                # memory bounded by max_queue (+ one read's worth)
    assert got == list(range(300))     # and nothing was lost


def test_direct_link_ends_have_every_attribute_of_a_memory_channel() -> None:
    """The fault link's ends set a memory channel's attributes themselves (a cheaper constructor):
    an attribute added to Channel or MemoryChannel must not be missing from them."""
    from posfault.faults import direct_pipe

    async def main() -> tuple[set[str], list[set[str]]]:
        plain, _ = memory.pipe()
        term, host, link = direct_pipe()
        await link.stop()
        return set(vars(plain)), [{name for name in vars(plain) if hasattr(end, name)} for end in (term, host)]

    plain, ends = run_virtual(main())
    assert len(plain) > 10 and ends == [plain, plain]


class _ServerLike:
    """A reader that waits as itself (what host_sim.serve.DirectServer registers)."""

    def __init__(self) -> None:
        self.woken = 0

    def done(self) -> bool:
        return False

    def set_result(self, _value: object) -> None:
        self.woken += 1


def test_inbox_arm_waiter_with_a_waiter_of_its_own_follows_the_same_rule() -> None:
    """Inbox.arm_waiter(loop, name, waiter): the waiter is registered and woken like a future; at the
    end of the stream it is not registered and None comes back (instead of ChannelClosed); the error
    still comes first, and a second reader is still refused."""
    from iso8583.channels.base import ChannelError, Inbox

    loop = asyncio.new_event_loop()
    try:
        inbox, reader = Inbox(), _ServerLike()
        assert inbox.arm_waiter(loop, "x", reader) is reader and inbox._waiter is reader
        with pytest.raises(ChannelError, match="one reader per channel"):
            inbox.arm_waiter(loop, "x", _ServerLike())
        inbox.put(b"frame")
        assert reader.woken == 1 and inbox._waiter is None and len(inbox) == 1
        inbox.close()
        assert inbox.arm_waiter(loop, "x", reader) is None and inbox._waiter is None
        with pytest.raises(ChannelClosed, match="x: closed by peer"):
            inbox.arm_waiter(loop, "x")            # a plain reader is told by an exception
        failed = Inbox()
        failed.fail(ChannelReset("reset"))
        for waiter in (None, reader):               # the error first, with or without a waiter
            with pytest.raises(ChannelReset):
                failed.arm_waiter(loop, "x", waiter)
    finally:
        loop.close()
