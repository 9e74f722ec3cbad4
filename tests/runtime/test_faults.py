"""Each fault action, on the in-memory pipe (virtual time) and on a live loopback TCP proxy."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from iso8583.channels import ChannelClosed, ChannelReset
from posfault import faults
from posfault.trace import Trace

from .harness import LINKS, SCALE, msg, recv_all, run_on, unpack

pytestmark = pytest.mark.network

KINDS = sorted(LINKS)


def stans(frames: list[bytes]) -> list[str]:
    return [unpack(f)[11] for f in frames]


@pytest.mark.parametrize("kind", KINDS)
def test_drop_nth_matching_response(kind: str) -> None:
    plan = faults.FaultPlan([faults.drop(direction="to_terminal", mti="0210", nth=2)])

    async def main():
        async with LINKS[kind](plan) as (term, host, _):
            for i in (1, 2, 3):
                await host.send(msg("0210", i))
            await host.send(msg("0810", 4))
            return stans(await recv_all(term, SCALE[kind] / 2))

    assert run_on(kind, main) == ["000001", "000003", "000004"]
    assert plan.stats()[0] == {"rule": "drop", "matched": 3, "fired": 1}


@pytest.mark.parametrize("kind", KINDS)
def test_delay_lets_later_messages_overtake(kind: str) -> None:
    d = SCALE[kind]
    plan = faults.FaultPlan([faults.delay(d, direction="to_host", nth=1)])

    async def main():
        loop = asyncio.get_running_loop()
        async with LINKS[kind](plan) as (term, host, _):
            start = loop.time()
            await term.send(msg("0200", 1))
            await term.send(msg("0200", 2))
            second = await host.recv(timeout=5 * d)
            first = await host.recv(timeout=5 * d)
            return stans([second, first]), loop.time() - start

    order, elapsed = run_on(kind, main)
    assert order == ["000002", "000001"]
    if kind == "memory":
        assert elapsed == d  # exact on the virtual clock
    else:
        assert d * 0.9 <= elapsed < d * 5


def test_delay_jitter_is_seeded_and_bounded() -> None:
    def arrival_times(seed: int) -> list[float]:
        plan = faults.FaultPlan([faults.delay(10, jitter=3, direction="to_host")], seed=seed)

        async def main():
            loop = asyncio.get_running_loop()
            async with LINKS["memory"](plan) as (term, host, _):
                for i in range(5):
                    await term.send(msg("0200", i))
                return sorted([(await host.recv(timeout=60), loop.time())[1] for _ in range(5)])
        return run_on("memory", main)

    a, b = arrival_times(5), arrival_times(5)
    assert a == b
    assert all(7 <= t <= 13 for t in a) and len(set(a)) > 1
    assert arrival_times(6) != a


@pytest.mark.parametrize("kind", KINDS)
def test_duplicate(kind: str) -> None:
    plan = faults.FaultPlan([faults.duplicate(2, direction="to_host", mti="0200")])

    async def main():
        async with LINKS[kind](plan) as (term, host, _):
            await term.send(msg("0200", 7))
            await term.send(msg("0800", 8))
            return stans(await recv_all(host, SCALE[kind] / 2))

    assert run_on(kind, main) == ["000007", "000007", "000007", "000008"]


@pytest.mark.parametrize("kind", KINDS)
def test_corrupt_flips_exactly_n_bits(kind: str) -> None:
    plan = faults.FaultPlan([faults.corrupt(bits=3, direction="to_host")], seed=3)
    sent = msg("0200", 1, f4="000000010000")

    async def main():
        async with LINKS[kind](plan) as (term, host, _):
            await term.send(sent)
            return await host.recv(timeout=5)

    got = run_on(kind, main)
    assert len(got) == len(sent)
    assert sum(bin(a ^ b).count("1") for a, b in zip(got, sent)) == 3


@pytest.mark.parametrize("kind", KINDS)
def test_corrupt_a_chosen_field(kind: str) -> None:
    plan = faults.FaultPlan([
        faults.corrupt(field=4, direction="to_host", nth=1),
        faults.corrupt(field=39, value="96", direction="to_terminal"),
    ], seed=1)

    async def main():
        async with LINKS[kind](plan) as (term, host, _):
            await term.send(msg("0200", 1, f4="000000010000"))
            request = unpack(await host.recv(timeout=5))
            await host.send(msg("0210", 1, f39="00"))
            response = unpack(await term.recv(timeout=5))
            return request, response

    request, response = run_on(kind, main)
    assert request[4] != "000000010000" and len(request[4]) == 12 and request[4].isdigit()
    assert request[11] == "000001"
    assert response[39] == "96"


@pytest.mark.parametrize("kind", KINDS)
def test_truncate_with_adjusted_length_gives_short_frame(kind: str) -> None:
    plan = faults.FaultPlan([faults.truncate(keep=6, direction="to_host", nth=1)])

    async def main():
        async with LINKS[kind](plan) as (term, host, _):
            await term.send(msg("0200", 1))
            await term.send(msg("0200", 2))
            return await host.recv(timeout=5), await host.recv(timeout=5)

    short, whole = run_on(kind, main)
    assert short == msg("0200", 1)[:6]
    assert whole == msg("0200", 2)


@pytest.mark.parametrize("kind", KINDS)
def test_truncate_keeping_header_desynchronises_stream(kind: str) -> None:
    plan = faults.FaultPlan([faults.truncate(keep=4, adjust_length=False, direction="to_host", nth=1)])
    first, second = msg("0200", 1), msg("0200", 2)

    async def main():
        async with LINKS[kind](plan) as (term, host, _):
            await term.send(first)
            await term.send(second)
            return await host.recv(timeout=5)

    got = run_on(kind, main)
    # the header still announces len(first): the host reads the 4 bytes sent plus the next message
    assert got == (first[:4] + len(second).to_bytes(2, "big") + second)[:len(first)]


@pytest.mark.parametrize("kind", KINDS)
def test_fragment_across_writes_is_reassembled(kind: str) -> None:
    gap = SCALE[kind] / 10
    plan = faults.FaultPlan([faults.fragment(4, gap=gap, direction="to_host", nth=1)])
    trace = Trace()

    async def main():
        async with LINKS[kind](plan, trace) as (term, host, _):
            await term.send(msg("0200", 1))
            await term.send(msg("0200", 2))
            return [await host.recv(timeout=5), await host.recv(timeout=5)]

    assert run_on(kind, main) == [msg("0200", 1), msg("0200", 2)]  # order kept: stream intact
    pieces = [e for e in trace.select(kind="deliver") if e.get("raw")]
    assert len(pieces) == 4
    assert b"".join(e["wire_bytes"] for e in pieces) == len(msg("0200", 1)).to_bytes(2, "big") + msg("0200", 1)


@pytest.mark.parametrize("kind", KINDS)
def test_reset_aborts_both_sides(kind: str) -> None:
    plan = faults.FaultPlan([faults.reset(direction="to_terminal", mti="0210")])
    trace = Trace()

    async def main():
        async with LINKS[kind](plan, trace) as (term, host, _link):
            await term.send(msg("0200", 1))
            await host.recv(timeout=5)
            await host.send(msg("0210", 1))
            with pytest.raises(ChannelReset):
                await term.recv(timeout=5)
            with pytest.raises(ChannelReset):
                await host.recv(timeout=5)

    run_on(kind, main)
    assert trace.select(kind="reset")[0]["detail"] == "fault rule"


@pytest.mark.parametrize("kind", KINDS)
def test_blackhole_swallows_both_directions_for_a_period(kind: str) -> None:
    period = SCALE[kind]
    plan = faults.FaultPlan([faults.blackhole(period, direction="to_host", mti="0200", nth=1)])

    async def main():
        async with LINKS[kind](plan) as (term, host, _):
            await term.send(msg("0200", 1))           # starts the black-hole, lost
            await term.send(msg("0800", 2))           # lost
            await host.send(msg("0810", 3))           # lost the other way too
            quiet = await recv_all(host, period / 4) + await recv_all(term, period / 4)
            await asyncio.sleep(period)
            await term.send(msg("0200", 4))           # after the period: delivered
            return quiet, stans([await host.recv(timeout=5)])

    quiet, after = run_on(kind, main)
    assert quiet == [] and after == ["000004"]


def test_probability_is_seeded_and_roughly_right() -> None:
    def fired(seed: int) -> list[str]:
        plan = faults.FaultPlan([faults.drop(direction="to_host", probability=0.3)], seed=seed)

        async def main():
            async with LINKS["memory"](plan) as (term, host, _):
                for i in range(200):
                    await term.send(msg("0200", i))
                return stans(await recv_all(host, 1))
        return run_on("memory", main)

    a = fired(11)
    assert a == fired(11)
    assert a != fired(12)
    assert 100 < len(a) < 180  # ~140 expected


def test_field_match_subfield_lists_and_time_window() -> None:
    plan = faults.FaultPlan([
        faults.drop(direction="to_host", fields={41: ["10000002", "10000003"]}),
        faults.drop(direction="to_host", mti="08?0", after=5, before=10),
    ])

    async def main():
        loop = asyncio.get_running_loop()
        async with LINKS["memory"](plan) as (term, host, _):
            await term.send(msg("0200", 1, tid="10000001"))
            await term.send(msg("0200", 2, tid="10000002"))
            await term.send(msg("0800", 3))          # t=0: before the window
            await asyncio.sleep(6)
            await term.send(msg("0800", 4))          # t=6: inside, dropped
            await asyncio.sleep(6)
            await term.send(msg("0800", 5))          # t=12: after
            assert loop.time() == 12
            return stans(await recv_all(host, 1))

    assert run_on("memory", main) == ["000001", "000003", "000005"]


def test_undecodable_frames_skip_field_rules_but_byte_rules_apply() -> None:
    plan = faults.FaultPlan([faults.drop(direction="to_host", mti="0200"),
                             faults.duplicate(direction="to_host")])

    async def main():
        async with LINKS["memory"](plan) as (term, host, _):
            await term.send(b"\xff\xfegarbage")
            return await recv_all(host, 1)

    assert run_on("memory", main) == [b"\xff\xfegarbage"] * 2


def test_limit_caps_firing() -> None:
    plan = faults.FaultPlan([faults.drop(direction="to_host", limit=2)])

    async def main():
        async with LINKS["memory"](plan) as (term, host, _):
            for i in range(4):
                await term.send(msg("0200", i))
            return stans(await recv_all(host, 1))

    assert run_on("memory", main) == ["000002", "000003"]


def test_delayed_response_to_closed_terminal_is_undeliverable() -> None:
    plan = faults.FaultPlan([faults.delay(70, direction="to_terminal", mti="0210")])
    trace = Trace()

    async def main():
        async with LINKS["memory"](plan, trace) as (term, host, _link):
            await term.send(msg("0200", 1))
            await host.recv()
            await host.send(msg("0210", 1))
            with pytest.raises(TimeoutError):
                await term.recv(timeout=60)      # the terminal gives up at 60 s and hangs up
            await term.close()
            await asyncio.sleep(20)

    run_on("memory", main)
    lost = trace.select(kind="undeliverable")
    assert len(lost) == 1 and lost[0]["direction"] == "to_terminal"


def test_link_counts_by_action() -> None:
    plan = faults.FaultPlan([faults.drop(direction="to_host", nth=2)])

    async def main():
        async with LINKS["memory"](plan) as (term, host, link):
            for i in range(3):
                await term.send(msg("0200", i))
            await recv_all(host, 1)
            return dict(link.counts)

    assert run_on("memory", main) == {"forward": 2, "drop": 1}


def test_idle_side_is_hung_up_gracefully() -> None:
    trace = Trace()

    async def main():
        loop = asyncio.get_running_loop()
        async with LINKS["memory"](faults.FaultPlan(), trace, idle_timeout=30) as (term, host, _link):
            await term.send(msg("0200", 1))
            await host.recv(timeout=None)
            with pytest.raises(ChannelClosed):
                await term.recv(timeout=None)      # the link hangs up after 30 s of silence
            return loop.time()

    assert run_on("memory", main) == 30.0
    assert trace.select(kind="closed")


def test_corrupt_value_that_does_not_fit_is_reported_not_fatal() -> None:
    from iso8583 import Message, load_spec
    from iso8583.wire import Wire

    wire = Wire(load_spec("iso87ascii"))
    plan = faults.load_rules('[[rule]]\naction = "corrupt"\nfield = 4\nvalue = 96\ndirection = "to_host"\n')
    assert plan.rules[0].action.value == "96"
    trace = Trace()

    async def main(env):
        term, host, link = faults.faulty_pipe(plan, wire=wire, trace=trace)
        sent = wire.pack(Message("0200", {4: "000000010000", 11: "000001"}))
        await term.send(sent)
        got = await host.recv()
        await link.stop()
        return sent, got

    from posfault.clock import run_virtual
    sent, got = run_virtual(main)
    assert got == sent  # "96" is not a 12-digit amount: unchanged, and the trace says why
    assert "not corrupted" in trace.select(kind="deliver")[0]["note"]


@pytest.mark.parametrize("ending", ["terminal_closes", "host_closes", "terminal_resets", "fault_reset"])
def test_direct_link_traces_exactly_like_the_pumped_link(ending: str) -> None:
    """The simulation's task-free link must record the same events, at the same virtual times, as the
    pumped FaultLink the proxy runs: delays that let later messages overtake, duplicates, fragments
    with gaps, drops, corruption, a delivery still pending at close, then the connection's end."""
    def plan() -> faults.FaultPlan:
        rules = [faults.delay(5, direction="to_terminal", mti="0210", nth=1),
                 faults.duplicate(2, direction="to_host", nth=2),
                 faults.fragment(3, gap=0.5, direction="to_terminal", nth=3),
                 faults.drop(direction="to_host", nth=4),
                 faults.corrupt(bits=3, direction="to_host", nth=5),
                 faults.delay(30, direction="to_host", nth=6)]
        if ending == "fault_reset":
            rules.append(faults.reset(direction="to_terminal", nth=5))
        return faults.FaultPlan(rules, seed=3)

    def run(kind: str) -> list[tuple]:
        trace = Trace()

        async def main():
            async with LINKS[kind](plan(), trace) as (term, host, _):
                for i in range(1, 7):
                    with contextlib.suppress(ChannelClosed):   # after a reset, sends fail alike
                        await term.send(msg("0200", i))
                        await asyncio.sleep(0.25)
                        await host.send(msg("0210", i))
                        await asyncio.sleep(0.25)
                await asyncio.sleep(2)
                if ending == "terminal_closes":
                    await term.close()
                elif ending == "host_closes":
                    await host.close()
                elif ending == "terminal_resets":
                    await term.reset()
                await asyncio.sleep(60)

        run_on(kind, main)
        keys = ("kind", "direction", "t", "size", "action", "rules", "note", "detail", "raw")
        return [tuple(str(e.get(k)) for k in keys) for e in trace.events]

    direct, pumped = run("memory"), run("pumped")
    assert direct == pumped
    assert {e[0] for e in direct} >= {"recv", "deliver"}


