"""A direct asyncio TCP front end for the host: the throughput path of ``posfault host serve``.

Same bytes on the wire as ``Host.serve(channel)`` over ``iso8583.channels.tcp`` (the dialect's
length header, TPDU/application header via :class:`iso8583.wire.Wire`), but without a task and a
future per request: frames are decoded and processed as they arrive, and each response is written
from a callback once the group commit holding its postings has returned. Requests that must wait
(issuer_slow) take the ordinary ``await host.handle`` path.

Limits: frames larger than the dialect's ``max_frame`` close the connection, a connection silent
for ``idle_timeout`` seconds is closed, at most ``max_connections`` are served at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial
from time import perf_counter
from typing import TYPE_CHECKING, Any

from iso8583.wire import Wire

if TYPE_CHECKING:
    from .host import Host


#: What ``HostServer(timings=[...])`` records per answered request (a debugging aid for the tail):
#: connections open, then perf_counter() stamps: the read that delivered the frame, processing
#: started (earlier frames of the same read came first), postings staged, group commit started on
#: the loop, COMMIT returned (on the writer thread, if any), the loop learnt of it, response written.
STAGES = ("connections", "arrival", "started", "staged", "commit_started", "commit_done", "commit_seen",
          "written")


#: Most entries each length-header memo of a server keeps (one per distinct frame length seen).
_MEMO_SIZE = 65536


class HostProtocol(asyncio.Protocol):
    """One TCP connection of a :class:`HostServer`."""

    def __init__(self, server: HostServer) -> None:
        self.server = server
        self.host = server.host
        self.wire = server.wire
        self.prefix = server.wire.prefix
        self.header_size = self.prefix.size
        self.max_frame = server.wire.max_frame
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.last_activity = 0.0
        self.idle: asyncio.TimerHandle | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.timings = server.timings
        self.arrival = 0.0

    # -- connection lifecycle ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if len(self.server.connections) >= self.server.max_connections:
            self.server.refused += 1
            transport.abort()
            return
        self.transport = transport
        self.server.connections.add(self)
        self.last_activity = self.loop.time()
        if self.server.idle_timeout is not None:
            self.idle = self.loop.call_later(self.server.idle_timeout, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self.idle is not None:
            self.idle.cancel()
        self.transport = None

    def _check_idle(self) -> None:
        """Close the connection once it has been silent for ``idle_timeout`` (one timer per
        connection, re-armed for the remaining time: no timer churn per frame)."""
        timeout = self.server.idle_timeout
        assert timeout is not None
        silent = self.loop.time() - self.last_activity
        if silent >= timeout:
            self.idle = None
            self._close()
        else:
            self.idle = self.loop.call_later(timeout - silent, self._check_idle)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- frames ----------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self.last_activity = self.loop.time()
        if self.timings is not None:
            self.arrival = perf_counter()
        buffer = self.buffer
        if buffer:
            buffer += data
            data = bytes(buffer)
            buffer.clear()
        size = self.header_size
        end = len(data)
        # a finished background commit is settled between frames; inline commits need no polling
        poll = self.host.poll_commit if self.host.commit_mode == "thread" else None
        lengths = self.server.lengths
        pos = 0
        while end - pos >= size:
            header = data[pos:pos + size]
            length = lengths.get(header)
            if length is None:
                try:
                    length = self.prefix.parse(header)
                except Exception as exc:
                    self.host._emit("decode_error", detail=f"bad length header: {exc}"[:200])
                    self._close()
                    return
                if len(lengths) < _MEMO_SIZE:
                    lengths[header] = length
            if length > self.max_frame:
                self.host._emit("decode_error", detail=f"frame of {length} bytes exceeds max_frame {self.max_frame}")
                self._close()
                return
            stop = pos + size + length
            if stop > end:
                break
            self._frame(data[pos + size:stop])
            if poll is not None:
                poll()
            pos = stop
            if self.transport is None:
                return
        if pos < end:
            buffer += data[pos:]

    def _frame(self, frame: bytes) -> None:
        host = self.host
        if host.crashed:
            return
        try:
            msg, envelope = self.wire.unpack(frame)
        except Exception as exc:  # undecodable: say so (masked) and keep the connection
            host._emit("decode_error", detail=str(exc)[:200])
            return
        body = frame[envelope.size:] if envelope is not None else frame
        if not msg.is_request:
            return
        if host.config.issuer_slow and host.needs_wait(msg):
            task = asyncio.get_running_loop().create_task(self._slow(msg, envelope, body))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            return
        timings = self.timings
        if timings is None:
            # the common case: no closure (and its cells) per request, a C partial of a method
            host.after_commit(partial(self._committed, msg, host.process(msg, body), envelope))
            return
        started = perf_counter()
        response = host.process(msg, body)
        staged = perf_counter()

        def committed(exc: BaseException | None) -> None:
            if exc is not None:
                host._emit("no_commit", mti=msg.mti, stan=msg.get(11), tid=msg.get(41), detail=type(exc).__name__)
                return
            self._send(host.finish(msg, response), envelope)
            if timings is not None:
                timings.append((len(self.server.connections), self.arrival, started, staged, *host.last_commit,
                                perf_counter()))

        host.after_commit(committed)

    def _committed(self, msg: Any, response: Any, envelope: Any, exc: BaseException | None) -> None:
        """The group commit holding ``msg``'s postings returned (or failed: ``exc``): answer it."""
        host = self.host
        if exc is not None:
            host._emit("no_commit", mti=msg.mti, stan=msg.get(11), tid=msg.get(41), detail=type(exc).__name__)
            return
        self._send(host.finish(msg, response), envelope)

    async def _slow(self, msg: Any, envelope: Any, body: bytes) -> None:
        self._send(await self.host.handle(msg, envelope, body), envelope)

    def _send(self, response: Any, envelope: Any) -> None:
        if response is None or self.transport is None or self.transport.is_closing():
            return
        frame = self.wire.pack(response, envelope.reply() if envelope is not None else None)
        headers = self.server.headers
        header = headers.get(len(frame))
        if header is None:
            header = self.prefix.build(len(frame))   # raises for a length the header cannot announce
            if len(headers) < _MEMO_SIZE:
                headers[len(frame)] = header
        self.transport.write(header + frame)


