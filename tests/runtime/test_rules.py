"""Fault rules as data: TOML files, the Python API, validation errors, round trips, determinism."""

from __future__ import annotations

import asyncio
import pathlib

import pytest

from posfault import faults
from posfault.faults import FaultRuleError, load_rules
from posfault.trace import Trace

from .harness import LINKS, msg, recv_all, run_on

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "faults"


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.toml")), ids=lambda p: p.name)
def test_every_example_rule_file_loads_and_round_trips(path: pathlib.Path) -> None:
    plan = load_rules(path)
    assert plan.rules
    again = faults.FaultPlan.from_dicts(plan.to_dicts(), seed=plan.seed)
    assert again.rules == plan.rules


def test_toml_and_python_api_build_the_same_rule() -> None:
    plan = load_rules(FIXTURES / "lost_approval.toml")
    assert plan.seed == 1
    assert plan.rules == [faults.drop(direction="to_terminal", mti="0210", nth=1, name="lose first 0210")]


def test_direction_aliases() -> None:
    assert faults.drop(direction="response").match.direction == "to_terminal"
    assert faults.drop(direction="request").match.direction == "to_host"
    assert faults.drop(direction="both").match.direction is None


@pytest.mark.parametrize(("text", "message"), [
    ('[[rule]]\naction = "explode"', "unknown action 'explode'"),
    ('[[rule]]\ndirection = "to_host"', "missing 'action'"),
    ('[[rule]]\naction = "delay"\nsecnds = 3', "unknown key(s) ['secnds']"),
    ('[[rule]]\naction = "drop"\nmti = "02000"', "MTI pattern"),
    ('[[rule]]\naction = "drop"\nnth = 0', "nth must be positive"),
    ('[[rule]]\naction = "drop"\nprobability = 1.5', "probability"),
    ('[[rule]]\naction = "drop"\ndirection = "sideways"', "direction must be one of"),
    ('[[rule]]\naction = "drop"\nafter = 10\nbefore = 5', "empty time window"),
    ('[[rule]]\nname = "x"\naction = "blackhole"\nduration = 0', "rule 1 ('x'): blackhole duration"),
    ("bogus = 1", "unknown top-level key"),
    ("[[rule]\n", "invalid TOML"),
])
def test_bad_rules_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(FaultRuleError) as info:
        load_rules(text)
    assert message in str(info.value)


def test_missing_file_is_clear(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FaultRuleError, match="not found"):
        load_rules(tmp_path / "nope.toml")


def test_python_api_rejects_unknown_match_keyword() -> None:
    with pytest.raises(FaultRuleError, match="unknown match keyword"):
        faults.drop(direction="to_host", mtii="0200")


def _traced_run(seed: int) -> str:
    plan = load_rules(FIXTURES / "flaky_network.toml", seed=seed)
    trace = Trace()

    async def main():
        async with LINKS["memory"](plan, trace) as (term, host, _):
            for i in range(300):
                await term.send(msg("0200", i, f2="4761739001010010"))
                await asyncio.sleep(1.5)
                for frame in await recv_all(host, 0.01):
                    await host.send(frame.replace(b"0200", b"0210", 1))
                await recv_all(term, 0.01)

    run_on("memory", main)
    from .harness import TEXT_WIRE
    trace.wire = TEXT_WIRE
    return "\n".join(trace.jsonl_lines())


def test_same_seed_gives_byte_identical_trace_and_pans_are_masked() -> None:
    a, b = _traced_run(7), _traced_run(7)
    assert a == b
    assert a != _traced_run(8)
    assert "4761739001010010" not in a and "476173******0010" in a
    assert '"action":"blackhole"' in a and '"action":"drop"' in a
