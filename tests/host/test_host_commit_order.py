"""The TCP front end answers a sale only after the COMMIT holding its debit returned — with the
commit inline and on the writer thread (settled between frames by ``poll_commit``) — and its stage
timings (``HostServer(timings=[])``) show that order for every request."""

from __future__ import annotations

import asyncio
import pathlib
import sqlite3

import pytest
from host_msgs import PAN, Clock, sale

from host_sim import Host, Ledger, seed
from host_sim.ledger import card_account
from host_sim.tcp import STAGES, serve_tcp
from iso8583.wire import Wire

CONNECTIONS, SALES = 8, 6


@pytest.mark.parametrize("commit", ["inline", "thread"])
def test_every_answer_follows_its_commit(tmp_path: pathlib.Path, commit: str) -> None:
    path = str(tmp_path / "host.db")
    ledger = Ledger.open(path, synchronous="NORMAL", checkpoint="background")
    seed(ledger)
    ledger.write_delay = 0.005 if commit == "thread" else 0.0   # commits slower than a frame
    host = Host(ledger, "iso87ascii", clock=Clock(), commit=commit)
    wire = Wire("iso87ascii")
    durable = sqlite3.connect(path)   # what SQLite holds, read by another connection

    async def one(conn: int, port: int) -> list[str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answered = []
        for i in range(SALES):
            stan = conn * 100 + i + 1
            msg = sale(stan, 100, when=f"1123{stan:06d}")
            writer.write(wire.prefix.wrap(wire.pack(msg)))
            header = await reader.readexactly(wire.prefix.size)
            answer, _ = wire.unpack(await reader.readexactly(wire.prefix.parse(header)))
            assert answer[39] == "00"
            row = durable.execute("SELECT rc FROM txns WHERE stan = ?", (f"{stan:06d}",)).fetchone()
            assert row == ("00",), f"STAN {stan} answered before its commit"
            answered.append(answer[11])
        writer.close()
        return answered

    async def go() -> list[tuple[float, ...]]:
        timings: list[tuple[float, ...]] = []
        server = await serve_tcp(host, wire, timings=timings)
        results = await asyncio.gather(*(one(c, server.port) for c in range(CONNECTIONS)))
        assert sum(len(r) for r in results) == CONNECTIONS * SALES
        await server.close()
        return timings

    timings = asyncio.run(asyncio.wait_for(go(), 30))
    durable.close()
    assert len(timings) == CONNECTIONS * SALES
    for stamps in timings:
        t = dict(zip(STAGES, stamps))
        assert t["arrival"] <= t["started"] <= t["staged"] <= t["commit_started"] <= t["commit_done"] \
            <= t["commit_seen"] <= t["written"], t
    if commit == "thread":
        assert host.stats["commits"] < CONNECTIONS * SALES   # requests shared group commits
    assert host.ledger.balance(card_account(PAN)) == 500000 - 100 * CONNECTIONS * SALES
    ledger.close()
