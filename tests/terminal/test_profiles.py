"""One test per firmware profile: the faulty behaviour it names, next to what `correct` does.

Each test asserts money (the in-test issuer's net debit) and what the terminal showed/printed,
i.e. the incident the profile reproduces, not just the messages.
"""

from __future__ import annotations

import asyncio

import pytest

from posfault.clock import run_virtual
from terminal_sim import Journal, PowerCut, load_cards, load_profile, shipped_profiles
from terminal_sim.errors import TerminalError

from .support import FakeHost, FakeLink, make_terminal

CARD = load_cards()["chip-ok"]


def drop_sale_responses(count: int = 1):
    seen = {"n": 0}

    def fault(msg, n):
        if msg.mti == "0200" and seen["n"] < count:
            seen["n"] += 1
            return "drop"
        return None
    return fault


async def cut_then_power_up(host: FakeHost, profile: str, step: str, amount: int = 4200):
    journal = Journal.open(":memory:")

    def hook(name: str, attempt: int) -> None:
        if name == step:
            raise PowerCut(name, attempt)

    term = make_terminal(host, journal, profile=profile, on_step=hook)
    with pytest.raises(PowerCut):
        await term.sale(amount, card=CARD)
    await asyncio.sleep(5)  # the power is off for a while; whatever was on the wire arrives
    fresh = journal.reopen()
    term2 = make_terminal(host, fresh, profile=profile, printer=term.printer)
    await term2.power_up()
    return term2


def test_every_shipped_profile_loads_and_only_correct_is_correct() -> None:
    names = shipped_profiles()
    assert {"correct", "reversal_not_persisted", "no_reversal_on_timeout", "late_response_accepted",
            "offline_not_uploaded", "retransmit_new_stan", "print_before_commit"} <= set(names)
    for name in names:
        assert load_profile(name).is_correct == (name == "correct")


def test_unknown_switch_is_named(tmp_path) -> None:
    bad = tmp_path / "mine.toml"
    bad.write_text('base = "correct"\nreverse_on_failur = false\n')
    with pytest.raises(TerminalError, match="unknown switch 'reverse_on_failur'"):
        load_profile(str(bad))


def test_user_profile_overrides_a_base(tmp_path) -> None:
    mine = tmp_path / "mine.toml"
    mine.write_text('base = "late_response_accepted"\nlate_response_grace = 5\n')
    profile = load_profile(str(mine))
    assert profile.late_response_grace == 5.0 and profile.name == "mine"


@pytest.mark.parametrize(("profile", "net", "reversal"), [
    ("correct", 0, "acked"),
    ("reversal_not_persisted", 4200, "none"),
])
def test_power_cut_after_send(profile: str, net: int, reversal: str) -> None:
    """reversal_not_persisted: the power cut forgets the reversal; debited, no receipt."""
    host = FakeHost(FakeLink())

    async def main() -> None:
        term = await cut_then_power_up(host, profile, "after-send")
        (rec,) = term.journal.attempts()
        assert rec.outcome == "failed" and not rec.receipt_printed
        assert rec.reversal == reversal
        assert host.net() == net

    run_virtual(main())


@pytest.mark.parametrize(("profile", "net", "reversal"), [
    ("correct", 0, "acked"),
    ("no_reversal_on_timeout", 4200, "dropped"),
])
def test_timeout(profile: str, net: int, reversal: str) -> None:
    """no_reversal_on_timeout: the issuer's debit stands while the terminal showed failure."""
    host = FakeHost(FakeLink(), fault=drop_sale_responses())

    async def main() -> None:
        term = make_terminal(host, profile=profile)
        result = await term.sale(4200, card=CARD)
        assert result.outcome == "failed"
        (rec,) = term.journal.attempts()
        assert rec.reversal == reversal and not rec.receipt_printed
        assert host.net() == net

    run_virtual(main())


@pytest.mark.parametrize(("profile", "outcome", "printed"), [
    ("correct", "failed", False),
    ("late_response_accepted", "approved", True),
])
def test_late_response(profile: str, outcome: str, printed: bool) -> None:
    """late_response_accepted: a late 0210 is printed while the reversal undoes the debit."""
    host = FakeHost(FakeLink(), fault=lambda m, n: ("delay", 65.0) if m.mti == "0200" else None)

    async def main() -> None:
        term = make_terminal(host, profile=profile, response_timeout=60.0)
        result = await term.sale(4200, card=CARD)
        assert result.outcome == outcome
        (rec,) = term.journal.attempts()
        assert rec.receipt_printed == printed
        assert rec.reversal == "acked"
        assert host.net() == 0  # in both cases the debit is reversed; only the faulty one printed

    run_virtual(main())


@pytest.mark.parametrize(("profile", "net", "advice"), [
    ("correct", 1500, "acked"),
    ("offline_not_uploaded", 0, "dropped"),
])
def test_offline_approvals_at_settlement(profile: str, net: int, advice: str) -> None:
    """offline_not_uploaded: the receipt says approved, the cardholder is never charged."""
    host = FakeHost(FakeLink())

    async def main() -> None:
        term = make_terminal(host, profile=profile, floor_limit=2000)
        assert (await term.sale(1500, card=CARD)).approved
        settled = await term.settle()
        assert settled.ok
        (rec,) = term.journal.attempts()
        assert rec.receipt_printed and rec.mode == "offline"
        assert rec.advice == advice
        assert host.net() == net

    run_virtual(main())


@pytest.mark.parametrize(("profile", "stans", "net"), [
    ("correct", 1, 0),
    ("retransmit_new_stan", 2, 8400),
])
def test_lost_response_retransmission(profile: str, stans: int, net: int) -> None:
    """retransmit_new_stan: a second debit under a new STAN, the first never reversed."""
    host = FakeHost(FakeLink(), fault=drop_sale_responses())

    async def main() -> None:
        term = make_terminal(host, profile=profile)
        result = await term.sale(4200, card=CARD)
        (rec,) = term.journal.attempts()
        assert len(rec.stans) == stans and len(set(rec.stans)) == stans
        assert host.net() == net
        if profile == "retransmit_new_stan":
            assert result.approved and rec.receipt_printed  # one receipt, two debits
        else:
            assert result.outcome == "failed"

    run_virtual(main())


@pytest.mark.parametrize(("profile", "net", "outcome"), [
    ("correct", 4200, "approved"),
    ("print_before_commit", 0, "failed"),
])
def test_power_cut_after_print(profile: str, net: int, outcome: str) -> None:
    """print_before_commit: approval printed, power lost before commit, recovery reverses it."""
    host = FakeHost(FakeLink())

    async def main() -> None:
        term = await cut_then_power_up(host, profile, "after-print")
        (rec,) = term.journal.attempts()
        assert rec.receipt_printed and rec.receipt_outcome == "approved"
        assert rec.outcome == outcome
        assert host.net() == net

    run_virtual(main())


def test_power_cut_before_print_prints_on_power_up() -> None:
    host = FakeHost(FakeLink())

    async def main() -> None:
        term = await cut_then_power_up(host, "correct", "before-print")
        (rec,) = term.journal.attempts()
        assert rec.outcome == "approved" and rec.receipt_printed and host.net() == 4200
        assert term.printer.roll[-1].copy == "recovery"

    run_virtual(main())
