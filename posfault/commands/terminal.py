"""``posfault terminal``: drive the simulated POS terminal by hand against a real host (TCP or serial).

Examples::

    posfault terminal signon --host 127.0.0.1:8583
    posfault terminal sale --amount 12.34 --host 127.0.0.1:8583 --card chip-ok
    posfault terminal void --attempt 1 --host 127.0.0.1:8583
    posfault terminal settle --host 127.0.0.1:8583 --dialect unionpay_pos
    posfault terminal sale --amount 5 --serial socket://127.0.0.1:7000
    posfault terminal journal

The journal (``--journal``, default ``posfault-terminal.db``) persists across runs, so a void can
name an earlier sale, pending reversals are sent before the next transaction, and a run that was
killed mid-transaction is recovered by the next one (every run starts with ``power_up``).
Exit code: 0 approved / done, 1 declined or failed, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from iso8583.transactions import amount_from_display

ACTIONS = ("signon", "echo", "balance", "sale", "void", "refund", "preauth", "completion", "settle", "reprint",
           "journal")


def register(subparsers: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("connection")
    where.add_argument("--host", metavar="HOST:PORT", help="host to connect to over TCP (e.g. 127.0.0.1:8583)")
    where.add_argument("--serial", metavar="URL", help="pyserial URL instead of TCP (/dev/ttyUSB0, socket://..., loop://)")
    where.add_argument("--baudrate", type=int, default=9600, help="serial baud rate (default 9600)")
    term = common.add_argument_group("terminal")
    term.add_argument("--dialect", default="iso87ascii", help="iso87ascii, iso87binary, iso93ascii, unionpay_pos or a spec path")
    term.add_argument("--tid", default="10000001", help="terminal id, field 41 (8 chars)")
    term.add_argument("--mid", default="100000000000001", help="merchant id, field 42 (15 chars)")
    term.add_argument("--profile", default="correct", help="firmware profile name or TOML path (default correct)")
    term.add_argument("--journal", default="posfault-terminal.db", help="journal SQLite file (default posfault-terminal.db)")
    term.add_argument("--timeout", type=float, default=60.0, help="response timeout in seconds (default 60)")
    term.add_argument("--tmk", default="tmk", help="terminal master key: 'tmk' = the TEST key of fixtures/keys, or hex")
    term.add_argument("--no-mac", action="store_true", help="do not MAC requests or check response MACs")
    term.add_argument("--cards", default=None, help="test cards TOML (default fixtures/cards/test_cards.toml)")

    parser = subparsers.add_parser("terminal", help="drive the simulated POS terminal against a host (TCP/serial)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    for name in ACTIONS:
        sub = actions.add_parser(name, parents=[common], help=_HELP[name])
        if name in ("sale", "refund", "preauth"):
            sub.add_argument("--amount", required=True, help="amount as 12.34 (major units)")
        if name == "completion":
            sub.add_argument("--amount", help="completion amount (default: the pre-authorized amount)")
        if name in ("sale", "refund", "preauth", "balance"):
            sub.add_argument("--card", default="chip-ok", help="test card name (default chip-ok)")
            sub.add_argument("--pin", default=None, help="PIN the cardholder enters (default: the card's; '' = none)")
        if name in ("void", "completion"):
            sub.add_argument("--attempt", type=int, required=True, help="journal attempt number of the original")
        if name == "refund":
            sub.add_argument("--original", type=int, default=None, help="attempt number of the original sale")
        sub.set_defaults(func=run)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


_HELP = {
    "signon": "sign on (0800) and install the working keys the host sends",
    "echo": "network echo test",
    "balance": "balance inquiry",
    "sale": "purchase",
    "void": "void an earlier sale or completion of the open batch",
    "refund": "refund (store-and-forward advice 0220)",
    "preauth": "pre-authorization (0100)",
    "completion": "complete a pre-authorization",
    "settle": "settle the batch (0500, batch upload on mismatch)",
    "reprint": "reprint the last receipt",
    "journal": "list the journal's attempts (masked)",
}


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


def _connector(args: argparse.Namespace, wire: Any) -> Any:
    if args.serial:
        from iso8583.channels import serial as serial_channels

        async def open_serial() -> Any:
            return await serial_channels.open_serial(args.serial, baudrate=args.baudrate)
        return open_serial
    if not args.host:
        raise ValueError("give --host HOST:PORT or --serial URL")
    host, sep, port = args.host.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--host must be HOST:PORT, got {args.host!r}")
    from iso8583.channels import tcp

    async def open_tcp() -> Any:
        return await tcp.connect(host or "127.0.0.1", int(port), header=wire.prefix, max_frame=wire.max_frame,
                                 timeout=min(args.timeout, 10.0))
    return open_tcp


async def _run(args: argparse.Namespace) -> int:
    from terminal_sim import Journal, Terminal, TerminalConfig, load_cards

    journal = Journal.open(args.journal)
    if args.action == "journal":
        for rec in journal.attempts():
            print(_describe(rec))
        return 0
    config = TerminalConfig(tid=args.tid, mid=args.mid, dialect=args.dialect, profile=args.profile,
                            response_timeout=args.timeout, tmk=args.tmk, use_mac=not args.no_mac,
                            reversal_timeout=min(30.0, args.timeout))
    from terminal_sim.link import Link, terminal_master_key

    link = Link(config.dialect, tmk=terminal_master_key(config.tmk), mac_algorithm=config.mac_algorithm,
                pin_format=config.pin_format)
    term = Terminal(config, journal=journal, connector=_connector(args, link.wire), link=link,
                    events=_printer_of_events if args.action != "reprint" else None)
    recovered = await term.power_up()
    if recovered:
        print(f"recovered attempts from the journal: {recovered}")
    cards = load_cards(args.cards) if hasattr(args, "card") else {}
    card = None
    if hasattr(args, "card"):
        if args.card not in cards:
            raise ValueError(f"unknown card {args.card!r}; known: {', '.join(sorted(cards))}")
        card = cards[args.card]
    action = args.action
    if action == "signon":
        result = await term.sign_on()
    elif action == "echo":
        result = await term.echo()
    elif action == "balance":
        result = await term.balance(card=card, pin=args.pin)
    elif action == "sale":
        result = await term.sale(amount_from_display(args.amount), card=card, pin=args.pin)
    elif action == "preauth":
        result = await term.preauth(amount_from_display(args.amount), card=card, pin=args.pin)
    elif action == "refund":
        result = await term.refund(amount_from_display(args.amount), card=card, original=args.original)
    elif action == "void":
        result = await term.void(args.attempt)
    elif action == "completion":
        amount = amount_from_display(args.amount) if args.amount else None
        result = await term.completion(args.attempt, amount)
    elif action == "settle":
        settled = await term.settle()
        t = settled.totals
        print(f"{'SETTLED' if settled.ok else 'NOT SETTLED'} batch {settled.batch:06d} rc={settled.rc} "
              f"debits {t.debit_count}/{t.debit_amount} credits {t.credit_count}/{t.credit_amount} "
              f"uploaded {settled.uploaded} {settled.detail}")
        return 0 if settled.ok else 1
    elif action == "reprint":
        ok = await term.reprint()
        if term.printer.roll:
            print(term.printer.roll[-1].text)
        return 0 if ok else 1
    else:  # pragma: no cover - argparse restricts the choices
        raise ValueError(f"unknown action {action!r}")
    print(f"{result.outcome.upper()} rc={result.rc} stan={result.stan} auth={result.auth_code} rrn={result.rrn}"
          f" attempt={result.attempt} {result.detail}".rstrip())
    if result.balance is not None:
        print(f"balance: {result.balance // 100}.{abs(result.balance) % 100:02d}")
    if result.receipt and term.printer.roll:
        print(term.printer.roll[-1].text)
    journal.close()
    return 0 if result.outcome == "approved" else 1


def _printer_of_events(event: dict) -> None:
    kind = event.get("kind")
    if kind in ("send", "recv", "reversal_send", "reversal_acked", "advice_acked", "connect_failed", "mac_failed",
                "recv_malformed", "print_failed"):
        parts = [f"{k}={event[k]}" for k in ("mti", "stan", "rc", "attempt", "detail") if event.get(k) is not None]
        print(f"  [{kind}] " + " ".join(parts))


def _describe(rec: Any) -> str:
    stans = ",".join(rec.stans) or "-"
    printed = f"printed@{rec.receipt_printed_at:.1f}" if rec.receipt_printed else "no receipt"
    return (f"#{rec.attempt} {rec.kind}{'(offline)' if rec.mode == 'offline' else ''} {rec.amount} {rec.card} "
            f"stan={stans} outcome={rec.outcome} rc={rec.rc} {printed} reversal={rec.reversal} "
            f"advice={rec.advice} batch={rec.batch:06d}{' settled' if rec.settled else ''}"
            f"{' voided' if rec.voided else ''}")
