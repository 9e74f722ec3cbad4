"""The simulated devices' flash: in-memory SQLite owned by the simulation (default) or files."""

from __future__ import annotations

import sqlite3

import pytest

from posfault._world import memory_flash_supported
from posfault.simulation import Simulation, SimulationError

needs_memory_flash = pytest.mark.skipif(not memory_flash_supported(),
                                        reason="this SQLite cannot share in-memory databases by name")


def _story(storage: str) -> tuple[list[str], dict]:
    """Power cut after send, a host crash and restart, sales around them, settlement and payouts."""
    with Simulation(seed=5, terminal_profile="correct", storage=storage) as sim:
        assert sim.storage == storage
        sim.faults.drop(direction="to_terminal", mti="0210", nth=1)
        sim.power_cycle("terminal", at="after-send", off_for=30.0)
        sim.terminal.sale("100.00")
        sim.terminal.sale("20.00", card="mag-ok")
        sim.host.crash(down_for=60.0)
        sim.terminal.sale("30.00", card="ctls-ok")
        sim.advance(90.0)
        sim.terminal.sale("40.00")
        sim.run_until_quiet()
        return sim.trace.jsonl_lines(), sim.verdict().to_dict()


@needs_memory_flash
def test_memory_and_file_storage_give_the_same_trace_and_verdict() -> None:
    memory, files = _story("memory"), _story("files")
    assert memory[1] == files[1]
    assert memory[0] == files[0]
    assert memory[1]["ok"], memory[1]


@needs_memory_flash
def test_memory_flash_keeps_commits_and_loses_what_was_not_committed() -> None:
    with Simulation(seed=1) as sim:
        assert sim.storage == "memory" and sim.workdir is None
        assert sim.terminal.sale("10.00").outcome == "approved"
        conn = sim.host.ledger.conn
        conn.execute("BEGIN")
        conn.execute("CREATE TABLE scratch(x)")     # in flight when the host dies
        sim.host.crash()
        sim.host.restart()
        tables = {r[0] for r in sim.host.ledger.conn.execute("SELECT name FROM sqlite_master")}
        assert "scratch" not in tables
        sim.power_cycle("terminal", off_for=5.0)
        assert [a.outcome for a in sim.terminal.journal.attempts()] == ["approved"]
        assert sim.terminal.sale("11.00").outcome == "approved"
        sim.run_until_quiet()
        verdict = sim.verdict()
    assert verdict.ok and [t.cardholder_debit for t in verdict.truths] == [1000, 1100]


@needs_memory_flash
def test_each_simulation_has_its_own_flash_freed_at_close() -> None:
    with Simulation(seed=1) as a, Simulation(seed=1) as b:
        a.terminal.sale("10.00")
        assert len(a.terminal.journal.attempts()) == 1 and not b.terminal.journal.attempts()
        path = a._world.journal_path
    probe = sqlite3.connect(path, uri=True)
    try:
        assert probe.execute("SELECT name FROM sqlite_master").fetchall() == []
    finally:
        probe.close()


def test_unknown_storage_is_a_clear_error() -> None:
    with pytest.raises(SimulationError, match="storage must be one of"):
        Simulation(storage="tape")
