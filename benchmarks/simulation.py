"""Simulation throughput (not a test; prints figures and ratios measured in the same run).

    python3 benchmarks/simulation.py [--sales 2000] [--repeat 3] [--schedules 200] [--dialect iso87ascii]

* ``simulated sales/s``: full terminal–host exchanges in a :class:`posfault.simulation.Simulation` —
  the fault link and the trace on every message, virtual clock, terminal journal and host ledger on
  SQLite: once as the simulation's default in-memory databases ("flash" owned by the simulation,
  surviving power cycles), once as SQLite files (WAL, on /dev/shm when there is one). One core (the
  loop is single-threaded); CPU time is reported next to wall time because a shared box's load
  inflates wall time. The in-memory figure is the median of ``--repeat`` runs (each in a fresh
  simulation), all of which are printed.
* peer — ``same terminal + host over TCP``: the very same Terminal and Host classes, same SQLite
  files, but on a real event loop over asyncio TCP on 127.0.0.1 and the real clock (no fault link,
  no trace). The ratio says what the virtual clock and in-memory channels buy.
* ``campaign schedules/s``: seeded fault schedules (generate, run to quiescence with settlement and
  T+1 payouts, judge) on the ``correct`` profile, in-process on one core and on every local core.

Target from the issue: >= 5,000 simulated transactions/s on one core.

``--breakdown`` then samples the running stack (stdlib only, a CPU-time timer; Unix) during one more
run per storage and prints the µs per sale spent in each component: codec, MAC/PIN crypto, terminal
logic, journal, host logic, ledger, and the simulation layer (event loop, fault link, trace, facade).
"""

from __future__ import annotations

import argparse
import asyncio
import dis
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from posfault import _world
from posfault.campaign import Campaign, CampaignConfig, InProcessExecutor
from posfault.simulation import Simulation

CARDS = ("mag-ok", "chip-ok", "ctls-ok")


def _purchase(i: int) -> tuple[int, str]:
    """A mixed workload (magstripe, chip with PIN, contactless): amounts differ per card so that a
    careful host never takes two purchases for a duplicate, and stay within every card's balance."""
    return 1 + i // len(CARDS), CARDS[i % len(CARDS)]


def simulated_sales(n: int, dialect: str, storage: str = "memory") -> tuple[float, float, int]:
    """(sales/s by CPU time, sales/s by wall time, approved count)."""
    with Simulation(seed=1, dialect=dialect, capture_frames=False, customer_gap=1.0, storage=storage) as sim:
        if sim.storage != storage:
            raise SystemExit(f"storage {storage!r} is not available here (got {sim.storage!r})")
        approved = 0
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(n):
            approved += sim.terminal.sale(*_purchase(i)).outcome == "approved"
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return n / cpu, n / wall, approved


#: Where a sampled stack's time goes: the first frame, from the innermost outwards, whose file path
#: contains one of these (C calls such as sqlite3 execute or cipher updates count for their caller).
COMPONENTS = (
    ("iso8583/security/", "MAC/PIN/keys (crypto)"), ("host_sim/security_glue.py", "MAC/PIN/keys (crypto)"),
    ("terminal_sim/link.py", "MAC/PIN/keys (crypto)"), ("cryptography", "MAC/PIN/keys (crypto)"),
    ("iso8583/channels/", "simulation layer: channels"),
    ("iso8583/", "codec (pack/unpack, fields, masking)"),
    ("terminal_sim/journal.py", "terminal journal (SQLite)"),
    ("terminal_sim/", "terminal logic"),
    ("host_sim/ledger.py", "host ledger (SQLite)"),
    ("host_sim/", "host logic"),
    ("posfault/faults/", "simulation layer: fault link"),
    ("posfault/trace.py", "simulation layer: trace"),
    ("posfault/clock.py", "simulation layer: event loop, tasks"),
    ("posfault/", "simulation layer: facade, world"),
    ("asyncio/", "simulation layer: event loop, tasks"),
)


_RESUME = dis.opmap["RESUME"]


def _component(frame: Any) -> str | None:
    """The component of a sampled stack, or None if it is not inside a timed sale.

    CPython runs a signal handler only at its next check, on entering a function (``RESUME``) or
    on a loop's back edge: a tick that fell in a C call (an SQLite statement, a cipher, a garbage
    collection) is seen at the entry of the *next* Python function called. So a sample taken on a
    ``RESUME`` is credited to the frame below it (the one that made the call or the C work);
    crediting it to the function being entered put, for example, the journal's SQLite time on
    whatever codec helper the terminal called next.
    """
    found = None
    inside = False
    code = frame.f_code
    lasti = frame.f_lasti
    if frame.f_back is not None and 0 <= lasti < len(code.co_code) and code.co_code[lasti] == _RESUME:
        frame = frame.f_back
    while frame is not None:
        code = frame.f_code
        if found is None:
            path = code.co_filename.replace("\\", "/")
            for marker, name in COMPONENTS:
                if marker in path:
                    found = name
                    break
        if code.co_name == "sale" and code.co_filename.endswith("simulation.py"):
            inside = True
            break
        frame = frame.f_back
    return (found or "other (stdlib)") if inside else None


