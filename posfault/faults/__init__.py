"""The message-aware fault layer: rules as data, the link that applies them, the real proxy.

Quick tour::

    from posfault import faults
    plan = faults.FaultPlan([faults.drop(direction="to_terminal", mti="0210", nth=1)], seed=1)
    plan = faults.load_rules("fixtures/faults/lost_approval.toml")      # same, from TOML

    # in a simulation: a faulty in-memory connection (the link runs in the background)
    term_end, host_end, link = faults.faulty_pipe(plan, wire=wire, trace=trace)

    # in front of a real host: see posfault.faults.proxy / `posfault proxy`

See :mod:`posfault.faults.rules` for the exact matching semantics and every action.
"""

from __future__ import annotations

from typing import Any

from iso8583.channels.memory import MemoryChannel, pipe

from .direct import DirectLink, direct_pipe
from .link import FaultLink
from .rules import (
    ACTIONS,
    Action,
    Blackhole,
    Corrupt,
    Decision,
    Delay,
    Delivery,
    Drop,
    Duplicate,
    FaultPlan,
    FaultRuleError,
    Fragment,
    Match,
    Pass,
    Reset,
    Rule,
    Truncate,
    blackhole,
    corrupt,
    delay,
    drop,
    duplicate,
    fragment,
    load_rules,
    passthrough,
    reset,
    truncate,
    with_match,
)

__all__ = [
    "ACTIONS",
    "Action",
    "Blackhole",
    "Corrupt",
    "Decision",
    "Delay",
    "Delivery",
    "DirectLink",
    "Drop",
    "Duplicate",
    "FaultLink",
    "FaultPlan",
    "FaultRuleError",
    "Fragment",
    "Match",
    "Pass",
    "Reset",
    "Rule",
    "Truncate",
    "blackhole",
    "corrupt",
    "delay",
    "direct_pipe",
    "drop",
    "duplicate",
    "faulty_pipe",
    "fragment",
    "load_rules",
    "passthrough",
    "reset",
    "truncate",
    "with_match",
]


def faulty_pipe(plan: FaultPlan | None = None, *, wire: Any = None, trace: Any = None, name: str = "link",
                latency: float = 0.0, **pipe_args: Any) -> tuple[MemoryChannel, MemoryChannel, FaultLink]:
    """An in-memory connection with a fault link in the middle, already running.

    Returns ``(terminal_end, host_end, link)``: give ``terminal_end`` to the terminal (e.g. from its
    connector) and serve ``host_end`` with the host. ``latency`` applies to each of the two hops.
    ``header``/``max_frame`` default to the wire's. Must be called inside a running loop.

    Without ``latency`` and ``idle_timeout`` the link is a :class:`DirectLink` (no task per
    connection or message); with them, a pumped :class:`FaultLink` between two memory pipes, whose
    link-side reads time out and whose hops each take ``latency``.
    """
    if wire is not None:
        pipe_args.setdefault("header", wire.prefix)
        pipe_args.setdefault("max_frame", wire.max_frame)
    if not latency and pipe_args.get("idle_timeout") is None and set(pipe_args) <= {"header", "max_frame",
                                                                                     "idle_timeout"}:
        pipe_args.pop("idle_timeout", None)
        return direct_pipe(plan, wire=wire, trace=trace, name=name, **pipe_args)
    terminal_end, link_terminal_side = pipe(latency=latency, names=(f"{name}:terminal", f"{name}:proxy-t"),
                                            **pipe_args)
    link_host_side, host_end = pipe(latency=latency, names=(f"{name}:proxy-h", f"{name}:host"), **pipe_args)
    link = FaultLink(link_terminal_side, link_host_side, plan, wire=wire, trace=trace, name=name)
    link.start()
    return terminal_end, host_end, link
