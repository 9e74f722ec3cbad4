"""The host's share of a simulated sale, in process (not a test; prints figures).

    python3 benchmarks/host_sale.py [--sales 600] [--repeat 3] [--no-events]
    python3 benchmarks/host_sale.py --replay N      # (for callgrind: replay the first N requests once)

Requests are captured once from a :class:`posfault.simulation.Simulation` running the workload of
``benchmarks/simulation.py`` (mixed magstripe / chip-with-PIN / contactless sales), decoded once,
and replayed into a fresh simulation's host: ``Host.process`` + ``Ledger.commit`` (the group
commit of one request, what ``Host._flush`` runs) + ``Host.finish`` per request, with the trace as
the event sink as in a simulation. No codec, no link, no terminal: what is left is the host's part.

Load-independent figure (instructions per request, the difference of two request counts)::

    for n in 200 600; do valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python3 benchmarks/host_sale.py --replay $n 2>&1 | grep Collected; done
"""

from __future__ import annotations

import argparse
import copy
import pickle
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from posfault.simulation import Simulation

CAPTURE = Path(tempfile.gettempdir()) / "posfault-host-sale-capture.pkl"


def capture(n: int, dialect: str = "iso87ascii") -> dict[str, Any]:
    """The first ``n`` sale requests a simulated terminal sends (decoded), with the working keys."""
    from simulation import _purchase

    captured: list[tuple[Any, bytes | None]] = []
    with Simulation(seed=1, dialect=dialect, capture_frames=False, customer_gap=1.0) as sim:
        host = sim._world.host
        process = host.process

        def recording(msg: Any, raw: bytes | None = None) -> Any:
            captured.append((copy.deepcopy(msg), raw))
            return process(msg, raw)

        host.process = recording
        for i in range(n):
            sim.terminal.sale(*_purchase(i))
        keys = {tid: dict(k) for tid, k in host.ledger._terminal_keys.items()}
    return {"dialect": dialect, "requests": captured, "keys": keys}


def load(n: int, dialect: str = "iso87ascii") -> dict[str, Any]:
    if CAPTURE.exists():
        data = pickle.loads(CAPTURE.read_bytes())
        if data["dialect"] == dialect and len(data["requests"]) >= n:
            return data
    data = capture(max(n, 1000), dialect)
    CAPTURE.write_bytes(pickle.dumps(data))
    return data


def replay(data: dict[str, Any], n: int, *, events: bool = True, timed: bool = False) -> dict[str, float]:
    """Replay the first ``n`` requests into a fresh simulation's host; µs per step when ``timed``."""
    with Simulation(seed=1, dialect=data["dialect"], capture_frames=False, customer_gap=1.0) as sim:
        host = sim._world.host
        ledger = host.ledger
        for tid, keys in data["keys"].items():
            ledger.set_terminal_keys(tid, keys, sim.clock())
        ledger.commit()
        if not events:
            host.events = None
        requests = data["requests"][:n]
        process, finish, commit = host.process, host.finish, ledger.commit
        answered = 0
        if not timed:
            for msg, raw in requests:
                response = process(msg, raw)
                commit()
                answered += finish(msg, response) is not None
            return {"answered": answered}
        clock = time.perf_counter
        t_process = t_commit = t_finish = 0.0
        for msg, raw in requests:
            a = clock()
            response = process(msg, raw)
            b = clock()
            commit()
            c = clock()
            answered += finish(msg, response) is not None
            d = clock()
            t_process += b - a
            t_commit += c - b
            t_finish += d - c
        scale = 1e6 / max(1, len(requests))
        return {"answered": answered, "process": t_process * scale, "commit": t_commit * scale,
                "finish": t_finish * scale, "total": (t_process + t_commit + t_finish) * scale}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sales", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dialect", default="iso87ascii")
    parser.add_argument("--no-events", action="store_true")
    parser.add_argument("--replay", type=int, default=None, help="replay N requests once, print nothing timed")
    parser.add_argument("--recapture", action="store_true")
    args = parser.parse_args()
    if args.recapture and CAPTURE.exists():
        CAPTURE.unlink()
    data = load(max(args.sales, args.replay or 0), args.dialect)
    if args.replay is not None:
        result = replay(data, args.replay, events=not args.no_events)
        print(f"answered {result['answered']} of {args.replay}")
        return 0
    best: dict[str, float] | None = None
    for _ in range(args.repeat):
        result = replay(data, args.sales, events=not args.no_events, timed=True)
        if best is None or result["total"] < best["total"]:
            best = result
    assert best is not None
    print(f"host share per request ({args.sales} requests, best of {args.repeat}, µs): "
          f"process {best['process']:.1f}  commit {best['commit']:.1f}  finish {best['finish']:.1f}  "
          f"total {best['total']:.1f}  (answered {best['answered']:.0f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
