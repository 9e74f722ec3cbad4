"""The Python API for scripting scenarios, determinism, power cuts, host crashes, reports and pcap."""

from __future__ import annotations

import json
import pathlib
import struct

import pytest

from posfault.campaign import CampaignConfig, generate_schedule
from posfault.simulation import Simulation, SimulationError, run_scenario


def test_the_readme_example_finds_debited_no_receipt() -> None:
    with Simulation(seed=7, dialect="unionpay_pos", terminal_profile="no_reversal_on_timeout") as sim:
        sim.faults.drop(direction="to_terminal", mti="0210", nth=1)
        result = sim.terminal.sale("100.00", card="chip-ok")
        assert result.outcome == "failed" and result.receipt is None
        sim.run_until_quiet()
        verdict = sim.verdict()
    assert verdict.anomaly_kinds == ["debited-no-receipt"]
    assert verdict.truth(1).cardholder_debit == 10000


def test_same_faults_against_the_correct_profile_keep_the_money_right() -> None:
    with Simulation(seed=7, dialect="unionpay_pos", terminal_profile="correct") as sim:
        sim.faults.drop(direction="to_terminal", mti="0210", nth=1)
        assert sim.terminal.sale("100.00").outcome == "failed"
        assert sim.terminal.sale("25.00").outcome == "approved"     # the next customer is served
        sim.run_until_quiet()
        verdict = sim.verdict()
    assert verdict.ok, verdict.summary()
    assert [t.cardholder_debit for t in verdict.truths] == [0, 2500]
    assert verdict.truth(2).merchant_credit == 2500


def _run_json(seed: int) -> tuple[str, dict]:
    schedule = generate_schedule(CampaignConfig(terminal_profile="late_response_accepted"), 50)
    result = run_scenario(schedule, seed=seed)
    return (json.dumps(result.trace, sort_keys=True), result.verdict.to_dict())


def test_same_seed_same_trace_and_verdict() -> None:
    first, second = _run_json(50), _run_json(50)
    assert first[0] == second[0]
    assert first[1] == second[1]
    assert first[1]["anomalies"], "this schedule is a finding: the comparison covers an anomaly too"


def test_power_cut_after_send_with_persisted_reversal_recovers() -> None:
    with Simulation(seed=3, terminal_profile="correct") as sim:
        sim.faults.drop(direction="to_terminal", mti="0210", nth=1)
        sim.power_cycle("terminal", at="after-send", off_for=30.0)
        sim.terminal.sale("100.00")
        kinds = [e["kind"] for e in sim.events() if e["actor"] in ("sim", "terminal")]
        assert "power_cut" in kinds and kinds.index("power_cut") < kinds.index("power_up")
        sim.run_until_quiet()
        verdict = sim.verdict()
    assert verdict.ok, verdict.summary()
    assert verdict.truth(1).cardholder_debit == 0


def test_power_cut_at_an_unknown_step_is_refused() -> None:
    with Simulation() as sim, pytest.raises(SimulationError, match="after-send"):
        sim.power_cycle("terminal", at="mid-air")


def test_host_crash_fails_the_next_sale_and_it_recovers_after_restart() -> None:
    with Simulation(seed=1) as sim:
        sim.host.crash(down_for=90.0)
        assert sim.host.down
        assert sim.terminal.sale("10.00").outcome == "failed"
        sim.advance(120.0)
        assert not sim.host.down
        assert sim.terminal.sale("10.00").outcome == "approved"
        sim.run_until_quiet()
        verdict = sim.verdict()
    assert verdict.ok and [t.cardholder_debit for t in verdict.truths] == [0, 1000]


def test_report_writes_html_mermaid_jsonl_and_a_pcap(tmp_path: pathlib.Path) -> None:
    with Simulation(seed=7, dialect="iso87ascii", terminal_profile="no_reversal_on_timeout") as sim:
        sim.faults.drop(direction="to_terminal", mti="0210", nth=1)
        sim.terminal.sale("100.00", card="visa-chip")   # a PAN whose middle digits are not zeros
        sim.run_until_quiet()
        paths = sim.report(tmp_path, "lost")
    html = paths["html"].read_text(encoding="utf-8")
    assert "debited-no-receipt" in html and "DROP 0210" in html
    assert "sequenceDiagram" in paths["mermaid"].read_text(encoding="utf-8")
    lines = paths["trace"].read_text(encoding="utf-8").splitlines()
    assert all(json.loads(line)["actor"] for line in lines)
    assert "4761739001010010" not in "".join(lines) and "476173******0010" in "".join(lines)
    pcap = paths["pcap"].read_bytes()
    magic, _major, _minor = struct.unpack("<IHH", pcap[:8])
    assert magic == 0xA1B2C3D4 and len(pcap) > 500
    assert b"4761739001010010" not in pcap and b"476173" in pcap   # masked 6+4, still decodable


def test_unknown_card_and_switch_are_clear_errors() -> None:
    with Simulation() as sim, pytest.raises(ValueError, match="unknown card 'gold'"):
        sim.terminal.sale("1.00", card="gold")
    with pytest.raises(ValueError, match="unknown host switch"):
        Simulation(host={"be_nice": True})


def test_a_connection_closed_or_stopped_before_any_frame_still_ends_its_host_side() -> None:
    """The host side of a connection starts serving when the first frame, close or reset reaches
    it; a connection that ends without one still has its serving task finish (nothing left over)."""
    import asyncio

    with Simulation(seed=1) as sim:
        async def main() -> None:
            first = await sim.connect()
            await first.close()
            await sim.connect()
            await sim._links[-1].stop()
            await asyncio.sleep(1)

        sim._run(main())
        assert all(task.done() for task in sim._host_tasks)
        assert sim.terminal.sale("1.00", card="mag-ok").outcome == "approved"


def test_the_terminal_steps_are_hooked_only_while_a_power_cut_is_armed() -> None:
    """Simulation.on_step does nothing at a step without an armed cut, so the terminal gets no hook
    until one is armed, and loses it once the cut has fired (also in the terminal re-created after)."""
    with Simulation(seed=5) as sim:
        assert sim._world.terminal.on_step is None
        sim.power_cycle("terminal", at="after-send")
        assert sim._world.terminal.on_step == sim.on_step
        sim.terminal.sale("1.00")
        assert sim._world.terminal.on_step is None
        assert [e["step"] for e in sim.events() if e.get("kind") == "power_cut"] == ["after-send"]
        sim.run_until_quiet()
        assert sim.verdict().ok
