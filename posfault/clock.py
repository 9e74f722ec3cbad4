"""Virtual time: an asyncio event loop whose clock jumps to the next timer when nothing is runnable.

Why: terminal and host logic is written once, with plain asyncio (``asyncio.sleep``,
``asyncio.timeout``, ``loop.time()``), and must run both against real devices and in a deterministic
simulation. On :class:`VirtualEventLoop` the same code runs unchanged, but a 60-second response
timeout costs microseconds: whenever every task is waiting, the loop does not block — it moves its
clock straight to the earliest scheduled timer. Nothing depends on the wall clock, so two runs with
the same seed execute the same callbacks in the same order at the same virtual instants.

Business date-times (ISO 8583 fields 7/12/13, ledger timestamps) come from a *clock callable*
(``Callable[[], datetime]``, CONTRACTS §0). :class:`VirtualClock` derives it from the loop's virtual
time, so "the terminal waited 60 s" and "field 7 moved by 60 s" agree.

Example::

    from posfault.clock import run_virtual

    async def main(env):
        t0 = env.clock()
        await asyncio.sleep(3600)          # an hour of virtual time, ~10 µs of wall time
        return env.clock() - t0

    assert run_virtual(main, seed=7) == datetime.timedelta(hours=1)

Limits: the virtual loop is meant for in-memory channels (``iso8583.channels.memory``). Real sockets
still work on it, but time does not wait for them: if a timer is due, the clock jumps to it even
when a real peer would have answered first. Threads (``run_in_executor``) take wall time while
virtual time stands still; avoid them in simulated code.
"""

from __future__ import annotations

import asyncio
import asyncio.base_events as _base_events
import datetime as _dt
import functools
import heapq
import operator
import random
import selectors
import sys
import threading
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = [
    "DEFAULT_EPOCH",
    "SimulationDeadlock",
    "VirtualClock",
    "VirtualEnv",
    "VirtualEventLoop",
    "clock_for",
    "new_virtual_loop",
    "run_virtual",
]

T = TypeVar("T")

_CoroutineType = types.CoroutineType
_get_running_loop = asyncio.events._get_running_loop
_set_running_loop = asyncio.events._set_running_loop
_get_ident = threading.get_ident
_get_asyncgen_hooks = sys.get_asyncgen_hooks
_set_asyncgen_hooks = sys.set_asyncgen_hooks
_read_debug = operator.attrgetter("_debug")
_read_vtime = operator.attrgetter("_vtime")
_Handle = asyncio.Handle
_TimerHandle = asyncio.TimerHandle

_MIN_SCHEDULED_TIMER_HANDLES = _base_events._MIN_SCHEDULED_TIMER_HANDLES
_MIN_CANCELLED_FRACTION = _base_events._MIN_CANCELLED_TIMER_HANDLES_FRACTION
_MAXIMUM_SELECT_TIMEOUT = _base_events.MAXIMUM_SELECT_TIMEOUT

#: Where simulated business time starts unless told otherwise: a fixed, timezone-naive instant
#: (terminals and hosts speak local time in fields 7/12/13), far from DST and month ends.
DEFAULT_EPOCH = _dt.datetime(2026, 3, 2, 9, 0, 0)


class SimulationDeadlock(RuntimeError):
    """Every task waits on something no timer or peer will ever provide.

    On a real loop this would hang forever; on the virtual loop it is detected at once and the
    message lists what each pending task was waiting in, so the missing send/close is easy to find.
    """


class _VirtualSelector(selectors.BaseSelector):
    """A selector that never blocks: it polls real file descriptors and otherwise advances time."""

    def __init__(self) -> None:
        self._real = selectors.DefaultSelector()
        self.loop: VirtualEventLoop | None = None
        self.registered = 0   #: file objects watched (1 = only the loop's own wake-up pipe)

    # selectors.BaseSelector interface, delegated ------------------------------------------------
    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = self._real.register(fileobj, events, data)
        self.registered += 1
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        key = self._real.unregister(fileobj)
        self.registered -= 1
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Any:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        real = self._real
        if timeout == 0 and len(real.get_map()) <= 1:
            # Only the loop's own wake-up pipe is registered (a pure in-memory simulation) and there
            # is work to do: skip the syscall. Thread-safe callbacks are queued in the loop anyway;
            # the pipe is drained the next time the loop would wait.
            return []
        events = real.select(0)
        if events or timeout == 0:
            return events
        loop = self.loop
        assert loop is not None, "selector not attached to a VirtualEventLoop"
        if timeout is None:
            if loop._needs_real_blocking():
                return self._real.select(None)
            raise SimulationDeadlock(loop._deadlock_report())
        loop._advance_to_next_timer(timeout)
        return []


class VirtualEventLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on virtual time (seconds since ``start``, default 0.0).

    ``loop.time()`` only moves when the loop would otherwise sleep; it then jumps exactly to the
    earliest timer. ``loop.advance(seconds)`` lets a test move time by hand between steps.
    """

    def __init__(self, start: float = 0.0) -> None:
        selector = _VirtualSelector()
        super().__init__(selector)
        selector.loop = self
        self._vtime = float(start)
        # Timers within this much of "now" run together; keep it tiny so ordering stays exact.
        self._clock_resolution = 1e-9
        self.jumps = 0  #: how many times virtual time jumped (a cheap progress/diagnostics figure)
        # Every future, task and handle asks its loop ``get_debug()`` when made (five or more per
        # sale): answered by a C callable reading ``_debug`` instead of a Python method call.
        self.get_debug = functools.partial(_read_debug, self)  # type: ignore[method-assign]
        # Likewise ``time()``: read dozens of times per sale (trace stamps, timeouts, business
        # clock); a C callable reading ``_vtime``, same value as the method below.
        self.time = functools.partial(_read_vtime, self)  # type: ignore[method-assign]
        # (callback, args, context) to run right after the callback now running, in order.
        # (Only what has not run yet is in it: a callback is taken out before it runs, so a reader
        # may run the next ones itself — see iso8583's DirectLink end — and leave the rest in order.)
        self._after_current: deque[tuple[Callable[..., Any], tuple[Any, ...], Any]] = deque()
        self._in_fast_callback = False
        self._wake_inline = False   # see wake_inline()
        #: (call_after_current, wake_inline) bound once: an in-memory link per simulated sale keeps them
        self.link_hooks = (self.call_after_current, self.wake_inline)
        #: What ``call_soon`` is while wake_inline() is on (bound once: the link turns it on per message).
        self._call_soon_inline = self._call_soon_after_current
        # The loop's async generator hooks (firstiter, finalizer), bound once: set for each run,
        # and the simulation facade runs the loop once per sale.
        self._asyncgen_hooks = (self._asyncgen_firstiter_hook, self._asyncgen_finalizer_hook)  # type: ignore[attr-defined]

    def skip_idle_until(self, when: float) -> bool:
        """Move time to ``when`` now, if nothing could run before then anyway; else False.

        True only when no callback is ready, every timer is due strictly after ``when``, and no real
        file descriptor or executor thread could wake the loop: then ``await asyncio.sleep(when - now)`` would do
        exactly this, at the cost of a future, a timer and two loop iterations."""
        if (self._ready or self._after_current or when < self._vtime or self._needs_real_blocking()
                or self._selector.registered > 1):  # type: ignore[attr-defined]  # real I/O to poll first
            return False
        scheduled = self._scheduled
        while scheduled and scheduled[0]._cancelled:
            self._timer_cancelled_count -= 1
            heapq.heappop(scheduled)._scheduled = False
        if scheduled and scheduled[0]._when <= when:
            return False
        if when > self._vtime:
            self._vtime = when
            self.jumps += 1
        return True

    def call_after_current(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback(*args)`` right after the callback now running (a task step, a timer), before
        the other ready callbacks — or on the next turn (``call_soon``) when the loop is not on its
        in-memory fast path. In-memory channels use it to hand a frame over as soon as its sender
        yields, without an extra loop iteration, and still after everything the sender did."""
        if self._in_fast_callback:
            self._after_current.append((callback, args, None))
        else:
            self.call_soon(callback, *args)

    # asyncio's call_soon/call_at, outside debug mode, without the helper calls (a task made, a
    # commit scheduled, a response timeout armed: several per sale). Same handles, same order.
    def call_soon(self, callback: Callable[..., Any], *args: Any, context: Any = None) -> asyncio.Handle:
        if self._debug or self._closed:  # type: ignore[attr-defined]
            return super().call_soon(callback, *args, context=context)
        handle = _Handle(callback, args, self, context)
        self._ready.append(handle)  # type: ignore[attr-defined]
        return handle

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any,
                context: Any = None) -> asyncio.TimerHandle:
        if when is None or self._debug or self._closed:  # type: ignore[attr-defined]
            return super().call_at(when, callback, *args, context=context)
        timer = _TimerHandle(when, callback, args, self, context)
        heapq.heappush(self._scheduled, timer)  # type: ignore[attr-defined]
        timer._scheduled = True
        return timer

    def _call_soon_after_current(self, callback: Callable[..., Any], *args: Any, context: Any = None) -> None:
        # ``call_soon`` while wake_inline() is on: a future completed by the in-memory link wakes
        # its task right after the link's callback instead of on the next turn.
        self._after_current.append((callback, args, context))

    def wake_inline(self, on: bool) -> bool:
        """While on, what futures schedule when they complete (the awaiting task's wake-up) runs
        right after the callback now running, as ``call_after_current`` does — not on the next
        turn. The in-memory link turns it on while it writes into the receiving ends' inboxes: the
        reader then continues in the same loop iteration, as soon as the writer's callback is over.
        A sale (request, commit, response, close) then takes two loop iterations instead of five.
        The woken reader runs before callbacks that were already ready (as a frame handed over by
        ``call_after_current`` does); everything else keeps its order. Only on the loop's fast path
        (elsewhere a no-op). Returns the previous state (to restore it).

        (While on, the instance's ``call_soon`` is the redirecting one: futures look the method up
        on the loop each time, and every other ``call_soon`` keeps asyncio's own, at no extra cost.)"""
        previous = self._wake_inline
        if on and not previous and self._in_fast_callback:
            self._wake_inline = True
            self.call_soon = self._call_soon_inline  # type: ignore[method-assign]
        elif previous and not on:
            self._wake_inline = False
            del self.call_soon
        return previous

    def start_later(self, task: asyncio.Task[Any]) -> Callable[[], None]:
        """Take back the first step of ``task`` (just created: its step is the last ready handle)
        and return a function that schedules it right after the current callback. The simulation
        starts a connection's serving task once the first bytes (or the close) reach it, in the
        same iteration, rather than one turn after the connect."""
        ready = self._ready
        handle = ready[-1] if ready else None
        if handle is None or getattr(handle, "_args", None) != () or handle._cancelled:
            return lambda: None   # not the shape expected: the task starts on its own
        ready.pop()
        started = False

        def start() -> None:
            nonlocal started
            if not started:
                started = True
                self.call_after_current(handle._run)
        return start

    def start_next(self, task: asyncio.Task[Any]) -> None:
        """Run the first step of ``task`` (just created: its step is the last ready handle) right
        after the current callback, before what was already queued to run after it — where the
        code that made it stood. A server that ran as callbacks hands a connection over to a task
        this way without moving anything else. Outside the fast path: it starts on the next turn."""
        ready = self._ready
        handle = ready[-1] if ready else None
        if (not self._in_fast_callback or handle is None or getattr(handle, "_args", None) != ()
                or handle._cancelled):
            return
        ready.pop()
        self._after_current.appendleft((handle._run, (), None))

    def time(self) -> float:
        return self._vtime

    def run_until_complete(self, future: Any) -> Any:
        """asyncio's, for a coroutine outside debug mode without its stop callback: the simulation
        facade runs one coroutine per call (each sale), and asyncio's way — a done callback that
        calls ``stop()`` — costs a handle and a loop turn per call. Same turns otherwise: once the
        task is done, the callbacks already ready run in one last turn (as with the stop callback),
        then it returns; ``loop.stop()`` from inside still ends the run early."""
        if self._debug or future.__class__ is not _CoroutineType:
            return super().run_until_complete(future)
        if self._closed:   # type: ignore[attr-defined]
            self._check_closed()
        if self._thread_id is not None or _get_running_loop() is not None:  # type: ignore[attr-defined]
            self._check_running()   # type: ignore[attr-defined]  # raises the right error
        # create_task(), without its checks (just done) when no task factory is set
        task = asyncio.Task(future, loop=self) if self._task_factory is None else self.create_task(future)
        task._log_destroy_pending = False  # type: ignore[attr-defined]  # as asyncio does for its own task
        old_hooks = _get_asyncgen_hooks()
        try:
            self._thread_id = _get_ident()  # type: ignore[attr-defined]
            _set_asyncgen_hooks(*self._asyncgen_hooks)   # (firstiter, finalizer)
            _set_running_loop(self)
            return self._run_task(task)
        finally:
            self._stopping = False
            self._thread_id = None  # type: ignore[attr-defined]
            _set_running_loop(None)
            _set_asyncgen_hooks(*old_hooks)

    def _run_task(self, task: asyncio.Task[Any]) -> Any:
        """Run the loop until ``task`` is done (the loop is set up as running)."""
        try:
            run_once = self._run_once
            while True:
                run_once()
                if self._stopping:
                    break
                if task.done():
                    self._last_turn()
                    break
        except BaseException:
            if task.done() and not task.cancelled():
                task.exception()   # consumed, as asyncio does: the caller gets it raised instead
            raise
        if not task.done():
            raise RuntimeError("Event loop stopped before Future completed.")
        return task.result()

    def _last_turn(self) -> None:
        """The turn asyncio's stop callback would take once the run's task is done: it runs what is
        ready now, and the timers due now; when there is none, it would do nothing."""
        scheduled = self._scheduled
        if self._ready or (scheduled and scheduled[0]._when < self._vtime + self._clock_resolution):
            self._stopping = True
            self._run_once()

    def _idle_now(self) -> bool:
        """Nothing would run in the next iteration before a task created now: no ready callback,
        no timer due, on the in-memory fast path."""
        if (self._ready or self._after_current or self._stopping or self._debug
                or self._selector.registered > 1):  # type: ignore[attr-defined]
            return False
        scheduled = self._scheduled
        while scheduled and scheduled[0]._cancelled:
            self._timer_cancelled_count -= 1
            heapq.heappop(scheduled)._scheduled = False
        return not scheduled or scheduled[0]._when >= self._vtime + self._clock_resolution

    def run_directly(self, coro: Coroutine[Any, Any, T]) -> T:
        """:meth:`run_until_complete` for a coroutine of code that needs no task of its own before it
        first waits (no ``asyncio.timeout``, no ``current_task()``): the simulation facade's calls.
        When the loop is idle, that first step runs with no task at all (see below); otherwise, or
        on a coroutine that is not one, it is ``run_until_complete``."""
        if (coro.__class__ is not _CoroutineType or self._task_factory is not None or self._closed  # type: ignore[attr-defined]
                or self._thread_id is not None or _get_running_loop() is not None or not self._idle_now()):  # type: ignore[attr-defined]
            return self.run_until_complete(coro)
        # The loop is idle: run_until_complete(coro) without a task as long as it does not suspend.
        # Its first step is exactly what the next iteration would run first (the new task's step,
        # nothing before it): it runs now, as a callback of that iteration, followed by what it
        # asked to run after it; a coroutine that finishes there needs no task, no handle and no
        # loop turn (a simulated sale that never waits). One that suspends is handed to a task
        # whose first step takes the future it waits on at once — where its own task would have
        # registered its wake-up — and the run goes on as usual.
        old_hooks = _get_asyncgen_hooks()
        task: asyncio.Task[Any] | None = None
        error: BaseException | None = None
        result: Any = None
        try:
            self._thread_id = _get_ident()  # type: ignore[attr-defined]
            _set_asyncgen_hooks(*self._asyncgen_hooks)   # (firstiter, finalizer)
            _set_running_loop(self)
            after = self._after_current
            self._in_fast_callback = True
            try:
                try:
                    yielded = coro.send(None)
                except StopIteration as stop:
                    result = stop.value
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    error = exc
                else:
                    task = asyncio.Task(_Resume(coro, yielded).run(), loop=self)
                    task._log_destroy_pending = False  # type: ignore[attr-defined]
                    self._ready.pop()._run()   # its first step: waits on what the coroutine yielded
                if after:
                    self._run_after_current(after)
            finally:
                self._in_fast_callback = False
                if self._wake_inline:
                    self.wake_inline(False)
                if after:
                    for callback, args, context in after:
                        self.call_soon(callback, *args, context=context)
                    after.clear()
            if task is not None and not task.done():
                return self._run_task(task)
            self._last_turn()
            if task is not None:
                return task.result()
        finally:
            self._stopping = False
            self._thread_id = None  # type: ignore[attr-defined]
            _set_running_loop(None)
            _set_asyncgen_hooks(*old_hooks)
        if error is not None:
            try:
                raise error
            finally:
                error = None
        return result

    def _run_once(self) -> None:
        """One iteration, as asyncio's, minus what a pure in-memory simulation never needs: no
        selector poll while callbacks are ready (only the wake-up pipe is registered), and ready
        handles run inline. With real file descriptors or in debug mode, asyncio's own."""
        selector = self._selector
        if self._debug or selector.registered > 1:  # type: ignore[attr-defined]
            super()._run_once()  # type: ignore[misc]
            return
        scheduled = self._scheduled
        count = len(scheduled)
        if count > _MIN_SCHEDULED_TIMER_HANDLES and self._timer_cancelled_count / count > _MIN_CANCELLED_FRACTION:
            kept = []
            for handle in scheduled:
                if handle._cancelled:
                    handle._scheduled = False
                else:
                    kept.append(handle)
            heapq.heapify(kept)
            self._scheduled = scheduled = kept
            self._timer_cancelled_count = 0
        else:
            while scheduled and scheduled[0]._cancelled:
                self._timer_cancelled_count -= 1
                heapq.heappop(scheduled)._scheduled = False
        ready = self._ready
        if not ready and not self._stopping:
            # Nothing runnable: the selector moves virtual time to the next timer (or reports a
            # deadlock, or blocks for an executor thread's wake-up).
            timeout = (min(max(0.0, scheduled[0]._when - self._vtime), _MAXIMUM_SELECT_TIMEOUT)
                       if scheduled else None)
            self._process_events(selector.select(timeout))
        end_time = self._vtime + self._clock_resolution
        while scheduled and scheduled[0]._when < end_time:
            handle = heapq.heappop(scheduled)
            handle._scheduled = False
            ready.append(handle)
        popleft = ready.popleft
        after = self._after_current
        self._in_fast_callback = True
        try:
            for _ in range(len(ready)):
                handle = popleft()
                if handle._cancelled:
                    continue
                try:
                    handle._context.run(handle._callback, *handle._args)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:   # what asyncio.Handle._run does
                    self._callback_failed(handle._callback, exc, handle)
                if after:
                    self._run_after_current(after)
        finally:
            self._in_fast_callback = False
            if self._wake_inline:   # interrupted inside a link's callback
                self.wake_inline(False)
            if after:   # interrupted (SystemExit...): what is owed runs on the next turn
                for callback, args, context in after:
                    self.call_soon(callback, *args, context=context)
                after.clear()
        handle = None  # break cycles when an exception occurred

    def _run_after_current(self, after: deque[tuple[Callable[..., Any], tuple[Any, ...], Any]]) -> None:
        popleft = after.popleft
        while after:   # callbacks may add more: they run in order, after these
            callback, args, context = popleft()
            try:
                if context is None:
                    callback(*args)
                else:
                    context.run(callback, *args)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._callback_failed(callback, exc, None)

    def nothing_due(self) -> bool:
        """True when, once the callback now running returns, the loop's next step would be whatever
        that callback schedules with ``call_soon`` now: nothing is ready, nothing is to run after the
        current callback, the loop is not stopping, and it runs on its in-memory fast path (no real
        file descriptor to poll first). Then doing that work at once, at the very end of the current
        callback, runs everything in the same order as scheduling it would — the host's group commit
        uses this to commit a lone request without a loop turn (a group only forms when something
        else is due at the same time)."""
        return (self._in_fast_callback and not self._ready and not self._after_current
                and not self._wake_inline and not self._stopping)

    def _callback_failed(self, callback: Any, exc: BaseException, handle: Any) -> None:
        context: dict[str, Any] = {"message": f"Exception in callback {callback!r}", "exception": exc}
        if handle is not None:
            context["handle"] = handle
            if handle._source_traceback:
                context["source_traceback"] = handle._source_traceback
        self.call_exception_handler(context)

    def advance(self, seconds: float) -> None:
        """Move virtual time forward by ``seconds`` (timers that become due run on the next turn)."""
        if seconds < 0:
            raise ValueError(f"virtual time cannot go backwards (advance by {seconds})")
        self._vtime += seconds

    # -- used by the selector ------------------------------------------------------------------------
    def _advance_to_next_timer(self, timeout: float) -> None:
        scheduled = self._scheduled  # the loop's timer heap; its head is the next due timer
        target = scheduled[0]._when if scheduled else self._vtime + timeout
        if target > self._vtime:
            self._vtime = target
            self.jumps += 1

    def _needs_real_blocking(self) -> bool:
        """True when something outside the loop (an executor thread) can still wake it up."""
        return self._default_executor is not None  # type: ignore[attr-defined]

    def _deadlock_report(self) -> str:
        lines = [f"virtual loop deadlock at t={self._vtime:.6f}s: no task is runnable and no timer is "
                 "scheduled, so nothing can ever wake the pending tasks:"]
        for task in sorted(asyncio.all_tasks(self), key=lambda t: t.get_name()):
            frames = task.get_stack(limit=1)
            where = (f"{frames[0].f_code.co_filename}:{frames[0].f_lineno} in {frames[0].f_code.co_name}"
                     if frames else "not started")
            lines.append(f"  task {task.get_name()!r} waiting at {where}")
        return "\n".join(lines)


