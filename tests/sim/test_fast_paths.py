"""The simulation's fast paths behave exactly as the slow paths they stand in for.

A plain simulated sale never suspends: the host end is served by callbacks
(``host_sim.serve.DirectServer``) instead of a task, a lone request is committed at once when
nothing else is due (``Host.after_commit(last=True)`` + ``VirtualEventLoop.nothing_due``), and the
terminal's ``recv`` runs the link and host callbacks queued next instead of waiting for them
(``posfault.faults.direct._pump``). Each test here runs the same script twice — fast paths on, and
off (the host served by a task as over any other channel, commits scheduled, every wait a future
and a timer) — and requires the same trace, verdict, journal and ledger: faults, power cuts at
every step, host crashes and slow issuers included.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from host_sim import Host, HostConfig, Ledger, seed
from host_sim.serve import DirectServer
from iso8583 import Message
from iso8583.transactions import format_amount, request_base
from iso8583.wire import Wire
from posfault import _world
from posfault.clock import VirtualEventLoop, new_virtual_loop
from posfault.faults import direct
from posfault.faults.direct import direct_pipe
from posfault.simulation import Simulation


def _serve_with_a_task(self: _world.World, channel: Any) -> Callable[[], None]:
    """The slow path: what Simulation.connect did before DirectServer (a serving task per connection)."""
    loop = asyncio.get_running_loop()
    task = loop.create_task(self.serve(channel))
    self.sim._host_task(task)
    return loop.start_later(task)   # type: ignore[attr-defined]


@pytest.fixture
def slow(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    def turn_off() -> None:
        monkeypatch.setattr(_world.World, "serve_direct", _serve_with_a_task)
        monkeypatch.setattr(direct, "_pump_safe", lambda callback: False)
        monkeypatch.setattr(VirtualEventLoop, "nothing_due", lambda self: False)
        monkeypatch.setattr(VirtualEventLoop, "_idle_now", lambda self: False)
    return turn_off


def _digest(sim: Simulation) -> dict[str, Any]:
    return {"events": json.dumps(sim.events(), sort_keys=True), "verdict": sim.verdict().to_dict(),
            "attempts": [repr(a) for a in sim.attempts()], "ledger": [repr(r) for r in sim.ledger_records()],
            "receipts": [repr(r) for r in sim.terminal.receipts], "pcap": sim.pcap()}


CARDS = ("chip-ok", "mag-ok", "ctls-ok")


def _sales(sim: Simulation, n: int = 4) -> None:
    for i in range(n):
        sim.terminal.sale(f"{i + 1}.{i:02d}", card=CARDS[i % 3])


def _with_faults(*rules: dict[str, Any]) -> Callable[[Simulation], None]:
    def script(sim: Simulation) -> None:
        for rule in rules:
            sim.faults.add(rule)
        _sales(sim)
    return script


def _power_cut(step: str) -> Callable[[Simulation], None]:
    def script(sim: Simulation) -> None:
        sim.terminal.sale("10.00")
        sim.power_cycle("terminal", at=step)
        _sales(sim, 3)
    return script


def _host_crash(sim: Simulation) -> None:
    _sales(sim, 2)
    sim.host.crash(down_for=20.0)
    _sales(sim, 3)


def _crash_while_a_request_is_in(sim: Simulation) -> None:
    def crash() -> None:   # what sim.host.crash() does, from inside the running loop
        sim.emit({"actor": "sim", "target": "host", "kind": "crash", "detail": "host crashed"})
        sim._host_down = True
        sim.loop.create_task(sim._world.crash_host())
        sim.loop.call_later(5.0, sim.host.restart)

    sim.faults.delay(2.0, direction="to_terminal", mti="0210", nth=1)
    sim.loop.call_later(16.0, crash)   # the first sale's answer is on its way
    _sales(sim, 3)


SCRIPTS: dict[str, tuple[dict[str, Any], Callable[[Simulation], None]]] = {
    "plain sales": ({}, _sales),
    "unionpay with MACs": ({"dialect": "unionpay_pos", "mac": True}, _sales),
    "drop the answer": ({"terminal_profile": "no_reversal_on_timeout"},
                        _with_faults({"action": "drop", "direction": "to_terminal", "mti": "0210", "nth": 2})),
    "delay the answer past the timeout": ({}, _with_faults(
        {"action": "delay", "seconds": 61.0, "direction": "to_terminal", "mti": "0210", "nth": 1})),
    "delay a request": ({}, _with_faults({"action": "delay", "seconds": 3.0, "direction": "to_host", "nth": 2})),
    "duplicate the request": ({}, _with_faults({"action": "duplicate", "direction": "to_host", "mti": "0200"})),
    "corrupt the answer": ({}, _with_faults({"action": "corrupt", "direction": "to_terminal", "nth": 1})),
    "truncate the request": ({}, _with_faults({"action": "truncate", "direction": "to_host", "nth": 2})),
    "fragment the answer": ({}, _with_faults({"action": "fragment", "pieces": 3, "direction": "to_terminal"})),
    "reset the connection": ({}, _with_faults({"action": "reset", "direction": "to_terminal", "nth": 1})),
    "host crash": ({}, _host_crash),
    "host crash with an answer in flight": ({}, _crash_while_a_request_is_in),
    "slow issuer": ({"host": {"issuer_slow": True, "issuer_slow_delay": 40.0}}, _sales),
    "answer lost after commit": ({"host": {"lose_response_after_commit": True}}, _sales),
    **{f"power cut {step}": ({}, _power_cut(step))
       for step in ("before-send", "after-send", "after-response", "before-print", "after-print")},
}


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_the_fast_paths_change_nothing(name: str, slow: Callable[[], None]) -> None:
    options, script = SCRIPTS[name]

    tasks = []

    def run() -> dict[str, Any]:
        with Simulation(seed=11, **options) as sim:
            script(sim)
            sim.run_until_quiet()
            tasks.append(len(sim._host_tasks))
            return _digest(sim)

    fast = run()
    slow()
    assert run() == fast
    assert tasks[1] > tasks[0], "the slow run served the host with tasks"


def test_a_plain_sale_never_suspends() -> None:
    """No loop iteration at all (the facade runs the sale's coroutine itself, and nothing is left
    to run after it), no timer armed, no task serving the host."""
    with Simulation(seed=2) as sim:
        sim.terminal.sale("1.00")   # (keys, first connection)
        loop = sim.loop
        iterations = 0
        run_once = loop._run_once

        def counting() -> None:
            nonlocal iterations
            iterations += 1
            run_once()

        loop._run_once = counting   # type: ignore[method-assign]
        scheduled = len(loop._scheduled)
        for i in range(5):
            assert sim.terminal.sale(f"2.0{i}", card=CARDS[i % 3]).outcome == "approved"
        assert iterations == 0
        assert len(loop._scheduled) == scheduled   # no response timer left behind, none armed
        assert sim._host_tasks == []
        assert len(sim._links) <= 1                # finished connections are let go at once
        sim.run_until_quiet()
        assert sim.verdict().ok


def test_faults_still_bite_on_the_fast_path() -> None:
    with Simulation(seed=7, terminal_profile="no_reversal_on_timeout") as sim:
        sim.terminal.sale("1.00")
        sim.faults.drop(direction="to_terminal", mti="0210", nth=1)
        assert sim.terminal.sale("100.00").outcome == "failed"
        assert sim.terminal.sale("2.00").outcome == "approved"
        sim.run_until_quiet()
        assert sim.verdict().anomaly_kinds == ["debited-no-receipt"]


# -- the host side on its own ------------------------------------------------------------------------
def _sale(stan: int, amount: int) -> Message:
    mti, fields = request_base("sale", "iso87", batch="000001")   # type: ignore[arg-type]
    fields.update({2: "6217000000000022", 4: format_amount(amount), 11: f"{stan:06d}", 14: "2812",
                   22: "021", 41: "10000001", 42: "100000000000001", 49: "156",
                   7: f"1123{stan:06d}", 12: f"{stan:06d}", 13: "1123"})
    return Message(mti, fields)


def _host_and_answers(concurrent: int) -> tuple[Host, list[str]]:
    loop = new_virtual_loop()
    ledger = Ledger.open(":memory:", synchronous="OFF")
    seed(ledger)
    host = Host(ledger, "iso87ascii", HostConfig())
    wire = Wire("iso87ascii")

    async def go() -> list[str]:
        ends = []
        for _ in range(concurrent):
            terminal, host_end, link = direct_pipe(wire=wire, header=wire.prefix)
            link.on_first_input = DirectServer(host, host_end).start
            ends.append(terminal)
        for i, terminal in enumerate(ends):   # requests arriving together, on every connection
            terminal.send_nowait(wire.pack(_sale(i + 1, 100 + i)))
        answers = [wire.unpack(await terminal.recv(timeout=5.0))[0][39] for terminal in ends]
        for terminal in ends:
            await terminal.close()
        return answers

    try:
        return host, loop.run_until_complete(go())
    finally:
        loop.close()
        ledger.close()


def test_requests_arriving_together_still_share_one_commit() -> None:
    host, answers = _host_and_answers(4)
    assert answers == ["00"] * 4
    assert host.stats["commits"] == 1


def test_a_lone_request_is_committed_at_once() -> None:
    host, answers = _host_and_answers(1)
    assert answers == ["00"]
    assert host.stats["commits"] == 1


# -- the facade's run of a coroutine without a task -------------------------------------------------
def _order_of_a_run(loop: VirtualEventLoop) -> tuple[list[str], Any]:
    """What happens, in order, around a coroutine that hands work over, suspends on futures (one
    completed after the current callback, one by a timer), is woken inline, and returns."""
    order: list[str] = []

    async def body() -> str:
        running = asyncio.get_running_loop()
        running.call_soon(order.append, "ready callback")
        running.call_after_current(order.append, "after the first step")
        waiter = running.create_future()
        running.call_after_current(waiter.set_result, "handed back")
        order.append("first step")
        order.append(await waiter)
        await asyncio.sleep(0)
        order.append("after a turn")
        await asyncio.sleep(2.0)
        running.call_later(0.0, order.append, "timer due now")
        order.append(f"t={running.time()}")
        return "done"

    return order, loop.run_directly(body())


def test_a_run_without_a_task_keeps_the_order_of_a_run_with_one(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = []
    for fast in (True, False):
        if not fast:
            monkeypatch.setattr(VirtualEventLoop, "_idle_now", lambda self: False)
        loop = new_virtual_loop()
        try:
            runs.append(_order_of_a_run(loop))
        finally:
            loop.close()
    direct_run, task_run = runs
    assert direct_run == task_run
    assert direct_run[1] == "done" and direct_run[0][:2] == ["first step", "after the first step"]


def test_a_run_without_a_task_raises_what_the_coroutine_raised() -> None:
    loop = new_virtual_loop()

    async def fails() -> None:
        raise KeyError("no such card")

    async def fails_later() -> None:
        await asyncio.sleep(1.0)
        raise KeyError("later")

    try:
        with pytest.raises(KeyError, match="no such card"):
            loop.run_directly(fails())
        with pytest.raises(KeyError, match="later"):
            loop.run_directly(fails_later())
        assert loop.time() == 1.0 and not asyncio.all_tasks(loop)
    finally:
        loop.close()
