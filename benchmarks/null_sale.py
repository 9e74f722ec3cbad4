"""The simulation layer alone: a "null sale" (not a test; prints a figure).

    python3 benchmarks/null_sale.py [--sales 3000]

What a simulated sale costs besides the terminal, the host, the codec and SQLite: the facade call
(``sim.terminal.sale``), a connection through the fault link (``Simulation.connect``: DirectLink, two
ends), the request sent, the host side served as in a simulation (``World`` + ``host_sim.serve``:
decode, process, group commit, answer), the response received with the terminal's timeout, the
close, and the ten trace events of a sale (terminal attempt/send/recv, net recv/deliver both ways,
host recv/send, net closed). Terminal, host, wire and ledger are stubs doing nothing else, so the
figure is the layer's own overhead. Instructions per null sale, load-independent::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python3 -c \
        'import sys; sys.path[:0]=["benchmarks","."]; import null_sale; null_sale.null_sales(1000)'

(and 3000; the difference / 2000). ``bash benchmarks/null_sale.sh`` does that.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from host_sim import serve as _serve
from host_sim.config import HostConfig
from host_sim.host import Host
from posfault.simulation import Simulation


class _Msg:
    """A decoded message as far as host_sim.serve looks at it."""

    is_request = True
    mti = "0200"
    fields = {11: "000001", 41: "TERM0001"}

    def get(self, number: int, default: Any = None) -> Any:
        return self.fields.get(number, default)


class _Wire:
    def unpack(self, frame: bytes) -> tuple[Any, None]:
        return _MSG, None

    def pack(self, msg: Any, envelope: Any = None) -> bytes:
        return b"0210-response"


_MSG = _Msg()


class _Ledger:
    """Postings pending after every request, a commit that does nothing."""

    has_pending = False
    in_group = False
    _group = False

    def commit(self) -> None:
        self.has_pending = False


class _NullHost:
    """The parts of Host that host_sim.serve uses, doing nothing but the events of a sale, with the
    real group commit (Host.after_commit/_flush) over a ledger stub."""

    dialect = object()   # its own spec: host_sim.serve caches a wire per spec
    crashed = False
    commit_mode = "inline"
    _writing = None
    after_commit = Host.after_commit
    _flush = Host._flush

    def __init__(self, events: Any) -> None:
        self.events = events
        self.config = HostConfig()
        self.ledger = _Ledger()
        self._waiters: list[Any] = []
        self.stats = {"commits": 0}
        self.last_commit = (0.0, 0.0, 0.0)
        _serve._WIRES[id(self.dialect)] = (self.dialect, _Wire())

    def _emit(self, kind: str, **data: Any) -> None:
        self.events({"actor": "host", "kind": kind, **data})

    def needs_wait(self, msg: Any) -> bool:
        return False

    def process(self, msg: Any, raw: bytes | None = None) -> Any:
        self.events({"actor": "host", "kind": "recv", "mti": "0200", "stan": "000001"})
        self.ledger.has_pending = True
        return msg

    def finish(self, msg: Any, response: Any) -> Any:
        self.events({"actor": "host", "kind": "send", "mti": "0210", "stan": "000001", "rc": "00"})
        return response

    async def serve(self, channel: Any) -> None:
        await _serve.serve_channel(self, channel)   # type: ignore[arg-type]


async def _terminal_sale(sim: Simulation) -> str:
    events = sim.trace.record_owned
    events({"actor": "terminal", "kind": "attempt", "stan": "000001"})
    ch = await sim.connect()
    await ch.send(b"0200-request")
    events({"actor": "terminal", "kind": "send", "mti": "0200", "stan": "000001"})
    frame = await ch.recv(timeout=30.0)
    events({"actor": "terminal", "kind": "recv", "mti": "0210", "stan": "000001"})
    await ch.close()
    return "approved" if frame == b"0210-response" else "failed"


def null_simulation() -> Simulation:
    """A Simulation whose terminal and host are the stubs above (the link, trace, loop are real)."""
    sim = Simulation(seed=1, capture_frames=False, customer_gap=1.0)
    world = sim._world
    world.host = _NullHost(sim.trace.record_owned)   # type: ignore[assignment]
    world.sale = lambda amount, card: _terminal_sale(sim)   # type: ignore[method-assign]
    return sim


def null_sales(n: int) -> int:
    """Run ``n`` null sales; how many got their response."""
    with null_simulation() as sim:
        ok = 0
        for _ in range(n):
            ok += sim.terminal.sale(1, "chip-ok") == "approved"
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sales", type=int, default=3000)
    args = parser.parse_args()
    null_sales(200)
    cpu = time.process_time()
    ok = null_sales(args.sales)
    cpu = time.process_time() - cpu
    print(f"null sales: {ok}/{args.sales} answered, {cpu / args.sales * 1e6:.1f} µs each by CPU")


if __name__ == "__main__":
    main()