class _Resume:
    """The rest of a coroutine that has started and is suspended on ``first`` (what it yielded), as
    an awaitable a task can run: the task waits on ``first``, then drives the coroutine on."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Any, first: Any) -> None:
        self.coro = coro
        self.first = first

    async def run(self) -> Any:
        return await self

    def __await__(self) -> Any:
        coro = self.coro
        pending = self.first
        self.first = None
        while True:
            try:
                sent = yield pending
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:   # thrown in by the task (cancellation)
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    pending = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


def new_virtual_loop(start: float = 0.0) -> VirtualEventLoop:
    """A fresh :class:`VirtualEventLoop` (for ``asyncio.Runner(loop_factory=...)`` or manual use)."""
    return VirtualEventLoop(start)


class VirtualClock:
    """A business clock (``Callable[[], datetime]``) tied to a loop's virtual time.

    ``clock()`` returns ``epoch + loop.time()`` seconds. It reads the loop it was created for, so it
    can be handed to a terminal or host before the loop runs.
    """

    __slots__ = ("_last", "_last_t", "epoch", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, epoch: _dt.datetime = DEFAULT_EPOCH) -> None:
        self.loop = loop
        self.epoch = epoch
        self._last_t: float | None = None
        self._last = epoch

    def __call__(self) -> _dt.datetime:
        # Terminal and host read the clock several times per message, mostly at one virtual
        # instant: the datetime (immutable) is computed once per instant.
        t = self.loop.time()
        if t != self._last_t:
            self._last = self.epoch + _dt.timedelta(seconds=t)
            self._last_t = t
        return self._last

    def at(self, seconds: float) -> _dt.datetime:
        """The business date-time at loop time ``seconds``."""
        return self.epoch + _dt.timedelta(seconds=seconds)

    def __repr__(self) -> str:
        return f"VirtualClock(epoch={self.epoch.isoformat()}, now={self().isoformat()})"


def clock_for(loop: asyncio.AbstractEventLoop | None = None,
              epoch: _dt.datetime = DEFAULT_EPOCH) -> Callable[[], _dt.datetime]:
    """The business clock matching ``loop``: virtual for a virtual loop, ``datetime.now`` otherwise."""
    loop = loop or asyncio.get_running_loop()
    if isinstance(loop, VirtualEventLoop):
        return VirtualClock(loop, epoch)
    return _dt.datetime.now


@dataclass
class VirtualEnv:
    """What a simulated ``main(env)`` gets: the loop, its business clock and a seeded RNG."""

    loop: VirtualEventLoop
    clock: VirtualClock
    rng: random.Random
    seed: int
    extra: dict[str, Any] = field(default_factory=dict)

    def now(self) -> float:
        """Virtual seconds since the start of the run."""
        return self.loop.time()


def run_virtual(main: Coroutine[Any, Any, T] | Callable[[VirtualEnv], Awaitable[T]], *,
                seed: int = 0, epoch: _dt.datetime = DEFAULT_EPOCH, debug: bool = False) -> T:
    """Run ``main`` to completion on a fresh :class:`VirtualEventLoop` and return its result.

    ``main`` is a coroutine, or a callable taking a :class:`VirtualEnv` (loop, business clock,
    ``random.Random(seed)``) and returning an awaitable. Remaining tasks are cancelled at the end,
    as ``asyncio.run`` does. Same code + same seed ⇒ same result and same event order.
    """
    with asyncio.Runner(debug=debug, loop_factory=new_virtual_loop) as runner:
        loop = runner.get_loop()
        assert isinstance(loop, VirtualEventLoop)
        if asyncio.iscoroutine(main):
            return runner.run(main)
        env = VirtualEnv(loop=loop, clock=VirtualClock(loop, epoch), rng=random.Random(seed), seed=seed)

        async def _call() -> T:
            return await main(env)  # type: ignore[operator]

        return runner.run(_call())