@pytest.mark.parametrize("misbehaviour", ["raw_halves", "bad_header", "too_large"])
def test_direct_link_handles_a_misbehaving_side_like_the_pumped_link(misbehaviour: str) -> None:
    """A side writing below the frame level — a frame in two raw halves, a header announcing more
    than the stream will ever carry, a frame over the read limit — is handled (reassembled, or the
    stream aborted as a reset) exactly as by the pumped link."""
    def run(kind: str) -> tuple[list[tuple], list[str]]:
        trace = Trace()
        got: list[str] = []

        async def main():
            async with LINKS[kind](faults.FaultPlan(), trace, max_frame=64) as (term, host, _):
                frame = msg("0200", 1)
                wrapped = term.wrap(frame)
                with contextlib.suppress(ChannelClosed):
                    if misbehaviour == "raw_halves":
                        await term.send_raw(wrapped[:7])
                        await asyncio.sleep(1)
                        await term.send_raw(wrapped[7:])
                    elif misbehaviour == "bad_header":
                        await term.send_raw(b"\xff\xff" + frame)
                    else:
                        await term.send(frame + b";99=" + b"x" * 80)
                    await asyncio.sleep(1)
                    await term.send(msg("0200", 2))
                for _ in range(2):
                    try:
                        got.append(unpack(await host.recv(timeout=5))[11])
                    except (TimeoutError, ChannelClosed) as exc:
                        got.append(type(exc).__name__)
                await asyncio.sleep(1)

        run_on(kind, main)
        keys = ("kind", "direction", "t", "size", "action", "detail", "raw")
        return [tuple(str(e.get(k)) for k in keys) for e in trace.events], got

    direct, pumped = run("memory"), run("pumped")
    assert direct == pumped
    if misbehaviour == "raw_halves":
        assert direct[1] == ["000001", "000002"]
    else:
        assert "ChannelReset" in direct[1] or "ChannelClosed" in direct[1]


