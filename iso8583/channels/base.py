"""The one channel interface every transport implements, and the receive queue they share.

A channel carries *frames* (CONTRACTS §2: the bytes of one message without its length header, TPDU
included for UnionPay). The transport adds and strips the length header or serial frame, enforces
``max_frame`` on every read (before buffering the body) and the optional ``idle_timeout``.

Fault injection needs to misbehave below the frame level — send half a frame, a header announcing
the wrong length, a frame split across writes — so every channel also has :meth:`Channel.send_raw`
(bytes exactly as given, no header) and :meth:`Channel.reset` (abortive close: TCP RST).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from ..errors import ISO8583Error
from ..framing import DEFAULT_MAX_FRAME, Deframer, FramingError, LengthPrefix, length_prefix

__all__ = [
    "DEFAULT_MAX_FRAME",
    "Channel",
    "ChannelClosed",
    "ChannelError",
    "ChannelReset",
    "ChannelTimeout",
    "Inbox",
]


class ChannelError(ISO8583Error):
    """A channel could not deliver or receive a frame."""


class ChannelClosed(ChannelError, ConnectionError):
    """The channel (or its peer) is closed; no more frames will arrive."""


class ChannelReset(ChannelClosed):
    """The connection was aborted (TCP RST, pipe reset): frames in flight are lost."""


class ChannelTimeout(ChannelError, TimeoutError):
    """Nothing arrived within the channel's idle timeout."""


class Inbox:
    """Frames received but not yet read, plus at most one waiting reader.

    Shared by every transport so they behave the same: frames queued before a graceful close are
    still delivered, then :class:`ChannelClosed`; after a reset or a framing error the queue is
    discarded and the error is raised. One future per *waiting* ``get`` — none when frames are
    already queued — keeps the in-memory pipe cheap.
    """

    __slots__ = ("_error", "_frames", "_waiter", "eof", "on_drained")

    def __init__(self) -> None:
        self._frames: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self.eof = False
        self.on_drained = None  # callback when the queue empties (TCP resumes reading)

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, frame: bytes) -> None:
        if self.eof or self._error is not None:
            return
        self._frames.append(frame)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def feed(self, deframer: Deframer, data: bytes) -> int | None:
        """Run stream bytes through ``deframer`` and queue every whole frame; the frames count.

        On a framing error the frames completed before the bad bytes are still queued, then the inbox
        fails with that error (the reader gets the good frames first) and None is returned, so the
        channel can close its transport. One place for the rule every stream channel follows.
        """
        try:
            frames = deframer.feed(data)
        except FramingError as exc:
            for frame in getattr(exc, "frames", ()):
                self.put(frame)
            self.fail(exc, discard=False)
            return None
        for frame in frames:
            self.put(frame)
        return len(frames)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def close(self) -> None:
        """Graceful end of stream: queued frames remain readable."""
        self.eof = True
        self._wake()

    def fail(self, error: BaseException, *, discard: bool = True) -> None:
        """Abortive end: ``error`` is raised to the reader, after the queued frames unless ``discard``
        (a reset loses what was in flight; a framing error still delivers the good frames before it)."""
        if self._error is None:
            self._error = error
        if discard:
            self._frames.clear()
        self.eof = True
        self._wake()

    @property
    def error(self) -> BaseException | None:
        return self._error

    def arm_waiter(self, loop: asyncio.AbstractEventLoop, name: str, waiter: Any = None) -> Any:
        """The future an empty inbox's reader waits on (set when a frame or the end arrives); raises
        instead what the reader must hear: the framing error, the peer's end, a second reader.
        The one rule for every reader of an inbox (this :meth:`get`, the simulation's direct link,
        and ``host_sim.serve.DirectServer``).

        ``waiter``: a reader that waits as itself rather than on a new future — anything with the
        future's ``done()`` and ``set_result(value)`` (a server driven by its inbox): it is
        registered and returned, and the end of the stream is returned as None instead of raised
        (the error still is raised; the order of the checks is the same)."""
        if self._error is not None:
            raise self._error
        if self.eof:
            if waiter is not None:
                return None
            raise ChannelClosed(f"{name}: closed by peer")
        if self._waiter is not None:
            raise ChannelError(f"{name}: recv() called concurrently; one reader per channel")
        if waiter is None:
            waiter = loop.create_future()
        self._waiter = waiter
        return waiter

    async def get(self, timeout: float | None, name: str) -> bytes:
        frames = self._frames
        while not frames:
            waiter = self.arm_waiter(asyncio.get_running_loop(), name)
            try:
                if timeout is None:
                    await waiter
                else:
                    try:
                        async with asyncio.timeout(timeout):
                            await waiter
                    except TimeoutError:
                        raise ChannelTimeout(f"{name}: nothing received for {timeout:g} s (idle timeout)") from None
            finally:
                if self._waiter is waiter:
                    self._waiter = None
        frame = frames.popleft()
        if not frames and self.on_drained is not None:
            self.on_drained()
        return frame


class Channel(ABC):
    """Async frame transport: ``send(frame)``, ``recv() -> frame``, ``close()``.

    Attributes: ``name`` (for traces and errors), ``prefix`` (:class:`~iso8583.framing.LengthPrefix`
    used on byte streams), ``max_frame`` (largest frame accepted on read), ``idle_timeout`` (seconds
    ``recv`` waits before :class:`ChannelTimeout`; ``None`` waits forever).
    """

    def __init__(self, *, name: str, prefix: LengthPrefix | str | None = None,
                 max_frame: int = DEFAULT_MAX_FRAME, idle_timeout: float | None = None) -> None:
        self.name = name
        self.prefix = length_prefix(prefix)
        self.max_frame = max_frame
        self.idle_timeout = idle_timeout
        self.inbox = Inbox()
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once this side closed or reset; the peer closing shows as ``recv`` raising."""
        return self._closed

    async def recv(self, timeout: float | None = ...) -> bytes:  # type: ignore[assignment]
        """Next frame; ``timeout`` overrides the idle timeout (``None``: wait forever).

        Raises :class:`ChannelClosed` when the peer is gone, :class:`ChannelTimeout` when idle.
        """
        if self._closed and not len(self.inbox):
            raise ChannelClosed(f"{self.name}: channel is closed")
        return await self.inbox.get(self.idle_timeout if timeout is ... else timeout, self.name)

    @abstractmethod
    async def send(self, frame: bytes) -> None:
        """Send one frame (the transport adds the length header / serial framing)."""

    @abstractmethod
    async def send_raw(self, data: bytes) -> None:
        """Write ``data`` as-is, with no framing (fault injection: fragments, truncation, garbage)."""

    @abstractmethod
    async def close(self) -> None:
        """Graceful close: frames already sent are delivered, then the peer sees end of stream."""

    @abstractmethod
    async def reset(self) -> None:
        """Abortive close (TCP RST): frames in flight are lost, the peer's ``recv`` raises ChannelReset."""

    def wrap(self, frame: bytes) -> bytes:
        """The exact bytes this channel puts on the wire for ``frame``."""
        return self.prefix.wrap(frame)

    def _check_send(self, frame: bytes) -> None:
        if self._closed:
            raise ChannelClosed(f"{self.name}: send on a closed channel")

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        """``async for frame in channel``: frames until the peer closes (errors still raise)."""
        while True:
            try:
                frame = await self.recv()
            except ChannelReset:
                raise
            except ChannelClosed:
                return
            yield frame

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.name!r} {state}>"
