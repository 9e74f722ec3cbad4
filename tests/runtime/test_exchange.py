"""Request/response matching by (TID, STAN), response timeouts, late responses, keep-alive, backoff."""

from __future__ import annotations

import asyncio
import random

import pytest

from iso8583.channels import ChannelClosed, memory, tcp
from iso8583.channels.exchange import Backoff, Exchange, KeepAlive, ResponseTimeout, connect_with_backoff
from iso8583.message import Message
from posfault.clock import run_virtual

from .harness import TEXT_WIRE, unpack


def request(stan: int, tid: str = "10000001", mti: str = "0200") -> Message:
    return Message(mti, {11: f"{stan:06d}", 41: tid})


def test_responses_matched_by_tid_and_stan_even_out_of_order() -> None:
    async def main(env):
        term, host = memory.pipe()
        async with Exchange(term, TEXT_WIRE) as ex:
            calls = [asyncio.create_task(ex.request(request(s, tid), timeout=30))
                     for s, tid in ((1, "A"), (2, "A"), (1, "B"))]
            frames = [unpack(await host.recv()) for _ in range(3)]
            for m in reversed(frames):            # answer in reverse order
                await host.send(TEXT_WIRE.pack(Message("0210", {11: m[11], 41: m[41], 39: m[41] + m[11]})))
            return [r[39] for r in await asyncio.gather(*calls)]

    assert run_virtual(main) == ["A000001", "A000002", "B000001"]


def test_timeout_then_late_response_is_kept_not_lost() -> None:
    async def main(env):
        term, host = memory.pipe()
        async with Exchange(term, TEXT_WIRE) as ex:
            with pytest.raises(ResponseTimeout) as info:
                await ex.request(request(9), timeout=60)
            timed_out_at = env.now()
            await host.recv()
            await host.send(TEXT_WIRE.pack(Message("0210", {11: "000009", 41: "10000001", 39: "00"})))
            await asyncio.sleep(1)
            return info.value, timed_out_at, ex.late, await ex.incoming.get()

    error, at, late, incoming = run_virtual(main)
    assert at == 60.0 and error.key == ("10000001", "000009")
    assert "no response to 0200" in str(error)
    assert [m.mti for m in late] == ["0210"] and incoming[0].mti == "0210"


def test_peer_requests_go_to_incoming_and_close_fails_waiters() -> None:
    async def main(env):
        term, host = memory.pipe()
        ex = Exchange(term, TEXT_WIRE).start()
        await host.send(TEXT_WIRE.pack(Message("0800", {11: "000001", 41: "T"})))
        peer_request = (await ex.incoming.get())[0]
        waiting = asyncio.create_task(ex.request(request(2), timeout=60))
        await asyncio.sleep(1)
        await host.close()
        with pytest.raises(ChannelClosed):
            await waiting
        return peer_request.mti, env.now()

    assert run_virtual(main) == ("0800", 1.0)


def test_keepalive_echoes_when_idle_and_detects_dead_line() -> None:
    async def main(env):
        term, host = memory.pipe()
        ex = Exchange(term, TEXT_WIRE).start()
        echoes: list[float] = []
        stan = iter(range(1, 100))

        async def answer_two_then_die():
            for _ in range(2):
                m = unpack(await host.recv())
                echoes.append(env.now())
                await host.send(TEXT_WIRE.pack(Message("0810", {11: m[11], 41: m[41], 39: "00"})))
            await host.recv()                       # third echo: never answered

        dead = asyncio.Event()
        ka = KeepAlive(ex, lambda: Message("0800", {11: f"{next(stan):06d}", 41: "T", 70: "301"}),
                       interval=30, timeout=10, on_dead=dead.set).start()
        server = asyncio.create_task(answer_two_then_die())
        await dead.wait()
        server.cancel()
        return echoes, env.now(), ka.sent, ka.failures

    echoes, died_at, sent, failures = run_virtual(main)
    assert echoes == [30.0, 60.0]
    assert died_at == 100.0 and sent == 3 and failures == 1


def test_backoff_is_exponential_capped_and_seeded() -> None:
    plain = Backoff(initial=1, factor=2, maximum=10, jitter=0)
    assert [plain.next_delay() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    a = Backoff(jitter=0.2, rng=random.Random(3))
    b = Backoff(jitter=0.2, rng=random.Random(3))
    assert [a.next_delay() for _ in range(5)] == [b.next_delay() for _ in range(5)]


@pytest.mark.network
def test_connect_with_backoff_reaches_a_server_that_starts_late() -> None:
    async def main():
        loop = asyncio.get_running_loop()
        probe = await tcp.serve(lambda ch: asyncio.sleep(0))
        port = probe.port
        await probe.close()
        retries: list[int] = []

        async def start_late():
            await asyncio.sleep(0.15)
            return await tcp.serve(lambda ch: asyncio.sleep(0), port=port)

        starter = asyncio.create_task(start_late())
        t0 = loop.time()
        ch = await connect_with_backoff(lambda: tcp.connect("127.0.0.1", port, timeout=1),
                                        backoff=Backoff(initial=0.05, jitter=0),
                                        on_retry=lambda n, e, d: retries.append(n))
        elapsed = loop.time() - t0
        await ch.close()
        await (await starter).close()
        return retries, elapsed

    retries, elapsed = asyncio.run(asyncio.wait_for(main(), 10))
    assert retries and retries == list(range(1, len(retries) + 1))
    assert 0.1 <= elapsed < 3


def test_connect_with_backoff_gives_up_after_attempts() -> None:
    async def main(env):
        async def refuse():
            raise ChannelClosed("refused")

        with pytest.raises(ChannelClosed):
            await connect_with_backoff(refuse, backoff=Backoff(initial=1, jitter=0), attempts=4)
        return env.now()

    assert run_virtual(main) == 1 + 2 + 4
