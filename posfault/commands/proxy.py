"""``posfault proxy``: the message-aware fault proxy in front of a real host.

    posfault proxy --listen 127.0.0.1:9000 --upstream 10.0.0.5:5000 --rules faults.toml --dialect unionpay_pos
    posfault proxy --serial /dev/ttyUSB0 --upstream 127.0.0.1:5000 --rules faults.toml --dialect iso87ascii

Prints ``listening on HOST:PORT`` on stderr once ready, then one masked line per message (time,
connection, direction, MTI, STAN, TID, what the fault layer did). ``--trace``/``--pcap`` write the
run on exit (Ctrl-C, SIGTERM, or after ``--duration`` seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import signal
import sys
import time

from iso8583.framing import length_prefix

from ..faults.proxy import FaultProxy, parse_hostport
from ..faults.rules import FaultPlan, load_rules
from ..trace import Trace


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "proxy", help="run the fault proxy between a real terminal (TCP or serial) and a real host",
        description="Forward ISO 8583 messages between a terminal and a host, applying fault rules "
                    "(drop, delay, duplicate, corrupt, truncate, fragment, reset, black-hole) to whole "
                    "messages. Every message is logged, masked.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--listen", metavar="HOST:PORT", help="accept terminals on this TCP address "
                     "(use 127.0.0.1 unless the terminal is on another machine; port 0 = any free port)")
    src.add_argument("--serial", metavar="URL", help="a terminal on a serial port: a device path or any "
                     "pyserial URL (loop://, socket://host:port, rfc2217://host:port)")
    p.add_argument("--upstream", metavar="HOST:PORT", required=True, help="the host to forward to")
    p.add_argument("--rules", metavar="FILE", help="fault rules (TOML, see fixtures/faults/); none = forward all")
    p.add_argument("--dialect", help="dialect name or spec file, to match MTI/fields and log messages "
                   "(iso87ascii, iso87binary, iso93ascii, unionpay_pos)")
    p.add_argument("--header", help="length header if no dialect is given (binary2, ascii4, bcd2, binary4)")
    p.add_argument("--seed", type=int, help="override the rules file's seed")
    p.add_argument("--baudrate", type=int, default=9600, help="serial speed (default 9600)")
    p.add_argument("--serial-framing", default="stx", help="stx (STX LEN DATA ETX LRC with ACK/NAK, default) "
                   "or a length header kind (binary2, ascii4...)")
    p.add_argument("--max-connections", type=int, default=64)
    p.add_argument("--idle-timeout", type=float, default=300.0, help="close a silent connection after S seconds")
    p.add_argument("--trace", metavar="FILE.jsonl", help="write the masked event trace here on exit")
    p.add_argument("--pcap", metavar="FILE.pcap", help="write a pcap (masked) here on exit")
    p.add_argument("--pcap-port", type=int, default=8583, help="TCP port used in the pcap (default 8583)")
    p.add_argument("--duration", type=float, help="stop after S seconds (for scripts and tests)")
    p.add_argument("--quiet", action="store_true", help="do not log each message")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_main(args))


async def _main(args: argparse.Namespace) -> int:
    wire = None
    if args.dialect:
        from iso8583.wire import Wire

        wire = Wire(args.dialect)
    plan = load_rules(args.rules, seed=args.seed) if args.rules else FaultPlan(seed=args.seed or 0)
    header = length_prefix(args.header) if args.header else None
    trace = Trace(wire=wire, clock=dt.datetime.now)
    log_line = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    upstream = parse_hostport(args.upstream)
    proxy = FaultProxy(upstream, plan, listen=None, wire=wire, trace=trace, header=header,
                       idle_timeout=args.idle_timeout, max_connections=args.max_connections, log_line=log_line)
    loop = asyncio.get_running_loop()
    started_wall, started_loop = time.time(), loop.time()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        if args.listen:
            proxy.listen = parse_hostport(args.listen)
            await proxy.start()
            print(f"listening on {proxy.listen[0]}:{proxy.port}, forwarding to {upstream[0]}:{upstream[1]} "
                  f"with {len(plan.rules)} rule(s)", file=sys.stderr, flush=True)
        else:
            from iso8583.channels.serial import open_serial

            terminal = await open_serial(args.serial, baudrate=args.baudrate, framing=args.serial_framing,
                                         max_frame=proxy.max_frame)
            proxy.start_serial(terminal)
            print(f"serial {args.serial} -> {upstream[0]}:{upstream[1]} with {len(plan.rules)} rule(s)",
                  file=sys.stderr, flush=True)
        if args.duration is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.duration)
        else:
            await stop.wait()
    finally:
        await proxy.close()
        if args.trace:
            count = trace.to_jsonl(args.trace)
            print(f"trace: {count} events -> {args.trace}", file=sys.stderr)
        if args.pcap:
            from ..pcap import write_pcap

            write_pcap(trace, args.pcap, wire=wire, port=args.pcap_port, prefix=proxy.header,
                       epoch=started_wall - started_loop)
            print(f"pcap -> {args.pcap}", file=sys.stderr)
        for rule in plan.stats():
            print(f"rule {rule['rule']!r}: matched {rule['matched']}, fired {rule['fired']}", file=sys.stderr)
    return 0
