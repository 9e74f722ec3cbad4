"""``posfault campaign``: run thousands of seeded fault schedules, shrink what fails.

Exit 0 when no anomaly was found, 1 when one was (the minimal schedule is printed as a scenario file
and, with ``--out``, written to disk), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

from ..scenario import DIALECTS, HOST_SWITCHES, PROFILES


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("campaign", help="property-based search for anomalies over seeded fault schedules")
    p.add_argument("--profile", default="correct", choices=PROFILES, help="terminal firmware profile")
    p.add_argument("--dialect", default="iso87ascii", choices=DIALECTS)
    p.add_argument("--host-switch", action="append", default=[], choices=HOST_SWITCHES, dest="host_switches",
                   help="turn on a careless-host switch (repeatable)")
    p.add_argument("--schedules", type=int, default=1000, help="how many seeds to run (default 1000)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="processes (default: every local core)")
    p.add_argument("--all", action="store_true", help="run every schedule instead of stopping at the first finding")
    p.add_argument("--out", type=pathlib.Path, default=None, help="write each minimal scenario file here (a directory)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from ..campaign import Campaign, CampaignConfig

    config = CampaignConfig(terminal_profile=args.profile, dialect=args.dialect,
                            host={name: True for name in args.host_switches}, schedules=args.schedules,
                            first_seed=args.first_seed, stop_on_first=not args.all)
    started = time.perf_counter()

    def progress(done: int, total: int, found: int) -> None:
        if args.quiet:
            return
        rate = done / max(time.perf_counter() - started, 1e-9)
        sys.stderr.write(f"\r  {done}/{total} schedules  {rate:,.0f}/s  anomaly kinds found: {found}   ")
        sys.stderr.flush()

    switches = ", ".join(args.host_switches) or "careful host"
    print(f"campaign: profile {args.profile}, {switches}, dialect {args.dialect}, up to {args.schedules} schedules")
    result = Campaign(config, workers=args.workers, progress=progress).run()
    if not args.quiet:
        sys.stderr.write("\n")
    print(f"ran {result.ran} schedules in {result.elapsed:.2f} s ({result.schedules_per_second:,.0f} schedules/s)")
    for error in result.errors[:5]:
        print(f"CRASH in seed {error.seed}: {error.error}")
    if not result.findings:
        print("no anomaly found" + (" (but the simulation crashed, see above)" if result.errors else ""))
        return 1 if result.errors else 0
    for finding in result.findings:
        minimal = finding.minimal or finding.schedule
        print(f"\nFOUND {', '.join(finding.anomalies)} at seed {finding.seed}; shrunk in {finding.shrink_runs} runs "
              f"to {len(minimal.faults)} fault(s), {len(minimal.steps)} step(s):\n")
        text = finding.scenario_file()
        print(text)
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            path = args.out / f"{args.profile}-{finding.anomalies[0]}-seed{finding.seed}.toml"
            path.write_text(text, encoding="utf-8")
            print(f"written: {path}  (replay: posfault scenario run {path})")
    return 1