def test_lazily_recorded_events_read_exactly_like_recorded_ones() -> None:
    """Trace.record_lazy keeps the build function and its arguments; whoever reads the events gets
    the same dicts, times and sequence numbers as if each had been recorded as it happened."""
    from posfault.clock import VirtualClock, new_virtual_loop

    def build(kind: str, size: int) -> dict:
        return {"actor": "net", "kind": kind, "size": size}

    loop = new_virtual_loop()
    eager, lazy = Trace(loop=loop, clock=VirtualClock(loop)), Trace(loop=loop, clock=VirtualClock(loop))
    for step in range(3):
        loop.advance(1.5)
        for trace in (eager, lazy):
            trace.record_owned({"actor": "terminal", "kind": "send", "step": step})
        eager.record_owned(build("recv", step))
        lazy.record_lazy(build, "recv", step)
        assert len(lazy) == len(eager)
    assert lazy.events == eager.events
    assert [e["t"] for e in lazy.events] == [1.5, 1.5, 3.0, 3.0, 4.5, 4.5]
    assert lazy.jsonl_lines() == eager.jsonl_lines()
    seen: list[dict] = []
    lazy.subscribe(seen.append)            # a live listener gets every event as it happens
    lazy.record_lazy(build, "deliver", 9)
    assert len(seen) == 1 and seen[0]["at"]   # listeners get the business time filled in
    assert {k: v for k, v in seen[0].items() if k != "at"} == lazy.events[-1]
    loop.close()


