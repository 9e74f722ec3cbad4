"""Benchmark: the posfault host over TCP on 127.0.0.1, against a ledger-less mock host measured in the same run.

    python3 benchmarks/host.py                       # 1 and 50 connections, 20,000 sales each
    python3 benchmarks/host.py --count 5000 --connections 1,10,50 --synchronous NORMAL
    python3 benchmarks/host.py --connections 50 --stages   # + where the time goes inside the server
    BENCH_COMMIT=thread BENCH_SERVE_ARGS="--wal-preallocate=0" python3 benchmarks/host.py   # A/B a serve option

Each server runs in its own process (``posfault host serve`` with its SQLite ledger; the peer is a
minimal asyncio host using the same codec but no ledger) and the load generator in another, so the
figures include the real TCP path, framing, codec and — for posfault — the group-committed ledger:
a response leaves only after the COMMIT holding its posting. Each connection sends sales one after
another (request, wait for the response, next), a bounded count; the run stops by itself. The load
generator is one process of plain asyncio protocols (its own CPU per request is printed: it must not
be what limits the figures); the same generator drives both servers.

Printed per server and connection count: TPS, p50 and p99 latency, approvals; then the ratio
posfault/peer. After the run the ledger is reopened: every approved response must be a committed
debit, and money must be conserved.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from time import perf_counter
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_CARDS = 50
BENCH_MID = "100000000000001"


def bench_pans() -> list[str]:
    return [f"62170199{i:08d}" for i in range(BENCH_CARDS)]


def write_cards(path: pathlib.Path) -> None:
    """Benchmark cards with balances that never run out (every sale should be approved)."""
    lines = ["# benchmark cards (TEST ONLY)"]
    for i, pan in enumerate(bench_pans()):
        lines += [f"[cards.bench-{i}]", f'pan = "{pan}"', 'expiry = "2912"', 'service_code = "201"',
                  'pin = "1234"', 'entry = "chip"', "balance = 1000000000000", "daily_limit = 1000000000000000", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


# -- the peer: a minimal ledger-less asyncio mock host ------------------------------------------------
def run_peer(dialect: str, seconds: float) -> None:
    from iso8583 import load_spec
    from iso8583.transactions import family_of, make_response
    from iso8583.wire import Wire

    wire = Wire(load_spec(dialect))
    family = family_of(wire.spec)
    prefix = wire.prefix
    counter = [0]

    async def conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(prefix.size)
                frame = await reader.readexactly(prefix.parse(header))
                msg, env = wire.unpack(frame)
                counter[0] += 1
                response = make_response(msg, "00", family, f37=f"{counter[0]:012d}", f38="123456")
                writer.write(prefix.wrap(wire.pack(response, env.reply() if env else None)))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(conn, "127.0.0.1", 0)
        print(f"peer serving on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.sleep(seconds)
        server.close()

    asyncio.run(main())


# -- load generator ------------------------------------------------------------------------------------
def run_loadgen(port: int, dialect: str, connections: int, count: int, run_id: int) -> None:
    from iso8583 import Message
    from iso8583.transactions import TxnType, family_of, format_amount, request_base
    from iso8583.wire import Wire

    wire = Wire(dialect)
    family = family_of(wire.spec)
    has_f7 = 7 in wire.spec.fields
    prefix = wire.prefix
    pans = bench_pans()
    per_conn = max(1, count // connections)
    start_time = dt.datetime(2026, 11, 23, 10, 0, 0) + dt.timedelta(hours=run_id)
    frames: list[list[bytes]] = []
    for c in range(connections):
        tid = f"9{run_id % 10}{c:06d}"   # TIDs no fixture merchant owns
        out = []
        for i in range(per_conn):
            when = start_time + dt.timedelta(seconds=i)
            mti, fields = request_base(TxnType.SALE, family)
            fields.update({2: pans[c % len(pans)], 4: format_amount(100 + i % 9000),
                           11: f"{i + 1:06d}", 12: when.strftime("%H%M%S"), 13: when.strftime("%m%d"),
                           14: "2912", 22: "051", 41: tid, 42: BENCH_MID, 49: "156"})
            if has_f7:  # transmission date-time: ISO 1987 dialects only (UnionPay POS has no field 7)
                fields[7] = when.strftime("%m%d%H%M%S")
            out.append(prefix.wrap(wire.pack(Message(mti, fields))))
        frames.append(out)
    latencies: list[float] = []
    responses: list[bytes] = []
    header_size = prefix.size

    class ClosedLoop(asyncio.Protocol):
        """One connection: send a sale, read its whole answer, only then send the next.

        A plain protocol rather than streams: the generator must not be what limits the figures
        (streams cost it about twice the CPU per request on this box, taken from the server's core
        share when both are busy). Latency runs from just before the write to the read completing
        the answer."""

        def __init__(self, batch: list[bytes], done: asyncio.Future[None]) -> None:
            self.batch = batch
            self.next = 0
            self.done = done
            self.buffer = b""
            self.t0 = 0.0
            self.transport: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            self._send()

        def _send(self) -> None:
            assert self.transport is not None
            if self.next == len(self.batch):
                self.transport.close()
                if not self.done.done():
                    self.done.set_result(None)
                return
            data = self.batch[self.next]
            self.next += 1
            self.t0 = perf_counter()
            self.transport.write(data)

        def data_received(self, data: bytes) -> None:
            buffer = self.buffer + data if self.buffer else data
            if len(buffer) < header_size:
                self.buffer = buffer
                return
            stop = header_size + prefix.parse(buffer[:header_size])
            if len(buffer) < stop:
                self.buffer = buffer
                return
            latencies.append(perf_counter() - self.t0)
            responses.append(buffer[header_size:stop])
            self.buffer = buffer[stop:]   # nothing, in a closed loop
            self._send()

        def connection_lost(self, exc: Exception | None) -> None:
            if not self.done.done():
                if self.next == len(self.batch) and len(self.buffer) == 0:
                    self.done.set_result(None)
                else:
                    self.done.set_exception(ConnectionError(f"connection lost after {self.next} requests: {exc}"))

    async def main() -> float:
        loop = asyncio.get_running_loop()
        waits = []
        t0 = perf_counter()
        for batch in frames:
            done: asyncio.Future[None] = loop.create_future()
            await loop.create_connection(lambda b=batch, d=done: ClosedLoop(b, d), "127.0.0.1", port)
            waits.append(done)
        await asyncio.wait_for(asyncio.gather(*waits), timeout=300)
        return perf_counter() - t0

    cpu0 = time.process_time()
    elapsed = asyncio.run(main())
    loadgen_cpu = time.process_time() - cpu0
    approved = sum(1 for body in responses if wire.unpack(body)[0].get(39) == "00")
    latencies.sort()
    print(json.dumps({
        "connections": connections, "requests": len(responses), "elapsed": elapsed,
        "tps": len(responses) / elapsed, "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, "approved": approved,
        "loadgen_cpu_us": loadgen_cpu / max(1, len(responses)) * 1e6,
    }), flush=True)


# -- orchestration ---------------------------------------------------------------------------------------
def start_server(cmd: list[str]) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "127.0.0.1:" not in line:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    port = int(line.split("127.0.0.1:")[1].split()[0])
    return proc, port


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process (Linux /proc), to report server CPU per request."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def loadgen(port: int, dialect: str, connections: int, count: int, run_id: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--loadgen", str(port), dialect, str(connections), str(count),
                          str(run_id)], capture_output=True, text=True, timeout=600, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


def print_stages(stages: dict[str, Any], counts: list[int], results: dict[int, dict[str, float]]) -> None:
    """Where a request's time goes inside the server, per connection count: p50/p99 of each stage,
    and the mean of each stage over the slowest 1 % of requests (by time in the server)."""
    names = stages["stages"]
    rows = [dict(zip(names, r)) for r in stages["requests"]]
    spans = {
        "read->process (earlier frames of the read)": ("arrival", "started"),
        "process (decide, post in memory)": ("started", "staged"),
        "staged->commit start (tick end, previous commit)": ("staged", "commit_started"),
        "commit (stage SQL, COMMIT, fsync)": ("commit_started", "commit_done"),
        "commit done->loop sees it (hand-off)": ("commit_done", "commit_seen"),
        "loop sees commit->written (responses before it)": ("commit_seen", "written"),
        "in server: read->written": ("arrival", "written"),
    }
    for conns in counts:
        mine = [r for r in rows if r["connections"] >= max(1, conns * 0.9) and r["connections"] <= conns]
        if not mine:
            continue
        commits = len({r["commit_started"] for r in mine})
        total = sorted(mine, key=lambda r: r["written"] - r["arrival"])
        slow = total[int(len(total) * 0.99):] or total[-1:]
        client = results.get(conns, {})
        print(f"posfault stages at {conns} connection(s): {len(mine)} requests, {len(mine) / commits:.1f} per group"
              f" commit; client p50/p99 {client.get('p50_ms', float('nan')):.2f}/{client.get('p99_ms', float('nan')):.2f} ms")
        print(f"  {'stage':<50} {'p50 ms':>7} {'p99 ms':>7} {'slowest 1% mean':>16}")
        for label, (a, b) in spans.items():
            values = sorted((r[b] - r[a]) * 1000 for r in mine)
            slow_mean = sum((r[b] - r[a]) * 1000 for r in slow) / len(slow)
            print(f"  {label:<50} {_pct(values, 0.5):>7.2f} {_pct(values, 0.99):>7.2f} {slow_mean:>16.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20000, help="sales per run (default 20000)")
    parser.add_argument("--connections", default="1,50", help="comma-separated connection counts (default 1,50)")
    parser.add_argument("--dialect", default="iso87ascii")
    parser.add_argument("--synchronous", default="FULL", choices=("FULL", "NORMAL", "OFF"),
                        help="ledger durability (default FULL: every commit fsynced)")
    parser.add_argument("--stages", action="store_true",
                        help="also print where posfault's time per request goes (server-side stage timestamps)")
    parser.add_argument("--loadgen", nargs=5, metavar=("PORT", "DIALECT", "CONNS", "COUNT", "RUN"), help=argparse.SUPPRESS)
    parser.add_argument("--peer-server", nargs=2, metavar=("DIALECT", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen:
        port, dialect, conns, count, run = args.loadgen
        run_loadgen(int(port), dialect, int(conns), int(count), int(run))
        return 0
    if args.peer_server:
        run_peer(args.peer_server[0], float(args.peer_server[1]))
        return 0

    counts = [int(c) for c in args.connections.split(",")]
    results: dict[str, dict[int, dict[str, float]]] = {"posfault": {}, "peer": {}}
    with tempfile.TemporaryDirectory() as tmp:
        cards = pathlib.Path(tmp) / "cards.toml"
        write_cards(cards)
        db = pathlib.Path(tmp) / "host.db"
        servers = {
            "posfault": [sys.executable, "-m", "posfault", "host", "serve", "--listen", "127.0.0.1:0", "--dialect",
                         args.dialect, "--ledger", str(db), "--cards", str(cards), "--synchronous", args.synchronous,
                         "--max-seconds", "900", "--max-connections", "512",
                         "--commit", os.environ.get("BENCH_COMMIT", "auto")]
                        + os.environ.get("BENCH_SERVE_ARGS", "").split()
                        + (["--timings", str(pathlib.Path(tmp) / "timings.json")] if args.stages else []),
            "peer": [sys.executable, __file__, "--peer-server", args.dialect, "900"],
        }
        for name, cmd in servers.items():
            proc, port = start_server(cmd)
            try:
                for run_id, conns in enumerate(counts, 1):
                    before = cpu_seconds(proc.pid)
                    results[name][conns] = loadgen(port, args.dialect, conns, args.count, run_id)
                    used = cpu_seconds(proc.pid) - before
                    results[name][conns]["cpu_us"] = used / results[name][conns]["requests"] * 1e6
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        approved = sum(r["approved"] for r in results["posfault"].values())
        from host_sim import Ledger

        ledger = Ledger.open(str(db))
        committed = sum(1 for t in ledger.transactions() if t.approved and t.cardholder_debit == t.amount)
        ledger.check_conservation()
        ledger.close()
        stages = json.loads((pathlib.Path(tmp) / "timings.json").read_text()) if args.stages else None

    print(f"host benchmark: {args.dialect}, sales over TCP 127.0.0.1, ledger SQLite WAL synchronous={args.synchronous}")
    print(f"{'server':<10} {'conns':>5} {'requests':>9} {'TPS':>9} {'p50 ms':>8} {'p99 ms':>8} {'approved':>9}"
          f" {'server CPU us/req':>18} {'load gen CPU us/req':>20}")
    for name in ("posfault", "peer"):
        for conns, r in results[name].items():
            print(f"{name:<10} {conns:>5} {int(r['requests']):>9} {r['tps']:>9.0f} {r['p50_ms']:>8.2f} "
                  f"{r['p99_ms']:>8.2f} {int(r['approved']):>9} {r['cpu_us']:>18.0f} {r['loadgen_cpu_us']:>20.0f}")
    for conns in counts:
        p, q = results["posfault"][conns], results["peer"][conns]
        print(f"ratio posfault/peer at {conns} connection(s): TPS {p['tps'] / q['tps']:.2f}x, "
              f"p99 {p['p99_ms'] / q['p99_ms']:.2f}x")
    if stages is not None:
        print_stages(stages, counts, results["posfault"])
    print(f"ledger check: {approved} approvals answered, {committed} committed debits, conservation ok")
    if committed != approved:
        print("ERROR: an approval was answered that the ledger does not hold", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
