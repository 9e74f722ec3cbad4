"""Session helpers on top of a channel: request/response matching, keep-alive echo, reconnect backoff.

* :class:`Exchange` sends requests and matches responses by (field 41 TID, field 11 STAN) — the
  key CONTRACTS §3 fixes — with a per-request timeout. A response that arrives after its request
  timed out is not silently lost: it goes to :attr:`Exchange.late` (and ``on_unmatched``), because a
  late 0210 is exactly what a terminal must handle (reverse, never print).
* :class:`KeepAlive` sends an echo (0800/70=301, or 0820 for UnionPay — the caller builds it) when
  the line has been idle for ``interval`` seconds, and reports a dead line.
* :class:`Backoff` and :func:`connect_with_backoff` reconnect with exponential, jittered, capped
  delays (seeded ``random.Random``, so simulations replay).

Everything uses the loop's clock, so it runs unchanged on :mod:`posfault.clock`'s virtual loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..message import Message
from ..wire import Wire
from .base import Channel, ChannelClosed, ChannelError

__all__ = ["Backoff", "Exchange", "KeepAlive", "ResponseTimeout", "connect_with_backoff", "match_key"]


class ResponseTimeout(ChannelError, TimeoutError):
    """No response to a request within its timeout; ``key`` is the (TID, STAN) that was awaited."""

    def __init__(self, key: tuple[Any, Any], mti: str, timeout: float) -> None:
        self.key = key
        self.mti = mti
        self.timeout = timeout
        super().__init__(f"no response to {mti} (TID {key[0]}, STAN {key[1]}) within {timeout:g} s")


def match_key(msg: Message) -> tuple[Any, Any]:
    """The (TID, STAN) pair that links a request and its response."""
    return msg.get(41), msg.get(11)


class Exchange:
    """Request/response over one channel. ``await ex.request(msg, timeout=60)`` -> response Message.

    One reader task per exchange dispatches incoming frames: responses to waiting requests, anything
    else (requests from the peer, unmatched or late responses) to ``on_unmatched(msg, envelope)``
    or, if none is given, to :attr:`incoming` (an ``asyncio.Queue``).
    """

    def __init__(self, channel: Channel, wire: Wire, *, key: Callable[[Message], Any] = match_key,
                 on_unmatched: Callable[[Message, Any], None] | None = None) -> None:
        self.channel = channel
        self.wire = wire
        self.key = key
        self.on_unmatched = on_unmatched
        self.incoming: asyncio.Queue[tuple[Message, Any]] = asyncio.Queue()
        self.late: list[Message] = []
        self.errors: list[str] = []
        self.last_activity = asyncio.get_running_loop().time()
        self._pending: dict[Any, asyncio.Future[tuple[Message, Any]]] = {}
        self._timed_out: set[Any] = set()
        self._reader: asyncio.Task[None] | None = None
        self._closed_error: BaseException | None = None

    def start(self) -> Exchange:
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read(), name=f"{self.channel.name}:exchange")
        return self

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                frame = await self.channel.recv(timeout=None)
                self.last_activity = loop.time()
                peek = self.wire.peek(frame)
                if peek.message is None:
                    self.errors.append(peek.error or "undecodable frame")
                    continue
                msg = peek.message
                if msg.is_response:
                    k = self.key(msg)
                    waiter = self._pending.pop(k, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result((msg, peek.envelope))
                        continue
                    if k in self._timed_out:
                        self.late.append(msg)
                self._dispatch(msg, peek.envelope)
        except (ChannelClosed, ChannelError) as exc:
            self._closed_error = exc
        except Exception as exc:  # a framing error etc.: fail the waiters with it
            self._closed_error = exc
        finally:
            error = self._closed_error or ChannelClosed(f"{self.channel.name}: exchange stopped")
            for waiter in self._pending.values():
                if not waiter.done():
                    waiter.set_exception(error)
            self._pending.clear()

    def _dispatch(self, msg: Message, envelope: Any) -> None:
        if self.on_unmatched is not None:
            self.on_unmatched(msg, envelope)
        else:
            self.incoming.put_nowait((msg, envelope))

    async def send(self, msg: Message, envelope: Any = None) -> None:
        """Send without waiting for an answer (advices you do not track, responses to peer requests)."""
        await self.channel.send(self.wire.pack(msg, envelope))
        self.last_activity = asyncio.get_running_loop().time()

    async def request(self, msg: Message, *, envelope: Any = None, timeout: float = 60.0) -> Message:
        """Send ``msg`` and wait for the response with the same key; raises :class:`ResponseTimeout`."""
        return (await self.request_with_envelope(msg, envelope=envelope, timeout=timeout))[0]

    async def request_with_envelope(self, msg: Message, *, envelope: Any = None,
                                    timeout: float = 60.0) -> tuple[Message, Any]:
        self.start()
        if self._closed_error is not None:
            raise ChannelClosed(f"{self.channel.name}: {self._closed_error}")
        k = self.key(msg)
        if k in self._pending:
            raise ChannelError(f"a request with key {k} is already waiting for its response")
        waiter: asyncio.Future[tuple[Message, Any]] = asyncio.get_running_loop().create_future()
        self._pending[k] = waiter
        self._timed_out.discard(k)
        try:
            await self.send(msg, envelope)
            async with asyncio.timeout(timeout):
                return await waiter
        except TimeoutError:
            self._timed_out.add(k)
            raise ResponseTimeout(k, msg.mti, timeout) from None
        finally:
            if self._pending.get(k) is waiter:
                del self._pending[k]

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.channel.close()

    async def __aenter__(self) -> Exchange:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class KeepAlive:
    """Echo test when idle: every time the line has been quiet for ``interval`` s, send
    ``make_echo()`` through ``exchange.request`` and wait ``timeout`` s for the answer. After
    ``max_failures`` consecutive failures, ``on_dead()`` is called and the keep-alive stops."""

    def __init__(self, exchange: Exchange, make_echo: Callable[[], Message], *, interval: float = 60.0,
                 timeout: float = 10.0, max_failures: int = 1,
                 on_dead: Callable[[], Awaitable[None] | None] | None = None) -> None:
        self.exchange = exchange
        self.make_echo = make_echo
        self.interval = interval
        self.timeout = timeout
        self.max_failures = max_failures
        self.on_dead = on_dead
        self.sent = 0
        self.failures = 0
        self.dead = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> KeepAlive:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="keepalive")
        return self

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        consecutive = 0
        while True:
            idle_for = loop.time() - self.exchange.last_activity
            if idle_for < self.interval:
                await asyncio.sleep(self.interval - idle_for)
                continue
            self.sent += 1
            try:
                await self.exchange.request(self.make_echo(), timeout=self.timeout)
                consecutive = 0
            except (ChannelError, TimeoutError):
                self.failures += 1
                consecutive += 1
                if consecutive >= self.max_failures:
                    self.dead = True
                    if self.on_dead is not None:
                        result = self.on_dead()
                        if asyncio.iscoroutine(result):
                            await result
                    return

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@dataclass
class Backoff:
    """Exponential backoff: ``initial * factor**n`` capped at ``maximum``, ± ``jitter`` (a fraction),
    from a seeded RNG. Iterate for successive delays; ``reset()`` after a success."""

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.1
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    attempt: int = 0

    def next_delay(self) -> float:
        base = min(self.maximum, self.initial * self.factor ** self.attempt)
        self.attempt += 1
        if self.jitter:
            base *= 1 + self.rng.uniform(-self.jitter, self.jitter)
        return max(0.0, min(base, self.maximum))

    def reset(self) -> None:
        self.attempt = 0

    def __iter__(self) -> Iterator[float]:
        while True:
            yield self.next_delay()


async def connect_with_backoff(connector: Callable[[], Awaitable[Channel]], *, backoff: Backoff | None = None,
                               attempts: int | None = None,
                               on_retry: Callable[[int, BaseException, float], None] | None = None) -> Channel:
    """Call ``connector()`` until it succeeds, sleeping per ``backoff`` between failures.

    ``attempts`` bounds the number of tries (``None``: forever); the last error is re-raised.
    ``on_retry(attempt, error, delay)`` is called before each sleep (for logs/traces).
    """
    backoff = backoff or Backoff()
    tries = 0
    while True:
        tries += 1
        try:
            channel = await connector()
        except (ChannelError, OSError) as exc:
            if attempts is not None and tries >= attempts:
                raise
            delay = backoff.next_delay()
            if on_retry is not None:
                on_retry(tries, exc, delay)
            await asyncio.sleep(delay)
            continue
        backoff.reset()
        return channel