def test_a_lazily_recorded_pair_reads_like_two_recorded_events() -> None:
    """Trace.record_lazy_pair(first, second, *args) is record_lazy(first, *args) then
    record_lazy(second, *args): same dicts, times and sequence numbers (and with a live listener)."""
    from posfault.clock import VirtualClock, new_virtual_loop

    def recv(kind: str, size: int) -> dict:
        return {"actor": "net", "kind": kind, "size": size}

    def deliver(kind: str, size: int) -> dict:
        return {"actor": "net", "kind": kind + "-delivered", "size": size}

    loop = new_virtual_loop()
    one, two = Trace(loop=loop, clock=VirtualClock(loop)), Trace(loop=loop, clock=VirtualClock(loop))
    for trace in (one, two):
        trace.record_lazy(recv, "first", 1)   # deliver is new to the trace in the pair below
    for step in range(2):
        loop.advance(0.5)
        one.record_lazy(recv, "frame", step)
        one.record_lazy(deliver, "frame", step)
        two.record_lazy_pair(recv, deliver, "frame", step)
    assert two.events == one.events and two.jsonl_lines() == one.jsonl_lines()
    heard: list[list[dict]] = [[], []]
    for trace, seen in zip((one, two), heard):
        trace.subscribe(seen.append)
    one.record_lazy(recv, "live", 3)
    one.record_lazy(deliver, "live", 3)
    two.record_lazy_pair(recv, deliver, "live", 3)
    assert heard[0] == heard[1] and len(heard[0]) == 2 and two.events == one.events
    loop.close()


