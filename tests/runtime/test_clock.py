"""Virtual time: the simulation's foundation. A 60 s timeout must cost microseconds and be exact."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest

from posfault.clock import DEFAULT_EPOCH, SimulationDeadlock, VirtualEventLoop, clock_for, run_virtual


def test_sixty_second_timeout_costs_no_wall_time() -> None:
    async def main(env):
        started = env.now()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(60):
                await asyncio.Event().wait()
        return env.now() - started

    wall = time.perf_counter()
    assert run_virtual(main) == 60.0
    assert time.perf_counter() - wall < 0.5


def test_business_clock_follows_virtual_time() -> None:
    async def main(env):
        before = env.clock()
        await asyncio.sleep(3600)
        return before, env.clock()

    before, after = run_virtual(main)
    assert before == DEFAULT_EPOCH
    assert after - before == dt.timedelta(hours=1)


def test_timers_fire_in_time_order_at_exact_instants() -> None:
    async def main(env):
        seen: list[tuple[str, float]] = []

        async def sleeper(name: str, delay: float) -> None:
            await asyncio.sleep(delay)
            seen.append((name, env.now()))

        await asyncio.gather(sleeper("c", 30), sleeper("a", 0.5), sleeper("b", 7.25))
        return seen

    assert run_virtual(main) == [("a", 0.5), ("b", 7.25), ("c", 30.0)]


def test_same_seed_same_interleaving() -> None:
    async def main(env):
        log: list[tuple[int, float]] = []

        async def worker(i: int) -> None:
            for _ in range(20):
                await asyncio.sleep(env.rng.random())
                log.append((i, round(env.now(), 9)))

        await asyncio.gather(*(worker(i) for i in range(5)))
        return log

    assert run_virtual(main, seed=42) == run_virtual(main, seed=42)
    assert run_virtual(main, seed=42) != run_virtual(main, seed=43)


def test_deadlock_is_reported_with_the_waiting_task() -> None:
    async def stuck() -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        await asyncio.create_task(stuck(), name="waits-forever")

    with pytest.raises(SimulationDeadlock, match="waits-forever"):
        run_virtual(main())


def test_manual_advance_and_clock_for() -> None:
    loop = VirtualEventLoop()
    try:
        fired: list[float] = []
        loop.call_later(10, lambda: fired.append(loop.time()))
        loop.advance(10)
        loop.run_until_complete(asyncio.sleep(0))
        assert fired == [10.0]
        clock = clock_for(loop)
        assert clock() == DEFAULT_EPOCH + dt.timedelta(seconds=10)
        with pytest.raises(ValueError):
            loop.advance(-1)
    finally:
        loop.close()


def test_clock_for_real_loop_is_wall_clock() -> None:
    async def main():
        return clock_for()

    assert asyncio.run(main()) == dt.datetime.now


@pytest.mark.parametrize("debug", [False, True])
def test_call_after_current_runs_once_the_current_step_yields(debug: bool) -> None:
    """What an in-memory channel hands over runs after everything its sender did in that step and,
    on the fast path, before the other ready callbacks; in debug mode (asyncio's own iteration) it
    falls back to the next turn — the order of effects is the same either way."""
    order: list[str] = []

    async def sender(loop: VirtualEventLoop) -> None:
        loop.call_soon(order.append, "other ready callback")
        loop.call_after_current(lambda: order.append("handed over"))
        order.append("sender continues")
        await asyncio.sleep(0)
        order.append("sender resumed")

    async def main():
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualEventLoop) and loop.get_debug() == debug
        await sender(loop)
        loop.call_after_current(lambda: order.append("from a later step"))
        await asyncio.sleep(1)
        return loop.time()

    assert run_virtual(main(), debug=debug) == 1.0
    first = ["sender continues", "handed over", "other ready callback"] if not debug else \
        ["sender continues", "other ready callback", "handed over"]
    assert order == [*first, "sender resumed", "from a later step"]


def test_skip_idle_until_only_when_nothing_could_run_meanwhile() -> None:
    async def main():
        loop = asyncio.get_running_loop()
        fired: list[float] = []
        timer = loop.call_at(5.0, lambda: fired.append(loop.time()))
        assert not loop.skip_idle_until(5.0)          # a timer is due by then: sleep instead
        assert loop.skip_idle_until(4.0) and loop.time() == 4.0
        loop.call_soon(fired.append, "ready")
        assert not loop.skip_idle_until(4.5)          # a callback is ready
        await asyncio.sleep(0)
        timer.cancel()
        assert loop.skip_idle_until(10.0) and loop.time() == 10.0   # cancelled timers do not count
        return fired

    assert run_virtual(main()) == ["ready"]


@pytest.mark.parametrize("debug", [False, True])
def test_wake_inline_wakes_the_reader_right_after_the_writer_callback(debug: bool) -> None:
    """A future completed while wake_inline is on wakes its task right after the callback that
    completed it (same iteration), before callbacks that were already ready; off, or in debug mode
    (asyncio's own iteration), on the next turn. What the reader sees is the same either way."""
    order: list[str] = []

    async def reader(waiter: asyncio.Future[str]) -> None:
        order.append(f"reader got {await waiter}")

    async def main():
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        task = loop.create_task(reader(waiter))
        await asyncio.sleep(0)                    # the reader now waits

        def write() -> None:
            loop.call_soon(order.append, "already ready")
            previous = loop.wake_inline(True)
            try:
                waiter.set_result("frame")
            finally:
                loop.wake_inline(previous)
            order.append("writer done")

        loop.call_soon(write)
        await task
        return loop.time()

    assert run_virtual(main(), debug=debug) == 0.0
    woken = ["writer done", "reader got frame", "already ready"] if not debug else \
        ["writer done", "already ready", "reader got frame"]
    assert order == woken


def test_start_later_starts_the_task_only_when_told() -> None:
    """A task whose first step was taken back runs once ``start()`` is called (once, however often
    it is called), right after the current callback."""
    order: list[str] = []

    async def serve() -> None:
        order.append("serving")

    async def main():
        loop = asyncio.get_running_loop()
        task = loop.create_task(serve())
        start = loop.start_later(task)
        await asyncio.sleep(1)
        order.append("not started yet")
        start()
        start()
        order.append("start asked")
        await task
        return task.done()

    assert run_virtual(main())
    assert order == ["not started yet", "start asked", "serving"]
