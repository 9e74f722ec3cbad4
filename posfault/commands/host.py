"""``posfault host``: run the acquirer/issuer host on TCP or a serial line, settle, and report.

    posfault host serve --listen 127.0.0.1:8583 --dialect iso87ascii
    posfault host serve --serial /dev/ttyUSB0 --baud 115200 --dialect unionpay_pos
    posfault host settle --ledger host.db --day 2026-11-23      # cut-off + due payouts
    posfault host report --ledger host.db                       # transactions + payout report

The ledger file keeps balances, transactions and settlements across restarts (SQLite, WAL). Test
cards and merchants come from ``fixtures/cards``; the terminal master key from
``fixtures/keys/test_keys.toml`` (TEST ONLY) unless ``--tmk`` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import json
import signal
import sys
from typing import Any

BOOL_SWITCHES = ("lose_response_after_commit", "no_duplicate_detection", "ignore_unknown_reversal",
                 "skip_payout_retries", "issuer_unavailable", "issuer_slow", "corrupt_response_mac")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("host", help="run the simulated acquirer/issuer host (TCP or serial), settle, report")
    sub = p.add_subparsers(dest="host_command", metavar="HOST_COMMAND")

    serve = sub.add_parser("serve", help="answer ISO 8583 requests on TCP or a serial line")
    where = serve.add_mutually_exclusive_group()
    where.add_argument("--listen", default="127.0.0.1:8583",
                       help="HOST:PORT to listen on (default 127.0.0.1:8583; port 0 picks a free one)")
    where.add_argument("--serial", metavar="URL", help="pyserial URL or device (e.g. /dev/ttyUSB0, socket://..., loop://)")
    serve.add_argument("--baud", type=int, default=9600, help="serial baud rate (default 9600)")
    serve.add_argument("--serial-framing", default="stx",
                       help="serial framing: stx (STX/ETX/LRC with ACK/NAK, default) or a length header kind")
    _common(serve)
    serve.add_argument("--rules", help="authorization rules TOML (see fixtures/host/rules.toml)")
    serve.add_argument("--switch", action="append", default=[], choices=BOOL_SWITCHES, dest="switches",
                       help="turn on a careless-host switch (repeatable)")
    serve.add_argument("--issuer-slow-delay", type=float, default=0.0, help="seconds added by --switch issuer_slow")
    serve.add_argument("--duplicate-response", choices=("original", "94"), default="original",
                       help="answer to a retransmission (default: the original answer)")
    serve.add_argument("--mac-required", action="store_true", help="financial requests must carry a valid MAC")
    serve.add_argument("--tmk", help="terminal master key, hex (default: the TEST ONLY fixture TMK)")
    serve.add_argument("--synchronous", default="FULL", choices=("FULL", "NORMAL", "OFF"),
                       help="SQLite durability: FULL survives power loss, NORMAL a process crash")
    serve.add_argument("--commit", default="auto", choices=("auto", "thread", "inline"),
                       help="group commit inline (the loop waits for the fsync) or on a writer thread (the loop"
                            " keeps serving meanwhile, but the thread must win a CPU and the GIL back);"
                            " auto (default): inline, thread with --slow-commit")
    serve.add_argument("--slow-commit", type=float, default=0.0, metavar="SECONDS",
                       help="simulate a slow disk: each group commit takes this much longer (thread commit only)")
    serve.add_argument("--wal-preallocate", type=float, default=64.0, metavar="MIB",
                       help="with --synchronous FULL: zero-fill the ledger's WAL to this size at start so commits"
                            " overwrite it in place (a cheaper fsync); 0 turns it off (default 64)")
    serve.add_argument("--idle-timeout", type=float, default=300.0, help="close a silent connection after N s")
    serve.add_argument("--max-connections", type=int, default=256)
    serve.add_argument("--max-seconds", type=float, default=None, help="stop after N seconds (bounded runs)")
    serve.add_argument("--timings", metavar="FILE",
                       help="debugging the tail: at exit write per-request stage timestamps (TCP) as JSON to FILE")
    serve.add_argument("--events", action="store_true", help="print host events (masked) as JSON lines on stderr")
    serve.set_defaults(func=_serve)

    settle = sub.add_parser("settle", help="run the daily cut-off for a day, then every due payout")
    _common(settle)
    settle.add_argument("--day", help="business day YYYY-MM-DD (default today)")
    settle.add_argument("--payout-at", help="payout run time YYYY-MM-DDTHH:MM (default now)")
    settle.set_defaults(func=_settle)

    report = sub.add_parser("report", help="print the ledger's transactions and the payout report")
    _common(report)
    report.add_argument("--json", action="store_true", help="machine-readable output")
    report.set_defaults(func=_report)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dialect", default="iso87ascii",
                   help="iso87ascii (default), iso87binary, iso93ascii, unionpay_pos, or a spec file")
    p.add_argument("--ledger", default="posfault-host.db", help="SQLite ledger file (default posfault-host.db)")
    p.add_argument("--cards", default=None, help="test cards TOML (default fixtures/cards/test_cards.toml)")
    p.add_argument("--merchants", default=None, help="merchants TOML (default fixtures/cards/merchants.toml)")


def _open_ledger(args: argparse.Namespace, synchronous: str = "FULL", checkpoint: str = "auto") -> Any:
    from host_sim import Ledger, seed
    from host_sim.fixtures import DEFAULT_CARDS, DEFAULT_MERCHANTS

    ledger = Ledger.open(args.ledger, synchronous=synchronous, checkpoint=checkpoint)
    seed(ledger, cards=args.cards or DEFAULT_CARDS, merchants=args.merchants or DEFAULT_MERCHANTS)
    return ledger


def _parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"--listen must be HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _serve(args: argparse.Namespace) -> int:
    from host_sim import Host, HostConfig, load_rules

    if args.tmk is not None:
        try:
            bytes.fromhex(args.tmk)
        except ValueError:
            raise ValueError("--tmk must be hex") from None
    config = HostConfig(duplicate_response=args.duplicate_response, mac_required=args.mac_required,
                        rules=load_rules(args.rules) if args.rules else [],
                        issuer_slow_delay=args.issuer_slow_delay,
                        **{name: True for name in args.switches})
    # serving: WAL checkpoints on their own thread, never inside a commit a response waits for
    if args.commit == "auto":
        # inline even with FULL: measured in alternating runs on the shared 2-core box (with the WAL
        # preallocated), the fsync blocking the loop for ~0.4 ms costs less than the writer thread
        # waiting for a CPU and the GIL (its commit stage p99 4-7 ms vs 1.2-3.4 ms inline in 5 of 6 runs)
        args.commit = "thread" if args.slow_commit else "inline"
    ledger = _open_ledger(args, args.synchronous, checkpoint="background")
    if args.wal_preallocate and args.synchronous == "FULL":
        ledger.preallocate_wal(int(args.wal_preallocate * (1 << 20)))
    if args.slow_commit:
        if args.commit != "thread":
            raise ValueError("--slow-commit needs --commit thread")
        ledger.write_delay = args.slow_commit

    def sink(event: dict[str, Any]) -> None:
        print(json.dumps(event, default=str), file=sys.stderr, flush=True)

    host = Host(ledger, args.dialect, config, events=sink if args.events else None,
                keys={"default": args.tmk} if args.tmk else None, commit=args.commit)
    _tune_for_latency()
    try:
        asyncio.run(_run(host, args))
    finally:
        ledger.close()
    return 0


#: How often the serving process moves long-lived objects out of the cyclic GC's view (seconds).
GC_FREEZE_INTERVAL = 1.0
#: At most this often (seconds), and only when idle, a full collection reclaims frozen garbage.
GC_FULL_INTERVAL = 60.0
#: GIL switch interval while serving: the ledger's writer thread returns from COMMIT within this.
SWITCH_INTERVAL = 0.0001


def _tune_for_latency() -> None:
    """Process settings for a low, steady response time (they change no behaviour).

    - The ledger mirror keeps every transaction in memory; a full cyclic-GC pass over it stalls the
      event loop for tens of milliseconds. Start-up objects are frozen out of the collector, the
      young-generation threshold raised (request garbage is acyclic, freed by refcounting), and
      :func:`_gc_maintenance` keeps freezing what survives.
    - The group commit's fsync runs on the ledger's writer thread with the GIL released; to hand
      its result back it needs the GIL again, which a busy event loop yields only every switch
      interval (5 ms by default, straight onto the response time): 0.1 ms here.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)
    sys.setswitchinterval(SWITCH_INTERVAL)