def test_what_a_trace_keeps_per_sale_is_left_alone_by_the_garbage_collector() -> None:
    """Lazily recorded events and the connections a link opens are kept as plain tuples until read,
    so the collector untracks them at its first passes (a long run's trace then adds nothing to every
    later full collection); read back, they are what was recorded."""
    import gc

    from posfault.clock import VirtualClock, new_virtual_loop
    from posfault.trace import Connection

    def build(kind: str, size: int) -> dict:
        return {"actor": "net", "kind": kind, "size": size}

    loop = new_virtual_loop()
    trace = Trace(loop=loop, clock=VirtualClock(loop))
    loop.advance(2.0)
    assert trace.connection_id("conn1") == 0
    trace.record_lazy(build, "recv", 7)
    assert trace.open_connection("conn2") == Connection(1, "conn2", 2.0)
    gc.collect()
    gc.collect()   # (a tuple is untracked once what it holds is: the outer one may need a second pass)
    assert not gc.is_tracked(trace._events[0]) and not gc.is_tracked(trace._connections[0])
    assert trace.connections == [Connection(0, "conn1", 2.0), Connection(1, "conn2", 2.0)]
    assert all(conn.__class__ is Connection for conn in trace.connections)
    assert trace.events == [{"actor": "net", "kind": "recv", "size": 7, "t": 2.0, "seq": 0}]
    loop.close()
