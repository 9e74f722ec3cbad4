"""Hypothesis strategies for fault plans: let QA search the space of network failures.

    from hypothesis import given
    from posfault.faults.strategies import fault_plans

    @given(plan=fault_plans(mtis=["0200", "0210", "0400", "0410"]))
    def test_no_money_lost(plan): ...   # run a simulation with `plan`, assert the oracle is clean

Plans are ordinary :class:`~posfault.faults.rules.FaultPlan` objects built through the public rule
builders, so a failing example prints as readable rules and can be saved with ``plan.to_dicts()``.
Imports hypothesis, so it is only for test suites.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from . import rules as r

__all__ = ["fault_plans", "fault_rules"]

DEFAULT_MTIS = ("0200", "0210", "0400", "0410", "0800", "0810")
BYTE_ACTIONS = ("corrupt", "truncate", "fragment")
MESSAGE_ACTIONS = ("drop", "delay", "duplicate", "reset", "blackhole")


def _match(draw: Any, mtis: Sequence[str], max_time: float) -> dict[str, Any]:
    match: dict[str, Any] = {}
    direction = draw(st.sampled_from([None, "to_host", "to_terminal"]))
    if direction:
        match["direction"] = direction
    if mtis and draw(st.booleans()):
        match["mti"] = draw(st.sampled_from(list(mtis)))
    if draw(st.booleans()):
        match["nth"] = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3, unique=True).map(sorted))
    if draw(st.integers(0, 3)) == 0:
        after = draw(st.floats(0, max_time / 2, allow_nan=False).map(lambda x: round(x, 3)))
        match["after"] = after
        match["before"] = round(after + draw(st.floats(1, max_time, allow_nan=False)), 3)
    if draw(st.integers(0, 3)) == 0:
        match["probability"] = draw(st.sampled_from([0.1, 0.25, 0.5, 0.9]))
    if draw(st.booleans()):
        match["limit"] = draw(st.integers(1, 3))
    return match


@st.composite
def fault_rules(draw: Any, *, mtis: Sequence[str] = DEFAULT_MTIS, actions: Sequence[str] | None = None,
                max_delay: float = 90.0, max_time: float = 600.0) -> r.Rule:
    """One rule: a random action with sensible parameters and random match criteria."""
    kind = draw(st.sampled_from(list(actions or (*MESSAGE_ACTIONS, *BYTE_ACTIONS))))
    match = _match(draw, mtis, max_time)
    if kind == "drop":
        return r.drop(**match)
    if kind == "delay":
        return r.delay(draw(st.sampled_from([0.5, 5.0, 30.0, 59.0, 61.0, max_delay])),
                       jitter=draw(st.sampled_from([0.0, 0.5, 2.0])), **match)
    if kind == "duplicate":
        return r.duplicate(draw(st.integers(1, 2)), gap=draw(st.sampled_from([0.0, 0.1, 5.0])), **match)
    if kind == "reset":
        return r.reset(**match)
    if kind == "blackhole":
        return r.blackhole(draw(st.sampled_from([5.0, 30.0, 120.0])), **match)
    if kind == "corrupt":
        return r.corrupt(bits=draw(st.integers(1, 3)), **match)
    if kind == "truncate":
        return r.truncate(fraction=draw(st.sampled_from([0.1, 0.5, 0.9])),
                          adjust_length=draw(st.booleans()), **match)
    return r.fragment(draw(st.integers(2, 5)), gap=draw(st.sampled_from([0.0, 0.01, 1.0])), **match)


@st.composite
def fault_plans(draw: Any, *, max_rules: int = 4, mtis: Sequence[str] = DEFAULT_MTIS,
                actions: Sequence[str] | None = None, max_delay: float = 90.0) -> r.FaultPlan:
    """A plan of up to ``max_rules`` rules with a drawn seed."""
    rules = draw(st.lists(fault_rules(mtis=mtis, actions=actions, max_delay=max_delay), max_size=max_rules))
    return r.FaultPlan(rules, seed=draw(st.integers(0, 2**32 - 1)))
