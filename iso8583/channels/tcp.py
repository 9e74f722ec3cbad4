"""asyncio TCP channels: :func:`connect` (client) and :func:`serve` (server), length-header framing.

Built on an ``asyncio.Protocol`` feeding a :class:`~iso8583.framing.Deframer`: each received
segment is cut into frames as it arrives, so a message split over many segments (or many messages
in one) is handled without a read loop task per connection. Reading pauses while ``max_queue``
frames are waiting to be read (back-pressure instead of unbounded memory); a length header over
``max_frame`` fails the connection before its body is buffered.

Servers bind ``127.0.0.1`` unless told otherwise and refuse connections beyond ``max_connections``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Awaitable, Callable

from ..framing import DEFAULT_MAX_FRAME, Deframer, LengthPrefix
from .base import Channel, ChannelClosed, ChannelError, ChannelReset

__all__ = ["TcpChannel", "TcpServer", "connect", "serve"]

log = logging.getLogger(__name__)


class _FrameProtocol(asyncio.Protocol):
    def __init__(self, channel: TcpChannel) -> None:
        self.channel = channel
        self.transport: asyncio.Transport | None = None
        self.deframer = Deframer(channel.prefix, channel.max_frame)
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drain_waiter: asyncio.Future[None] | None = None
        self._paused_writing = False
        self._paused_reading = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not self.connected.done():
            self.connected.set_result(None)

    def data_received(self, data: bytes) -> None:
        ch = self.channel
        ch.bytes_received += len(data)
        inbox = ch.inbox
        if inbox.feed(self.deframer, data) is None:   # framing error: good frames queued, then the error
            ch._closed = True
            if self.transport is not None:
                self.transport.abort()
            return
        if len(inbox) >= ch.max_queue and not self._paused_reading and self.transport is not None:
            self._paused_reading = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused_reading and self.transport is not None and not self.transport.is_closing():
            self._paused_reading = False
            self.transport.resume_reading()

    def eof_received(self) -> bool | None:
        if self.deframer.buffered:
            self.channel.inbox.fail(ChannelClosed(
                f"{self.channel.name}: peer closed in the middle of a frame ({self.deframer.buffered} bytes "
                f"of an incomplete frame at offset {self.deframer.offset})"))
        else:
            self.channel.inbox.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        ch = self.channel
        if isinstance(exc, ConnectionResetError):
            ch.inbox.fail(ChannelReset(f"{ch.name}: connection reset by peer"))
        elif exc is not None:
            ch.inbox.fail(ChannelClosed(f"{ch.name}: connection lost: {exc}"))
        else:
            ch.inbox.close()
        if not self.connected.done():
            self.connected.set_exception(ChannelClosed(f"{ch.name}: connection lost before it was made"))
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ChannelClosed(f"{ch.name}: connection lost while sending"))
        ch.lost.set()

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        if not self._paused_writing:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiter = waiter
        try:
            await waiter
        finally:
            self._drain_waiter = None


class TcpChannel(Channel):
    """A TCP connection carrying length-prefixed frames. Use :func:`connect` or :func:`serve`."""

    def __init__(self, *, name: str, prefix: LengthPrefix | str | None = None,
                 max_frame: int = DEFAULT_MAX_FRAME, idle_timeout: float | None = None,
                 max_queue: int = 256) -> None:
        super().__init__(name=name, prefix=prefix, max_frame=max_frame, idle_timeout=idle_timeout)
        self.max_queue = max_queue
        self.bytes_received = 0
        self.bytes_sent = 0
        self.lost = asyncio.Event()
        self.protocol = _FrameProtocol(self)
        self.inbox.on_drained = self.protocol.resume

    @property
    def transport(self) -> asyncio.Transport:
        transport = self.protocol.transport
        if transport is None:
            raise ChannelError(f"{self.name}: not connected")
        return transport

    @property
    def local_address(self) -> tuple[str, int]:
        return self.transport.get_extra_info("sockname")[:2]

    @property
    def peer_address(self) -> tuple[str, int]:
        return self.transport.get_extra_info("peername")[:2]

    def _writable(self) -> asyncio.Transport:
        if self._closed:
            raise ChannelClosed(f"{self.name}: send on a closed channel")
        transport = self.transport
        if transport.is_closing() or self.lost.is_set():
            raise ChannelClosed(f"{self.name}: connection is closed")
        return transport

    async def send(self, frame: bytes) -> None:
        transport = self._writable()
        data = self.prefix.wrap(frame)
        transport.write(data)
        self.bytes_sent += len(data)
        await self.protocol.drain()

    async def send_raw(self, data: bytes) -> None:
        transport = self._writable()
        transport.write(data)
        self.bytes_sent += len(data)
        await self.protocol.drain()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        transport = self.protocol.transport
        if transport is not None and not transport.is_closing():
            transport.close()  # flushes what was written, then FIN
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.lost.wait()

    async def reset(self) -> None:
        """Abort with an RST (SO_LINGER 0): the peer sees ECONNRESET, unsent data is dropped."""
        self._closed = True
        self.inbox.fail(ChannelReset(f"{self.name}: connection reset"))
        transport = self.protocol.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.lost.wait()

    def __repr__(self) -> str:
        try:
            where = f"{self.local_address[1]}->{self.peer_address[0]}:{self.peer_address[1]}"
        except Exception:
            where = "unconnected"
        return f"<TcpChannel {self.name!r} {where} {'closed' if self._closed else 'open'}>"


async def connect(host: str, port: int, *, header: LengthPrefix | str | None = "binary2",
                  max_frame: int = DEFAULT_MAX_FRAME, idle_timeout: float | None = None,
                  timeout: float = 10.0, name: str | None = None, max_queue: int = 256) -> TcpChannel:
    """Open a TCP connection to ``host:port``; raises ChannelError if not connected within ``timeout``."""
    loop = asyncio.get_running_loop()
    channel = TcpChannel(name=name or f"tcp:{host}:{port}", prefix=header, max_frame=max_frame,
                         idle_timeout=idle_timeout, max_queue=max_queue)
    try:
        async with asyncio.timeout(timeout):
            await loop.create_connection(lambda: channel.protocol, host, port)
    except TimeoutError:
        raise ChannelError(f"connect to {host}:{port} timed out after {timeout:g} s") from None
    except OSError as exc:
        raise ChannelClosed(f"connect to {host}:{port} failed: {exc.strerror or exc}") from exc
    sock = channel.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return channel


Handler = Callable[[TcpChannel], Awaitable[None]]


class TcpServer:
    """A listening socket running ``handler(channel)`` per connection, each in its own task."""

    def __init__(self, handler: Handler, *, host: str, port: int, header: LengthPrefix | str | None,
                 max_frame: int, idle_timeout: float | None, max_connections: int, name: str,
                 max_queue: int = 256) -> None:
        self.handler = handler
        self.host = host
        self.requested_port = port
        self.header = header
        self.max_frame = max_frame
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_queue = max_queue
        self.name = name
        self.connections: set[TcpChannel] = set()
        self.accepted = 0
        self.refused = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.sockets[0].getsockname()[1]

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def _factory(self) -> asyncio.Protocol:
        self.accepted += 1
        channel = TcpChannel(name=f"{self.name}#{self.accepted}", prefix=self.header,
                             max_frame=self.max_frame, idle_timeout=self.idle_timeout, max_queue=self.max_queue)
        proto = channel.protocol
        original = proto.connection_made

        def made(transport: asyncio.BaseTransport) -> None:
            original(transport)
            if len(self.connections) >= self.max_connections:
                self.refused += 1
                log.warning("%s: refusing connection beyond max_connections=%d", self.name, self.max_connections)
                transport.abort()
                return
            self.connections.add(channel)
            task = asyncio.get_running_loop().create_task(self._run(channel), name=channel.name)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        proto.connection_made = made  # type: ignore[method-assign]
        return proto

    async def _run(self, channel: TcpChannel) -> None:
        try:
            await self.handler(channel)
        except (ChannelClosed, ChannelError) as exc:
            log.info("%s: %s", channel.name, exc)
        except Exception:
            log.exception("%s: handler failed", channel.name)
        finally:
            self.connections.discard(channel)
            await channel.close()

    async def start(self) -> TcpServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._factory, self.host, self.requested_port,
                                                reuse_address=True)
        return self

    async def close(self) -> None:
        """Stop listening, close every connection and wait for the handlers to finish."""
        if self._server is not None:
            self._server.close()
        for channel in list(self.connections):
            await channel.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def __aenter__(self) -> TcpServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def serve(handler: Handler, host: str = "127.0.0.1", port: int = 0, *,
                header: LengthPrefix | str | None = "binary2", max_frame: int = DEFAULT_MAX_FRAME,
                idle_timeout: float | None = None, max_connections: int = 64,
                name: str | None = None, max_queue: int = 256) -> TcpServer:
    """Listen on ``host:port`` (port 0: any free port, see ``server.port``) and run ``handler``
    for each connection. Use as ``async with await serve(...) as server:``."""
    server = TcpServer(handler, host=host, port=port, header=header, max_frame=max_frame,
                       idle_timeout=idle_timeout, max_connections=max_connections,
                       name=name or f"tcp-server:{host}:{port}", max_queue=max_queue)
    return await server.start()
