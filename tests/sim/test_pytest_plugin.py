"""The pytest plugin as a QA suite uses it: marker-configured fixtures, strategies, assert_money_right."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from posfault.pytest_plugin import (  # the fixtures, as an installed plugin would provide them
    assert_money_right,
    faults,  # noqa: F401
    host,  # noqa: F401
    schedules,
    simulation,  # noqa: F401
    terminal,  # noqa: F401
)
from posfault.simulation import run_scenario


@pytest.mark.posfault(dialect="unionpay_pos", terminal_profile="correct", seed=7)
def test_fixtures_share_one_configured_simulation(simulation, faults, terminal, host) -> None:  # noqa: F811
    assert simulation.dialect == "unionpay_pos" and simulation.seed == 7
    assert terminal is simulation.terminal and host is simulation.host and faults is simulation.faults
    faults.drop(direction="to_terminal", mti="0210", nth=1)
    assert terminal.sale("100.00").outcome == "failed"
    simulation.run_until_quiet()
    assert_money_right(simulation)


@pytest.mark.posfault(terminal_profile="no_reversal_on_timeout")
def test_assert_money_right_fails_with_the_verdict(simulation, faults, terminal) -> None:  # noqa: F811
    faults.drop(direction="to_terminal", mti="0210", nth=1)
    terminal.sale("100.00")
    simulation.run_until_quiet()
    with pytest.raises(pytest.fail.Exception, match="debited-no-receipt"):
        assert_money_right(simulation)


@settings(max_examples=12)
@given(schedules(terminal_profile="correct", max_faults=2, max_purchases=2))
def test_correct_terminal_never_loses_money_under_drawn_schedules(schedule) -> None:
    verdict = run_scenario(schedule).verdict
    assert verdict.ok, schedule.to_toml() + "\n" + verdict.summary()
