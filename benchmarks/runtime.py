"""Runtime benchmark: request/response exchanges per second on the simulation's transport.

Measures, in one run and on one machine:

1. ``asyncio streams`` — the peer: StreamReader/StreamWriter over a local socketpair with a 2-byte
   length header (what a naive simulation on real asyncio transports would use), real event loop;
2. ``memory pipe`` — ``iso8583.channels.memory.pipe`` on the virtual loop;
3. ``memory pipe + DirectLink + Trace`` — the simulation's configuration (``faults.faulty_pipe``):
   terminal -> fault link (empty plan) -> host, every message recorded in the trace; and the same
   with the pumped ``FaultLink`` (one task per direction, as the proxy runs on TCP) for comparison;
4. ``full exchange`` — (3) plus the real codec on both ends: the terminal packs a 0200, the host
   unpacks it and packs a 0210, the terminal unpacks it (iso87ascii).

Each exchange is one request and one response. Prints exchanges/s and the ratio to the peer.
Run: ``python3 benchmarks/runtime.py [--n 20000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iso8583 import Message, load_spec
from iso8583.channels import memory
from iso8583.wire import Wire
from posfault import faults
from posfault.clock import run_virtual
from posfault.trace import Trace

REQUEST = b"0200" + b"x" * 120
RESPONSE = b"0210" + b"y" * 100


async def streams_peer(n: int) -> float:
    a, b = socket.socketpair()
    ra, wa = await asyncio.open_connection(sock=a)
    rb, wb = await asyncio.open_connection(sock=b)

    async def host() -> None:
        for _ in range(n):
            size = int.from_bytes(await rb.readexactly(2), "big")
            await rb.readexactly(size)
            wb.write(len(RESPONSE).to_bytes(2, "big") + RESPONSE)
            await wb.drain()

    task = asyncio.create_task(host())
    start = time.perf_counter()
    for _ in range(n):
        wa.write(len(REQUEST).to_bytes(2, "big") + REQUEST)
        await wa.drain()
        size = int.from_bytes(await ra.readexactly(2), "big")
        await ra.readexactly(size)
    elapsed = time.perf_counter() - start
    await task
    wa.close()
    wb.close()
    return n / elapsed


async def _ping_pong(term, host, n: int, request=REQUEST, answer=None) -> float:
    async def serve() -> None:
        for _ in range(n):
            frame = await host.recv()
            await host.send(answer(frame) if answer else RESPONSE)

    task = asyncio.create_task(serve())
    start = time.perf_counter()
    for _ in range(n):
        await term.send(request() if callable(request) else request)
        await term.recv()
    elapsed = time.perf_counter() - start
    await task
    return n / elapsed


def bench_pipe(n: int) -> float:
    async def main():
        term, host = memory.pipe()
        return await _ping_pong(term, host, n)
    return run_virtual(main())


def bench_link(n: int) -> float:
    async def main():
        trace = Trace()
        term, host, link = faults.faulty_pipe(faults.FaultPlan(), trace=trace)
        rate = await _ping_pong(term, host, n)
        await link.stop()
        assert len(trace) >= 4 * n
        return rate
    return run_virtual(main())


def bench_pumped_link(n: int) -> float:
    """The pumped FaultLink (a task per direction, as the proxy runs it) between two memory pipes."""
    async def main():
        trace = Trace()
        term, link_t = memory.pipe(names=("terminal", "proxy-t"))
        link_h, host = memory.pipe(names=("proxy-h", "host"))
        link = faults.FaultLink(link_t, link_h, faults.FaultPlan(), trace=trace)
        link.start()
        rate = await _ping_pong(term, host, n)
        await link.stop()
        assert len(trace) >= 4 * n
        return rate
    return run_virtual(main())


def bench_full(n: int) -> float:
    wire = Wire(load_spec("iso87ascii"))
    request = Message("0200", {2: "4761739001010010", 3: "000000", 4: "000000010000", 7: "0302090000",
                               11: "000001", 12: "090000", 13: "0302", 22: "051", 25: "00",
                               41: "10000001", 42: "100000000000001", 49: "156"})

    def answer(frame: bytes) -> bytes:
        msg, _ = wire.unpack(frame)
        return wire.pack(Message("0210", {3: msg[3], 4: msg[4], 11: msg[11], 37: "000000000001",
                                          38: "123456", 39: "00", 41: msg[41], 42: msg[42]}))

    async def main():
        trace = Trace(wire=wire)
        term, host, link = faults.faulty_pipe(faults.FaultPlan(), wire=wire, trace=trace)

        async def send_request():
            await term.send(wire.pack(request))

        async def serve() -> None:
            for _ in range(n):
                await host.send(answer(await host.recv()))

        task = asyncio.create_task(serve())
        start = time.perf_counter()
        for _ in range(n):
            await send_request()
            wire.unpack(await term.recv())
        elapsed = time.perf_counter() - start
        await task
        await link.stop()
        return n / elapsed
    return run_virtual(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="exchanges per measurement")
    args = parser.parse_args()
    peer = asyncio.run(streams_peer(args.n))
    rows = [("asyncio streams over socketpair (peer)", peer),
            ("memory pipe, virtual loop", bench_pipe(args.n)),
            ("memory pipe + DirectLink (faulty_pipe) + Trace", bench_link(args.n)),
            ("memory pipes + pumped FaultLink + Trace", bench_pumped_link(args.n)),
            ("full exchange: + iso87ascii codec both ends", bench_full(args.n // 4))]
    width = max(len(name) for name, _ in rows)
    print(f"{'transport':<{width}}  exchanges/s   vs peer")
    for name, rate in rows:
        print(f"{name:<{width}}  {rate:>11,.0f}   {rate / peer:5.1f}x")


if __name__ == "__main__":
    main()