def _gc_maintenance(host: Any, loop: asyncio.AbstractEventLoop, seen: int = -1, swept: float = 0.0) -> None:
    """Every second: freeze the survivors (the growing ledger mirror) so no collection rescans them.
    When the host was idle for the last second (and at most once a minute), first run a full
    collection of everything, so cyclic garbage frozen earlier (a closed connection) is reclaimed."""
    requests = host.stats["requests"]
    now = loop.time()
    if requests == seen and now - swept >= GC_FULL_INTERVAL:
        gc.unfreeze()
        gc.collect()
        swept = now
    gc.freeze()
    loop.call_later(GC_FREEZE_INTERVAL, _gc_maintenance, host, loop, requests, swept)


async def _run(host: Any, args: argparse.Namespace) -> None:
    from host_sim.security_glue import spec_of
    from iso8583.wire import Wire

    wire = Wire(spec_of(host))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await _serve_until(host, args, wire, stop, loop)
    finally:
        # Shutting down already: a second SIGTERM/SIGINT (a supervisor repeating itself) must neither
        # hit the closed loop's wakeup fd nor kill the process before the ledger is closed.
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
                signal.signal(sig, signal.SIG_IGN)


async def _serve_until(host: Any, args: argparse.Namespace, wire: Any, stop: asyncio.Event,
                       loop: asyncio.AbstractEventLoop) -> None:
    if args.max_seconds is not None:
        loop.call_later(args.max_seconds, stop.set)
    loop.call_later(GC_FREEZE_INTERVAL, _gc_maintenance, host, loop)
    if args.serial:
        from iso8583.channels import serial as serial_channels

        channel = await serial_channels.open_serial(args.serial, baudrate=args.baud, framing=args.serial_framing,
                                                    max_frame=wire.max_frame)
        print(f"posfault host: serving {args.dialect} on serial {args.serial} at {args.baud} baud", flush=True)
        task = asyncio.create_task(host.serve(channel))
        await asyncio.wait([task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return
    from host_sim.tcp import serve_tcp

    address, port = _parse_listen(args.listen)
    timings: list[tuple[float, ...]] | None = [] if args.timings else None
    server = await serve_tcp(host, wire, address, port, idle_timeout=args.idle_timeout,
                             max_connections=args.max_connections, timings=timings)
    print(f"posfault host: serving {args.dialect} on {address}:{server.port} (ledger {args.ledger})", flush=True)
    try:
        await stop.wait()
    finally:
        await server.close()
        host.ledger.commit()
        if timings is not None:
            from host_sim.tcp import STAGES

            with open(args.timings, "w", encoding="utf-8") as out:
                json.dump({"stages": STAGES, "requests": timings}, out)


def _settle(args: argparse.Namespace) -> int:
    from host_sim import Host, format_report, payout_report

    ledger = _open_ledger(args)
    try:
        day = dt.date.fromisoformat(args.day) if args.day else dt.date.today()
        at = dt.datetime.fromisoformat(args.payout_at) if args.payout_at else dt.datetime.now()
        host = Host(ledger, args.dialect, clock=lambda: at)
        settled = host.run_settlement(day)
        paid = host.run_payouts(at)
        print(f"cut-off {day}: {len(settled)} settlement(s); payouts attempted: {len(paid)}")
        print(format_report(payout_report(ledger)))
        ledger.check_conservation()
    finally:
        ledger.close()
    return 0


def _report(args: argparse.Namespace) -> int:
    from host_sim import format_report, payout_report

    ledger = _open_ledger(args)
    try:
        txns = ledger.transactions()
        ledger.check_conservation()
        if args.json:
            print(json.dumps({"transactions": [_txn_json(t) for t in txns],
                              "payouts": [vars_of(r) for r in payout_report(ledger)]}, default=str, indent=1))
            return 0
        print(f"{'key':<34} {'kind':<12} {'amount':>10} {'rc':<3} {'status':<24} {'net debit':>10} settled")
        for t in txns:
            print(f"{t.key!s:<34} {t.kind:<12} {t.amount:>10} {t.rc:<3} {t.status:<24} {t.cardholder_debit:>10} "
                  f"{t.settled_batch or '-'}")
        print()
        print(format_report(payout_report(ledger)))
        print("\nconservation: ok")
    finally:
        ledger.close()
    return 0


def _txn_json(t: Any) -> dict[str, Any]:
    out = vars_of(t)
    out["key"] = str(t.key)
    return out


def vars_of(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}
