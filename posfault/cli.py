"""The ``posfault`` command line: discovers subcommands in :mod:`posfault.commands`.

Each command module defines ``register(subparsers)`` and sets ``func`` (returning an exit code) on
its parser. Exit codes: 0 success, 1 verdict/expectation mismatch, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from iso8583.errors import ISO8583Error

from . import __version__, commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="posfault",
        description="Reproduce card-payment incidents end to end: ISO 8583 terminal and host "
        "simulators, a fault layer, and an oracle that names who lost money.",
    )
    parser.add_argument("--version", action="version", version=f"posfault {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except (ISO8583Error, OSError, ValueError) as exc:
        print(f"posfault {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
