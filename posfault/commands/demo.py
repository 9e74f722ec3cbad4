"""``posfault demo``: the two headline incidents, reproduced with a faulty terminal and fixed with a correct one.

1. *Debited, no receipt* (扣款未出单): the approval (0210) is lost on its way back; a terminal that
   does not reverse on timeout leaves the cardholder debited with nothing printed.
2. *Swiped but not charged* (刷卡未扣款): the approval arrives late; a terminal that still accepts
   it prints a receipt while its reversal undoes the debit.

Each runs first with the faulty firmware profile, then with the same faults against the ``correct``
profile, and shows the timeline and the oracle's verdict. Reports (HTML/SVG timeline, Mermaid,
JSONL trace, pcap) go to ``--out``. Exit 0 when every faulty run shows its incident and every
correct run shows the money is right.
"""

from __future__ import annotations

import argparse
import pathlib
import time
from dataclasses import dataclass
from typing import Any

from ..scenario import DIALECTS


@dataclass(frozen=True)
class DemoCase:
    slug: str
    title: str
    faulty_profile: str
    faults: tuple[dict[str, Any], ...]
    expected: str
    story: str


CASES = (
    DemoCase("debited-no-receipt", "Debited, no receipt (扣款未出单)", "no_reversal_on_timeout",
             ({"action": "drop", "direction": "to_terminal", "mti": "0210", "nth": 1},),
             "debited-no-receipt",
             "The host approves and debits 100.00; the 0210 is lost on the way back."),
    DemoCase("swiped-not-charged", "Swiped but not charged (刷卡未扣款)", "late_response_accepted",
             ({"action": "delay", "direction": "to_terminal", "mti": "0210", "nth": 1, "seconds": 75.0},),
             "receipt-not-charged",
             "The host approves 100.00, but the 0210 arrives 75 s later — after the terminal's 60 s timeout."),
)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("demo", help="reproduce the headline incidents, then show the fix (start here)")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("posfault-demo"),
                   help="where to write the reports (default ./posfault-demo)")
    p.add_argument("--dialect", default="unionpay_pos", choices=DIALECTS)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--no-timeline", action="store_true", help="verdicts only")
    p.set_defaults(func=run_command)


def _rule(char: str = "=") -> str:
    return char * 100


def run_case(case: DemoCase, profile: str, args: argparse.Namespace) -> tuple[Any, dict[str, pathlib.Path]]:
    from ..report import render_text
    from ..simulation import Simulation

    with Simulation(seed=args.seed, dialect=args.dialect, terminal_profile=profile) as sim:
        for fault in case.faults:
            sim.faults.add(fault)
        sim.terminal.sale("100.00", card="chip-ok")
        sim.run_until_quiet()
        verdict = sim.verdict()
        if not args.no_timeline:
            # The start-of-day sign-on is in the reports; on screen, start with the purchase.
            shown = [ev for ev in sim.events() if ev.get("mti") not in ("0800", "0810")
                     and ev.get("kind") not in ("sign_on", "signed_on")]
            print(render_text(shown, limit=60))
            print()
        print(verdict.summary())
        paths = sim.report(args.out, f"{case.slug}.{profile}",
                           title=f"{case.title} — terminal profile {profile}")
    return verdict, paths


def run_command(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    rows = []
    ok = True
    for case in CASES:
        fault_text = "; ".join(" ".join(f"{k}={v}" for k, v in f.items()) for f in case.faults)
        for profile, expect in ((case.faulty_profile, [case.expected]), ("correct", [])):
            print(_rule())
            label = "FAULTY firmware" if profile != "correct" else "CORRECT firmware, same faults"
            print(f"{case.title}: {label} (profile {profile})")
            print(f"{case.story}\nfaults: {fault_text}; dialect {args.dialect}; seed {args.seed}")
            print(_rule("-"))
            verdict, paths = run_case(case, profile, args)
            match = verdict.anomaly_kinds == expect
            ok = ok and match
            rows.append((case.title, profile, ", ".join(verdict.anomaly_kinds) or "money is right", match,
                         paths["html"]))
            print(f"\nreport: {paths['html']}  (also .mmd, .jsonl" + (", .pcap)" if "pcap" in paths else ")"))
    print(_rule())
    print("Summary")
    for title, profile, result, match, html in rows:
        print(f"  {'✓' if match else '✕'} {title:<38} {profile:<24} {result:<22} {html}")
    print(f"\nfinished in {time.perf_counter() - started:.2f} s of wall time")
    return 0 if ok else 1
