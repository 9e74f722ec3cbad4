"""``posfault scenario run FILE [--seed N] [--report DIR]``: replay a scenario, compare its verdict.

Exit 0 when the verdict matches the file's ``[expect]``, 1 with the difference otherwise, 2 when the
file is malformed.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from ..scenario import Scenario, ScenarioError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("scenario", help="run scenario files (TOML) and check their verdict")
    sub = parser.add_subparsers(dest="scenario_command", metavar="SUBCOMMAND")
    run = sub.add_parser("run", help="replay a scenario; exit 0 if the verdict matches [expect], 1 if not")
    run.add_argument("files", nargs="+", metavar="FILE", type=pathlib.Path)
    run.add_argument("--seed", type=int, default=None, help="replay with this seed instead of the file's")
    run.add_argument("--report", metavar="DIR", type=pathlib.Path, default=None,
                     help="write the timeline (HTML, Mermaid, JSONL, pcap) into DIR")
    run.add_argument("--timeline", action="store_true", help="print the text timeline")
    run.add_argument("--json", action="store_true", help="print the verdict as JSON")
    run.set_defaults(func=run_command)
    check = sub.add_parser("check", help="validate scenario files without running them")
    check.add_argument("files", nargs="+", metavar="FILE", type=pathlib.Path)
    check.set_defaults(func=check_command)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def check_command(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        try:
            scenario = Scenario.load(path)
        except (ScenarioError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 2
            continue
        print(f"ok: {path}: {scenario.name} ({len(scenario.faults)} fault(s), {len(scenario.steps)} step(s))")
    return status


def run_command(args: argparse.Namespace) -> int:
    from ..report import render_text, write_report
    from ..simulation import run_scenario

    status = 0
    for path in args.files:
        try:
            scenario = Scenario.load(path)
        except ScenarioError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        result = run_scenario(scenario, seed=args.seed, capture_frames=args.report is not None)
        seed = scenario.seed if args.seed is None else args.seed
        if args.json:
            print(json.dumps({"file": str(path), "seed": seed, "matches": result.matches,
                              "differences": result.differences, "verdict": result.verdict.to_dict()},
                             indent=2, default=str))
        else:
            print(f"== {scenario.name}  [{path}, seed {seed}]")
            if args.timeline:
                print(render_text(result.trace))
                print()
            print(result.verdict.summary())
        if args.report is not None:
            paths = write_report(args.report, path.stem.replace(".", "_"), result.trace, result.verdict,
                                 title=scenario.name, subtitle=f"{path} · seed {seed}", pcap=result.pcap)
            print("report: " + ", ".join(str(p) for p in paths.values()))
        if result.matches:
            print(f"MATCH: verdict is as expected ({', '.join(result.verdict.anomaly_kinds) or 'no anomalies'})")
        else:
            status = 1
            print("MISMATCH:")
            for line in result.differences:
                print(f"  {line}")
    return status
