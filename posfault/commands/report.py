"""``posfault report INPUT --out DIR``: the timeline of a run as HTML/SVG, Mermaid, text (and pcap).

INPUT is a scenario file (``.toml``: it is run first, so the report carries the verdict and a pcap)
or a trace written by a previous run (``.jsonl``: rendered as it is).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("report", help="render a run's timeline (HTML/SVG, Mermaid, text, pcap)")
    p.add_argument("input", type=pathlib.Path, metavar="INPUT", help="scenario .toml or trace .jsonl")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("posfault-report"),
                   help="output directory (default ./posfault-report)")
    p.add_argument("--seed", type=int, default=None, help="seed for a scenario input")
    p.add_argument("--mermaid", action="store_true", help="also print the Mermaid diagram")
    p.set_defaults(func=run_command)


def _read_trace(path: pathlib.Path) -> list[dict]:
    events = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not a JSON trace line: {exc.msg} at column {exc.colno}") from None
        if not isinstance(event, dict):
            raise ValueError(f"{path}:{number}: a trace line must be a JSON object, found {type(event).__name__}")
        events.append(event)
    return events


def run_command(args: argparse.Namespace) -> int:
    from ..report import render_mermaid, render_text, write_report

    path: pathlib.Path = args.input
    name = path.name.split(".")[0]
    if path.suffix == ".toml":
        from ..scenario import Scenario, ScenarioError
        from ..simulation import run_scenario

        try:
            scenario = Scenario.load(path)
        except ScenarioError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        result = run_scenario(scenario, seed=args.seed, capture_frames=True)
        trace, verdict, pcap, title = result.trace, result.verdict, result.pcap, scenario.name
    elif path.suffix == ".jsonl":
        trace, verdict, pcap, title = _read_trace(path), None, None, path.name
    else:
        print(f"error: {path}: expected a scenario (.toml) or a trace (.jsonl)", file=sys.stderr)
        return 2
    print(render_text(trace))
    if verdict is not None:
        print()
        print(verdict.summary())
    if args.mermaid:
        print()
        print(render_mermaid(trace, verdict, title=title))
    paths = write_report(args.out, name, trace, verdict, title=title, pcap=pcap)
    print("\nwritten: " + ", ".join(str(p) for p in paths.values()))
    return 0
