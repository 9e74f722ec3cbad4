"""Terminal throughput on the virtual clock (not a test; prints sales/s and ratios).

    python3 benchmarks/terminal.py [--sales 3000] [--dialect iso87ascii] [--no-mac]

Three figures measured in the same run, against the same minimal in-memory responder
(decode, answer 00, encode):

* ``bare exchange``: what any terminal must do per sale — build the 0200, MAC it, send it over an
  in-memory channel, decode the 0210 (no journal, no receipt). This is the peer/baseline.
* ``Terminal.sale``: the full terminal — journal with the reversal record before sending, outcome
  commit, receipt print and its journal record, flush check, events off.
* ``journal only``: the three journal steps of one sale (attempt + armed reversal, outcome +
  receipt spec, print record), on an in-memory journal and on a journal file (WAL, synchronous=NORMAL,
  in /dev/shm when there is one — what a simulation uses).

All figures are CPU time of this process (``time.process_time``), so a busy shared box inflates
them less than wall time; the responder runs in the same process and is counted in both the bare
exchange and ``Terminal.sale``.

Instructions of ``Terminal.sale`` alone (events and step hook on, MAC off as in a Simulation,
mixed cards as in benchmarks/simulation.py): record the responses once, then count a replay of
N1 and N2 sales under callgrind ; the difference over N2 - N1 is per sale::

    python3 benchmarks/terminal.py --sales 700 --record /tmp/frames.pkl
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python3 benchmarks/terminal.py --sales 200 --replay /tmp/frames.pkl
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python3 benchmarks/terminal.py --sales 700 --replay /tmp/frames.pkl

The ratio ``Terminal.sale / bare exchange`` is the price of doing it right (persisted reversal,
commit-before-print); the journal line says how much of that is SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from iso8583 import load_spec
from iso8583.channels.memory import pipe
from iso8583.message import Message
from iso8583.security import keys
from iso8583.transactions import TxnType, family_of, format_stan, make_response, request_base
from iso8583.wire import Wire
from posfault.clock import clock_for, run_virtual
from terminal_sim import Journal, Terminal, TerminalConfig, load_cards
from terminal_sim.journal import receipt_spec
from terminal_sim.link import Link, terminal_master_key


def responder(dialect: str, working: keys.WorkingKeys):
    spec = load_spec(dialect)
    wire = Wire(spec)
    family = family_of(dialect)
    binary62 = getattr(spec.fields[62], "type", "") == "b"
    tmk = keys.load_test_keys().tmk

    async def serve(ch) -> None:
        try:
            while True:
                msg, env = wire.unpack(await ch.recv(timeout=None))
                extra = {"f37": "000000000001", "f38": "123456"} if msg.mti != "0800" else {
                    "f62": working.pack(tmk) if binary62 else working.pack_hex(tmk)}
                resp = make_response(msg, "00", family, **extra)
                await ch.send(wire.pack(resp, env.reply() if env else None))
        except Exception:
            return

    async def connect():
        a, b = pipe()
        asyncio.get_running_loop().create_task(serve(b))
        return a
    return connect


async def bare(dialect: str, n: int, use_mac: bool) -> float:
    working = keys.WorkingKeys.generate(16)
    connect = responder(dialect, working)
    link = Link(dialect, tmk=terminal_master_key("tmk"))
    card = load_cards()["chip-ok"]
    mti, base = request_base(TxnType.SALE, link.family)
    t = time.process_time()
    for i in range(n):
        fields = {**base, 2: card.pan, 4: f"{1000 + i:012d}", 7: "0302090000", 11: format_stan(i % 999999 + 1),
                  14: card.expiry, 22: "051", 23: "001", 41: "10000001", 42: "100000000000001", 49: "156",
                  55: card.emv}
        msg = Message(mti, {k: v for k, v in fields.items() if link.supports(k)})
        ch = await connect()
        await ch.send(link.pack(msg, working if use_mac else None))
        link.unpack(await ch.recv(timeout=60), None)
        await ch.close()
    return n / (time.process_time() - t)


async def full(dialect: str, n: int, use_mac: bool) -> float:
    working = keys.WorkingKeys.generate(16)
    term = Terminal(TerminalConfig(dialect=dialect, use_mac=use_mac), journal=Journal.open(":memory:"),
                    connector=responder(dialect, working), clock=clock_for())
    card = load_cards()["chip-ok"]
    await term.sign_on()
    t = time.process_time()
    for i in range(n):
        result = await term.sale(1000 + i, card=card, pin="")
        assert result.approved, result
    return n / (time.process_time() - t)


def journal_only(n: int, path: str = ":memory:") -> float:
    journal = Journal.open(path)
    req = Message("0200", {2: "6217000000000014", 3: "000000", 4: "000000001000", 7: "0302090000",
                           11: "000001", 14: "2812", 22: "051", 23: "001", 25: "00", 41: "10000001",
                           42: "100000000000001", 49: "156", 55: bytes(80)})
    # What the terminal stores with an online approval: the receipt's spec (schema 3), not its text.
    receipt = receipt_spec("POSFAULT TEST SHOP", "100000000000001", "156", "2026-03-02 09:00:00", "000001")
    t = time.process_time()
    for _ in range(n):
        req.fields[11] = format_stan(journal.next_stan)
        a = journal.begin_attempt(tid="10000001", kind="sale", amount=1000, pan="6217000000000014", entry="chip",
                                  request=req, at=1.0, arm_reversal=True)
        journal.decide(a, outcome="approved", at=2.0, rc="00", auth_code="123456", rrn="000000000001",
                       in_batch=True, receipt=receipt, reversal="cleared")
        journal.receipt_printed(a, copy="original", status="printed", outcome="approved", at=3.0)
    elapsed = time.process_time() - t
    journal.close()
    return elapsed / n * 1e6


def journal_file(n: int) -> float:
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="posfault-bench-journal-", dir=shm) as tmp:
        return journal_only(n, os.path.join(tmp, "terminal.db"))


# -- Terminal.sale alone, for instruction counts (callgrind) ---------------------------------------
#: The simulation benchmark's mixed workload (benchmarks/simulation.py ``_purchase``).
MIXED_CARDS = ("mag-ok", "chip-ok", "ctls-ok")


def _mixed(i: int) -> tuple[int, str]:
    return 1 + i // len(MIXED_CARDS), MIXED_CARDS[i % len(MIXED_CARDS)]


class _Recording:
    """A channel wrapper keeping every frame the terminal received."""

    def __init__(self, ch, log: list) -> None:
        self.ch, self.log = ch, log

    async def send(self, frame: bytes) -> None:
        await self.ch.send(frame)

    async def recv(self, timeout=None) -> bytes:
        frame = await self.ch.recv(timeout=timeout)
        self.log.append(frame)
        return frame

    async def close(self) -> None:
        await self.ch.close()


class _Replay:
    """An instant in-process channel answering with recorded frames, in order: what it costs
    the terminal alone (no responder, no event-loop round trip)."""

    __slots__ = ("frames",)

    def __init__(self, frames) -> None:
        self.frames = frames

    async def send(self, frame: bytes) -> None:
        pass

    async def recv(self, timeout=None) -> bytes:
        return next(self.frames)

    async def close(self) -> None:
        pass


def _sale_terminal(dialect: str, journal: Journal, connect, events: list) -> Terminal:
    # As in a Simulation: events and the step hook on, MAC off (Simulation(mac=False)).
    return Terminal(TerminalConfig(dialect=dialect, use_mac=False), journal=journal, connector=connect,
                    clock=clock_for(), events=events.append, on_step=lambda step, attempt: None)


def record_sales(n: int, dialect: str, path: str) -> None:
    """Run ``n`` mixed sales against the responder and keep the keys and the response frames."""
    async def main():
        working = keys.WorkingKeys.generate(16)
        inner, log = responder(dialect, working), []

        async def connect():
            return _Recording(await inner(), log)
        journal = Journal.open(":memory:")
        term = _sale_terminal(dialect, journal, connect, [])
        assert (await term.sign_on()).approved
        first, cards = len(log), load_cards()
        for i in range(n):
            amount, name = _mixed(i)
            assert (await term.sale(amount, card=cards[name])).approved
        return journal.keys(), log[first:]
    Path(path).write_bytes(pickle.dumps(run_virtual(main())))


def replay_sales(n: int, dialect: str, path: str) -> None:
    """The same ``n`` sales answered from the recording (same keys, STANs and responses)."""
    stored, frames = pickle.loads(Path(path).read_bytes())

    async def main() -> None:
        answers = iter(frames)

        async def connect():
            return _Replay(answers)
        journal = Journal.open(":memory:")
        journal.use_stan(1)
        journal.save_keys(stored, 0.0)
        term, cards = _sale_terminal(dialect, journal, connect, []), load_cards()
        for i in range(n):
            amount, name = _mixed(i)
            assert (await term.sale(amount, card=cards[name])).approved
    run_virtual(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sales", type=int, default=3000)
    parser.add_argument("--dialect", default="iso87ascii")
    parser.add_argument("--no-mac", action="store_true")
    parser.add_argument("--record", metavar="PATH", help="record --sales mixed sales' responses to PATH")
    parser.add_argument("--replay", metavar="PATH", help="replay --sales sales from PATH (run under callgrind)")
    args = parser.parse_args()
    if args.record or args.replay:
        (record_sales if args.record else replay_sales)(args.sales, args.dialect, args.record or args.replay)
        return
    use_mac = not args.no_mac
    base = run_virtual(bare(args.dialect, args.sales, use_mac))
    ours = run_virtual(full(args.dialect, args.sales, use_mac))
    per_sale = journal_only(args.sales)
    per_sale_file = journal_file(args.sales)
    print(f"dialect {args.dialect}, MAC {'on' if use_mac else 'off'}, {args.sales} sales, virtual clock")
    print(f"  bare exchange (baseline)  {base:8.0f} sales/s")
    print(f"  Terminal.sale             {ours:8.0f} sales/s   ratio {ours / base:.2f} of baseline")
    print(f"  journal only, memory      {per_sale:8.1f} us/sale ({1e6 / per_sale:.0f} sales/s)")
    print(f"  journal only, file (WAL)  {per_sale_file:8.1f} us/sale ({1e6 / per_sale_file:.0f} sales/s)")


if __name__ == "__main__":
    main()
