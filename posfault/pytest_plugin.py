"""pytest plugin (entry point ``posfault``): fixtures and strategies for QA suites.

Installed with posfault, it gives every test suite::

    import pytest
    from hypothesis import given
    from posfault.pytest_plugin import schedules

    @pytest.mark.posfault(dialect="unionpay_pos", terminal_profile="correct", seed=7)
    def test_lost_approval_is_reversed(simulation, faults, terminal):
        faults.drop(direction="to_terminal", mti="0210", nth=1)
        assert terminal.sale("100.00").outcome == "failed"
        simulation.run_until_quiet()
        assert_money_right(simulation)

    @given(schedules(terminal_profile="correct"))
    def test_no_schedule_loses_money(schedule):
        assert run_scenario(schedule).verdict.ok

Fixtures: ``simulation`` (a fresh :class:`~posfault.simulation.Simulation`, closed after the test,
configured by the ``posfault`` marker), ``host``, ``terminal`` and ``faults`` (its parts).
Strategies: :func:`schedules`, :func:`fault_rules`, :func:`workloads`.

This module must stay importable on its own because pytest loads it for every suite in an
environment where posfault is installed; everything heavy is imported inside the fixtures.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .campaign import fault_rules, schedules, workloads

__all__ = ["assert_money_right", "fault_rules", "faults", "host", "schedules", "simulation", "terminal",
           "workloads"]

MARKER = ("posfault(seed=0, dialect='iso87ascii', terminal_profile='correct', host={}, tid=...): "
          "configure the `simulation` fixture")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)


@pytest.fixture
def simulation(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh simulation on the virtual clock; ``@pytest.mark.posfault(...)`` sets its arguments."""
    from .simulation import Simulation

    marker = request.node.get_closest_marker("posfault")
    kwargs: dict[str, Any] = dict(marker.kwargs) if marker else {}
    with Simulation(**kwargs) as sim:
        yield sim


@pytest.fixture
def host(simulation: Any) -> Any:
    """``simulation.host``: crash/restart, merchant fixes, the ledger."""
    return simulation.host


@pytest.fixture
def terminal(simulation: Any) -> Any:
    """``simulation.terminal``: sale/offline_sale/refund/settle/printer/reprint, synchronously."""
    return simulation.terminal


@pytest.fixture
def faults(simulation: Any) -> Any:
    """``simulation.faults``: drop/delay/duplicate/corrupt/truncate/fragment/reset/blackhole rules."""
    return simulation.faults


def assert_money_right(sim: Any) -> None:
    """Fail with the oracle's full verdict (truth table, anomalies, evidence) unless the money is right."""
    verdict = sim.verdict()
    if not verdict.ok:
        pytest.fail("money is not right:\n" + verdict.summary(), pytrace=False)
