"""Model-based property test: the fault plan behaves exactly like a tiny reference model of the
documented semantics (per-rule nth counting, limits, rule order, terminal actions)."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from posfault import faults

from .harness import LINKS, msg, recv_all, run_on, unpack

DIRECTIONS = ["to_host", "to_terminal"]

rule_specs = st.fixed_dictionaries({
    "action": st.sampled_from(["drop", "duplicate", "pass"]),
    "direction": st.sampled_from([None, *DIRECTIONS]),
    "mti": st.sampled_from([None, "0200", "0210", "02?0"]),
    "nth": st.sampled_from([None, 1, 2, [1, 3], [2, 4, 5]]),
    "limit": st.sampled_from([None, 1, 2]),
})
messages = st.lists(st.tuples(st.sampled_from(DIRECTIONS), st.sampled_from(["0200", "0210", "0800"])),
                    min_size=1, max_size=14)


def build(spec: dict) -> faults.Rule:
    match = {k: v for k, v in spec.items() if k != "action" and v is not None}
    return {"drop": faults.drop, "duplicate": faults.duplicate, "pass": faults.passthrough}[spec["action"]](**match)


def model(specs: list[dict], sent: list[tuple[str, str]]) -> dict[str, list[int]]:
    seen = [0] * len(specs)
    fired = [0] * len(specs)
    out: dict[str, list[int]] = {d: [] for d in DIRECTIONS}
    for i, (direction, mti) in enumerate(sent):
        copies, ended = 1, False
        for r, spec in enumerate(specs):
            if spec["direction"] not in (None, direction):
                continue
            if spec["mti"] is not None and not (spec["mti"] == mti or (spec["mti"] == "02?0" and mti[:2] == "02"
                                                                       and mti[3] == "0")):
                continue
            seen[r] += 1
            if ended:
                continue
            nth = spec["nth"]
            if nth is not None and seen[r] not in (nth if isinstance(nth, list) else [nth]):
                continue
            if spec["limit"] is not None and fired[r] >= spec["limit"]:
                continue
            fired[r] += 1
            if spec["action"] == "drop":
                copies, ended = 0, True
            elif spec["action"] == "duplicate":
                copies *= 2
        out[direction] += [i] * copies
    return out


@given(specs=st.lists(rule_specs, max_size=4), sent=messages)
def test_plan_matches_reference_model(specs: list[dict], sent: list[tuple[str, str]]) -> None:
    plan = faults.FaultPlan([build(s) for s in specs])

    async def main():
        async with LINKS["memory"](plan) as (term, host, _):
            for i, (direction, mti) in enumerate(sent):
                await (term if direction == "to_host" else host).send(msg(mti, i))
                await asyncio.sleep(0.001)  # let the link take it: order across directions is causal only
            got_host = [int(unpack(f)[11]) for f in await recv_all(host, 1)]
            got_term = [int(unpack(f)[11]) for f in await recv_all(term, 1)]
            return {"to_host": got_host, "to_terminal": got_term}

    assert run_on("memory", main) == model(specs, sent)