def breakdown(n: int, dialect: str, storage: str, interval: float = 0.0002) -> dict[str, float]:
    """Share of the sales' CPU time per component, by sampling the running stack on a CPU-time timer
    (SIGPROF, stdlib only). The handler runs between bytecodes, so time in a C call (sqlite3, a
    cipher) is counted for the Python line that made it."""
    import collections
    counts: collections.Counter[str] = collections.Counter()

    def on_tick(signum: int, frame: Any) -> None:
        name = _component(frame)
        if name is not None:
            counts[name] += 1

    previous = signal.signal(signal.SIGPROF, on_tick)
    signal.setitimer(signal.ITIMER_PROF, interval, interval)
    try:
        simulated_sales(n, dialect, storage)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, previous)
    total = sum(counts.values()) or 1
    return {name: count / total for name, count in counts.most_common()}


async def _tcp_sales(n: int, dialect: str, workdir: Path) -> tuple[float, float, int]:
    from host_sim import Host, fixtures
    from host_sim.config import HostConfig
    from host_sim.ledger import Ledger
    from iso8583 import load_spec
    from iso8583.channels import tcp
    from iso8583.wire import Wire
    from terminal_sim import Journal, Printer, Terminal, TerminalConfig, load_cards

    wire = Wire(load_spec(dialect))
    ledger = Ledger.open(str(workdir / "host.db"), synchronous="OFF")
    fixtures.seed(ledger)
    tmk = _world._test_tmk()
    host = Host(ledger, dialect=dialect, config=HostConfig(), keys={"10000001": tmk.hex().upper()})
    server = await tcp.serve(host.serve, "127.0.0.1", 0, header=wire.prefix)
    cards = load_cards()
    try:
        async def connect():
            return await tcp.connect("127.0.0.1", server.port, header=wire.prefix)

        term = Terminal(TerminalConfig(dialect=dialect, use_mac=False), journal=Journal.open(workdir / "t.db"),
                        connector=connect, printer=Printer(), tmk=tmk)
        assert (await term.sign_on()).approved
        approved = 0
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(n):
            amount, name = _purchase(i)
            approved += (await term.sale(amount, card=cards[name])).outcome == "approved"
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await server.close()
        ledger.close()
    return n / cpu, n / wall, approved


def tcp_sales(n: int, dialect: str) -> tuple[float, float, int]:
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    workdir = Path(tempfile.mkdtemp(prefix="posfault-bench-", dir=shm))
    try:
        return asyncio.run(_tcp_sales(n, dialect, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def schedules_per_second(n: int, workers: int | None) -> tuple[float, int]:
    config = CampaignConfig(terminal_profile="correct", schedules=n, stop_on_first=False)
    executor = InProcessExecutor() if workers == 1 else None
    result = Campaign(config, executor=executor, workers=workers).run()
    return result.schedules_per_second, len(result.findings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sales", type=int, default=2000)
    parser.add_argument("--schedules", type=int, default=200, help="campaign schedules (0: no campaign)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="in-memory runs of --sales each; the median is the figure (a shared box's "
                             "CPU time swings from run to run)")
    parser.add_argument("--dialect", default="iso87ascii")
    parser.add_argument("--breakdown", action="store_true",
                        help="also sample where each sale's time goes (µs per component)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"posfault simulation benchmark — {args.sales} sales, {args.schedules} schedules, "
          f"dialect {args.dialect}, {cores} cores (load average {os.getloadavg()[0]:.1f})")

    runs = sorted(simulated_sales(args.sales, args.dialect, "memory") for _ in range(max(1, args.repeat)))
    sim_cpu, sim_wall, ok1 = runs[len(runs) // 2]
    spread = f"; runs {', '.join(f'{run[0]:,.0f}' for run in runs)}" if len(runs) > 1 else ""
    print(f"  simulated sales/s (fault link + trace, SQLite in memory) {sim_cpu:8,.0f} by CPU   "
          f"{sim_wall:8,.0f} by wall   ({ok1}/{args.sales} approved{spread})")
    file_cpu, file_wall, ok3 = simulated_sales(args.sales, args.dialect, "files")
    print(f"  simulated sales/s (fault link + trace, SQLite files)  {file_cpu:8,.0f} by CPU   "
          f"{file_wall:8,.0f} by wall   ({ok3}/{args.sales} approved)")
    tcp_cpu, tcp_wall, ok2 = tcp_sales(args.sales, args.dialect)
    print(f"  peer: same terminal + host over TCP 127.0.0.1        {tcp_cpu:8,.0f} by CPU   "
          f"{tcp_wall:8,.0f} by wall   ({ok2}/{args.sales} approved)")
    print(f"  ratio simulated (files) / TCP (files)                 {file_cpu / tcp_cpu:8.2f}x CPU  "
          f"{file_wall / tcp_wall:8.2f}x wall")
    print(f"  target >= 5,000 simulated sales/s on one core (in-memory SQLite): "
          f"{'met' if sim_cpu >= 5000 else 'NOT met'} ({sim_cpu / 5000:.0%} of target)")
    if args.breakdown and hasattr(signal, "setitimer"):
        for storage, rate in (("memory", sim_cpu), ("files", file_cpu)):
            shares = breakdown(args.sales, args.dialect, storage)
            print(f"  where a simulated sale's {1e6 / rate:,.0f} µs go (SQLite {storage}; sampled stacks):")
            for name, share in shares.items():
                print(f"    {name:40s} {share * 1e6 / rate:6.0f} µs  {share:6.1%}")

    if args.schedules <= 0:
        return 0
    one, found1 = schedules_per_second(args.schedules, 1)
    print(f"  campaign schedules/s, 1 core                         {one:8,.1f}   (findings: {found1})")
    if cores > 1:
        many, found2 = schedules_per_second(args.schedules, None)
        print(f"  campaign schedules/s, {cores} cores                        {many:8,.1f}   "
              f"({many / one:.2f}x; findings: {found2})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
