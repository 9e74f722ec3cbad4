"""In-memory pipe: two connected channels, for the simulation (and for unit tests of anything async).

Frames are handed over as ``bytes`` objects — no copying, no header, no task per frame — so a
simulated terminal-host exchange costs a few microseconds. The pipe still behaves like a byte
stream when someone writes below the frame level: :meth:`MemoryChannel.send_raw` feeds the peer's
:class:`~iso8583.framing.Deframer`, and while that deframer holds a partial frame every later frame
goes through it too (wrapped in its length header), exactly as on TCP: a truncated frame under its
original header swallows the start of the next one.

``latency`` delays every frame by a fixed time (virtual or real), preserving order; a close is
delivered after the frames sent before it. ``max_frame`` is enforced on the receiving side, like
every transport's read limit: an oversized frame fails the receiver with FrameTooLarge.
"""

from __future__ import annotations

import asyncio
from collections import deque

from ..framing import DEFAULT_MAX_FRAME, Deframer, FrameTooLarge, FramingError, LengthPrefix
from .base import Channel, ChannelClosed, ChannelReset

__all__ = ["MemoryChannel", "pipe"]

_CLOSE = object()  # in-flight marker: graceful close travels behind the frames sent before it


class MemoryChannel(Channel):
    """One end of :func:`pipe`."""

    def __init__(self, *, name: str, prefix: LengthPrefix | str | None, max_frame: int,
                 idle_timeout: float | None, latency: float) -> None:
        super().__init__(name=name, prefix=prefix, max_frame=max_frame, idle_timeout=idle_timeout)
        self.peer: MemoryChannel | None = None
        self.latency = latency
        self._deframer: Deframer | None = None  # created on the first raw write towards us
        self._in_flight: deque[tuple[float, object, bool]] = deque()  # (due, frame|_CLOSE, raw) to peer
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._max_length = self.prefix.max_length

    # -- receiving side (called on the receiver by its peer) ------------------------------------------
    def _deliver(self, item: bytes, raw: bool) -> None:
        if self.inbox.eof:
            return
        deframer = self._deframer
        if raw or (deframer is not None and deframer.buffered):
            if deframer is None:
                deframer = self._deframer = Deframer(self.prefix, self.max_frame)
            self.inbox.feed(deframer, item if raw else self.prefix.wrap(item))
            return
        if len(item) > self.max_frame:
            self.inbox.fail(FrameTooLarge(len(item), self.max_frame))
            return
        self.inbox.put(item)

    # -- sending side ----------------------------------------------------------------------------------
    def _push(self, item: object, raw: bool) -> None:
        peer = self.peer
        assert peer is not None
        if not self.latency:
            if item is _CLOSE:
                peer.inbox.close()
            else:
                peer._deliver(item, raw)  # type: ignore[arg-type]
            return
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        self._in_flight.append((loop.time() + self.latency, item, raw))
        if self._timer is None:
            self._timer = loop.call_at(self._in_flight[0][0], self._flush)

    def _flush(self) -> None:
        """Deliver every due in-flight item in order, then re-arm for the next one (one timer per pipe
        direction, so equal due times can never reorder frames)."""
        self._timer = None
        loop = self._loop
        assert loop is not None and self.peer is not None
        now = loop.time()
        flight = self._in_flight
        while flight and flight[0][0] <= now:
            _, item, raw = flight.popleft()
            if item is _CLOSE:
                self.peer.inbox.close()
            else:
                self.peer._deliver(item, raw)  # type: ignore[arg-type]
        if flight:
            self._timer = loop.call_at(flight[0][0], self._flush)

    async def send(self, frame: bytes) -> None:
        self.send_nowait(frame)

    def send_nowait(self, frame: bytes) -> None:
        """:meth:`send` without the coroutine: a memory pipe never waits to send."""
        if self._closed:
            raise ChannelClosed(f"{self.name}: send on a closed channel")
        peer = self.peer
        if peer is None or peer.inbox.eof or peer._closed:
            raise ChannelClosed(f"{self.name}: peer is closed")
        if len(frame) > self._max_length:
            raise FramingError(f"{self.name}: frame of {len(frame)} bytes does not fit a {self.prefix.kind} "
                               f"length header", expected=f"<= {self.prefix.max_length}", found=str(len(frame)))
        if not self.latency:  # fast path: straight into the peer's inbox
            peer._deliver(frame, False)
        else:
            self._push(frame, False)

    async def send_raw(self, data: bytes) -> None:
        if self._closed:
            raise ChannelClosed(f"{self.name}: send on a closed channel")
        peer = self.peer
        if peer is None or peer.inbox.eof or peer._closed:
            raise ChannelClosed(f"{self.name}: peer is closed")
        self._push(bytes(data), True)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.inbox.close()
        if self.peer is not None:
            self._push(_CLOSE, False)

    async def reset(self) -> None:
        self._closed = True
        self.inbox.fail(ChannelReset(f"{self.name}: connection reset"))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._in_flight.clear()
        peer = self.peer
        if peer is not None:
            peer.inbox.fail(ChannelReset(f"{peer.name}: connection reset by peer"))
            peer._in_flight.clear()
            if peer._timer is not None:
                peer._timer.cancel()
                peer._timer = None


def pipe(*, header: LengthPrefix | str | None = "binary2", max_frame: int = DEFAULT_MAX_FRAME,
         latency: float = 0.0, idle_timeout: float | None = None,
         names: tuple[str, str] = ("terminal", "host")) -> tuple[MemoryChannel, MemoryChannel]:
    """Two connected in-memory channels ``(a, b)``: what ``a`` sends, ``b`` receives, and back.

    ``header`` is the length header used only when someone writes raw bytes (fault injection);
    ``latency`` (seconds, on the running loop's clock) delays each frame one way.
    """
    if latency < 0:
        raise ValueError(f"latency must be >= 0, got {latency}")
    a = MemoryChannel(name=names[0], prefix=header, max_frame=max_frame, idle_timeout=idle_timeout,
                      latency=latency)
    b = MemoryChannel(name=names[1], prefix=header, max_frame=max_frame, idle_timeout=idle_timeout,
                      latency=latency)
    a.peer, b.peer = b, a
    return a, b