class HostServer:
    """Listens on ``address:port`` (127.0.0.1 by default; port 0 picks a free one)."""

    def __init__(self, host: Host, wire: Wire, *, address: str = "127.0.0.1", port: int = 0,
                 idle_timeout: float | None = 300.0, max_connections: int = 256,
                 timings: list[tuple[float, ...]] | None = None) -> None:
        self.host = host
        self.wire = wire
        self.address = address
        self.requested_port = port
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        #: if a list: one tuple of perf_counter() stamps per answered request, see :data:`STAGES`
        self.timings = timings
        self.connections: set[HostProtocol] = set()
        self.refused = 0
        # the wire's length header, memoized both ways (what ``prefix.parse``/``prefix.build`` give;
        # header bytes that do not parse are never stored): a frame costs two dict lookups
        self.lengths: dict[bytes, int] = {}
        self.headers: dict[int, bytes] = {}
        self._server: asyncio.Server | None = None

    async def start(self) -> HostServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: HostProtocol(self), self.address, self.requested_port,
                                                reuse_address=True)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn._close()
            for task in list(conn.tasks):
                task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()


async def serve_tcp(host: Host, wire: Wire | None = None, address: str = "127.0.0.1", port: int = 0,
                    **kwargs: Any) -> HostServer:
    """Start a :class:`HostServer` for ``host``; ``await server.close()`` to stop."""
    from .security_glue import spec_of

    return await HostServer(host, wire or Wire(spec_of(host)), address=address, port=port, **kwargs).start()
