"""SIGKILL the host process mid-load (loopback TCP, bounded) and check nothing acknowledged is lost.

Every approval a terminal received must be a committed debit after the kill; after a restart on the
same ledger file, retransmitting every request — acknowledged or not — debits nothing twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import pathlib
import signal
import subprocess
import sys

import pytest

from host_sim import Ledger
from host_sim.ledger import card_account
from iso8583 import Message
from iso8583.transactions import TxnType, format_amount, request_base, txn_key
from iso8583.wire import Wire

ROOT = pathlib.Path(__file__).resolve().parents[2]
PANS = ["6217000000000014", "6217000000000022", "6217000000000030"]
OPENING = 500000

pytestmark = [pytest.mark.network, pytest.mark.slow]


def start_host(db: pathlib.Path, synchronous: str, slow_commit: float = 0.0) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "posfault", "host", "serve", "--listen", "127.0.0.1:0", "--ledger", str(db),
         "--synchronous", synchronous, "--max-seconds", "60", "--slow-commit", str(slow_commit)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "127.0.0.1:" in line, (line, proc.stderr.read() if proc.stderr else "")
    return proc, int(line.split("127.0.0.1:")[1].split()[0])


def sales(connections: int, per_connection: int) -> list[list[Message]]:
    out = []
    base = dt.datetime(2026, 11, 23, 10, 0, 0)
    for c in range(connections):
        batch = []
        for i in range(per_connection):
            when = base + dt.timedelta(seconds=i)
            mti, fields = request_base(TxnType.SALE, "iso87")
            fields.update({2: PANS[c % len(PANS)], 4: format_amount(1 + (c * per_connection + i) % 97),
                           7: when.strftime("%m%d%H%M%S"), 11: f"{i + 1:06d}", 12: when.strftime("%H%M%S"),
                           13: when.strftime("%m%d"), 14: "2812", 41: f"8{c:07d}", 42: "100000000000001",
                           49: "156"})
            batch.append(Message(mti, fields))
        out.append(batch)
    return out


async def drive(port: int, batches: list[list[Message]], acked: list[tuple[Message, Message]],
                kill_after: int | None, proc: subprocess.Popen[str] | None) -> None:
    wire = Wire("iso87ascii")
    prefix = wire.prefix

    async def one(batch: list[Message]) -> None:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        except OSError:
            return
        try:
            for msg in batch:
                writer.write(prefix.wrap(wire.pack(msg)))
                header = await asyncio.wait_for(reader.readexactly(prefix.size), 10)
                body = await asyncio.wait_for(reader.readexactly(prefix.parse(header)), 10)
                acked.append((msg, wire.unpack(body)[0]))
                if kill_after is not None and proc is not None and len(acked) >= kill_after and proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, OSError):
            return
        finally:
            writer.close()

    await asyncio.wait_for(asyncio.gather(*(one(b) for b in batches)), 60)


@pytest.mark.parametrize(("synchronous", "slow_commit"), [("NORMAL", 0.0), ("FULL", 0.0), ("NORMAL", 0.03)])
def test_sigkill_mid_load_loses_nothing_acknowledged(tmp_path: pathlib.Path, synchronous: str,
                                                     slow_commit: float) -> None:
    """With a slow disk (30 ms per commit) the kill surely lands while commits are in flight."""
    db = tmp_path / "host.db"
    batches = sales(connections=8, per_connection=60)
    proc, port = start_host(db, synchronous, slow_commit)
    acked: list[tuple[Message, Message]] = []
    try:
        asyncio.run(drive(port, batches, acked, kill_after=150, proc=proc))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert 150 <= len(acked) < 8 * 60, "the kill must land mid-load"

    ledger = Ledger.open(str(db))
    ledger.check_conservation()
    for request, response in acked:
        row = ledger.find(txn_key(request, "iso87"))
        assert row is not None, f"acknowledged {txn_key(request, 'iso87')} lost by the kill"
        assert row.rc == response[39]
        if response[39] == "00":
            assert row.cardholder_debit == int(request[4])
    ledger.close()

    # restart on the same file; retransmit everything: each key is debited exactly once
    proc, port = start_host(db, synchronous)
    again: list[tuple[Message, Message]] = []
    try:
        asyncio.run(drive(port, batches, again, kill_after=None, proc=None))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert len(again) == 8 * 60
    first = {str(txn_key(m, "iso87")): r for m, r in acked}
    for msg, response in again:
        previous = first.get(str(txn_key(msg, "iso87")))
        if previous is not None:
            assert response[39] == previous[39] and response.get(38) == previous.get(38)
    ledger = Ledger.open(str(db))
    ledger.check_conservation()
    debited: dict[str, int] = {}
    for msg, response in again:
        if response[39] == "00":
            debited[msg[2]] = debited.get(msg[2], 0) + int(msg[4])
    for pan in PANS:
        assert ledger.balance(card_account(pan)) == OPENING - debited.get(pan, 0)
    assert all(t.times_posted <= 1 for t in ledger.transactions())
    ledger.close()
