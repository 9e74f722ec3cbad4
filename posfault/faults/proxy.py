"""The real fault proxy: a :class:`~posfault.faults.link.FaultLink` between a real terminal (TCP or
serial) and a real host (TCP), like Toxiproxy but acting on whole ISO 8583 messages.

* TCP: listen (``127.0.0.1`` unless told otherwise), and for every accepted connection open one
  upstream connection and run a link between them — UnionPay-style terminals open one connection
  per transaction, so one :class:`~posfault.faults.rules.FaultPlan` is shared across connections
  ("the first 0210" counts across them).
* Serial-to-TCP: the serial port stays open; an upstream connection is (re)opened with backoff and
  a link runs over it until the host hangs up, then the next one starts. Frames the terminal sends
  meanwhile wait in the serial channel.

Every message forwarded, dropped or altered is recorded in the :class:`~posfault.trace.Trace` and,
if ``log`` is given, printed as one masked line (time, connection, direction, MTI, STAN, TID,
action, rule).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from iso8583.channels import tcp
from iso8583.channels.base import Channel, ChannelError
from iso8583.channels.exchange import Backoff, connect_with_backoff
from iso8583.framing import DEFAULT_MAX_FRAME, LengthPrefix
from iso8583.wire import Wire

from ..trace import Trace
from .link import FaultLink
from .rules import FaultPlan

__all__ = ["FaultProxy", "format_event", "parse_hostport"]

log = logging.getLogger(__name__)


def parse_hostport(text: str, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``"127.0.0.1:9000"`` / ``":9000"`` / ``"9000"`` -> (host, port); a clear error otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or default_host
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT with a port 0..65535, got {text!r}")
    return host, int(port)


def format_event(event: dict[str, Any], wire: Wire | None) -> str | None:
    """One masked log line for a network event (``None`` for events not worth a line)."""
    kind = event.get("kind")
    if event.get("actor") != "net" or kind not in ("recv", "undeliverable", "reset", "closed", "error"):
        return None
    stamp = event.get("at") or f"{event.get('t', 0.0):.3f}"
    parts = [str(stamp), f"conn={event.get('conn', '-')}", str(event.get("direction", "-"))]
    frame = event.get("frame")
    if isinstance(frame, (bytes, bytearray)):
        peek = wire.peek(bytes(frame)) if wire is not None else None
        if peek is not None and peek.message is not None:
            parts += [peek.message.mti, f"stan={peek.message.get(11, '-')}", f"tid={peek.message.get(41, '-')}"]
        elif peek is not None:
            parts.append("undecodable")
        parts.append(f"{len(frame)}B")
    if kind == "recv":
        parts.append(str(event.get("action", "forward")).upper())
        if event.get("rules"):
            parts.append("rule=" + ",".join(repr(r) for r in event["rules"]))
    else:
        parts.append(kind.upper())
        if event.get("detail"):
            parts.append(str(event["detail"]))
    from iso8583.mask import scrub_text

    return scrub_text(" ".join(parts))


class FaultProxy:
    """Accept terminals (TCP ``listen`` or a ``serial`` channel factory), forward to ``upstream``.

    ``await proxy.start()`` then ``proxy.port``; ``await proxy.close()``. ``links`` lists the links
    run so far (their ``counts`` say what happened).
    """

    def __init__(self, upstream: tuple[str, int], plan: FaultPlan | None = None, *,
                 listen: tuple[str, int] | None = ("127.0.0.1", 0), wire: Wire | None = None,
                 trace: Trace | None = None, header: LengthPrefix | str | None = None,
                 max_frame: int | None = None, idle_timeout: float | None = 300.0,
                 max_connections: int = 64, connect_timeout: float = 10.0,
                 log_line: Callable[[str], None] | None = None) -> None:
        self.upstream = upstream
        self.plan = plan if plan is not None else FaultPlan()
        self.listen = listen
        self.wire = wire
        self.trace = trace if trace is not None else Trace(wire=wire)
        self.header = header or (wire.prefix if wire is not None else "binary2")
        self.max_frame = max_frame or (wire.max_frame if wire is not None else DEFAULT_MAX_FRAME)
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.links: list[FaultLink] = []
        self.failed_upstream = 0
        self._server: tcp.TcpServer | None = None
        self._serial_task: asyncio.Task[None] | None = None
        if log_line is not None:
            self.trace.subscribe(lambda e: (line := format_event(e, wire)) and log_line(line))

    @property
    def port(self) -> int:
        assert self._server is not None, "proxy not listening on TCP"
        return self._server.port

    async def _open_upstream(self) -> Channel:
        host, port = self.upstream
        return await tcp.connect(host, port, header=self.header, max_frame=self.max_frame,
                                 idle_timeout=self.idle_timeout, timeout=self.connect_timeout,
                                 name=f"upstream:{host}:{port}")

    async def _handle(self, terminal: Channel) -> None:
        try:
            upstream = await self._open_upstream()
        except ChannelError as exc:
            self.failed_upstream += 1
            self.trace({"actor": "net", "kind": "error", "direction": "to_host",
                        "detail": f"upstream unavailable: {exc}"})
            await terminal.reset()
            return
        link = FaultLink(terminal, upstream, self.plan, wire=self.wire, trace=self.trace,
                         name=f"proxy#{len(self.links) + 1}")
        self.links.append(link)
        await link.run()

    async def start(self) -> FaultProxy:
        """Start listening for TCP terminals."""
        assert self.listen is not None
        host, port = self.listen
        self._server = await tcp.serve(self._handle, host, port, header=self.header, max_frame=self.max_frame,
                                       idle_timeout=self.idle_timeout, max_connections=self.max_connections,
                                       name="proxy")
        return self

    def start_serial(self, terminal: Channel, *, backoff: Backoff | None = None) -> asyncio.Task[None]:
        """Serve one serial terminal channel: reconnect upstream whenever the host hangs up."""
        self._serial_task = asyncio.get_running_loop().create_task(self._serve_serial(terminal, backoff),
                                                                   name="proxy:serial")
        return self._serial_task

    async def _serve_serial(self, terminal: Channel, backoff: Backoff | None) -> None:
        persistent = _KeepOpen(terminal)
        while not terminal.closed:
            upstream = await connect_with_backoff(self._open_upstream, backoff=backoff or Backoff(),
                                                  on_retry=lambda n, e, d: log.warning(
                                                      "upstream attempt %d failed (%s); retrying in %.1fs", n, e, d))
            link = FaultLink(persistent, upstream, self.plan, wire=self.wire, trace=self.trace,
                             name=f"serial#{len(self.links) + 1}")
            self.links.append(link)
            await link.run()
            if persistent.reset_requested:
                persistent.reset_requested = False

    async def serve_forever(self) -> None:
        waits = []
        if self._server is not None:
            waits.append(asyncio.ensure_future(self._server.serve_forever()))
        if self._serial_task is not None:
            waits.append(self._serial_task)
        if waits:
            await asyncio.gather(*waits)

    async def close(self) -> None:
        if self._serial_task is not None:
            self._serial_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._serial_task
        if self._server is not None:
            await self._server.close()

    async def __aenter__(self) -> FaultProxy:
        if self.listen is not None and self._server is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _KeepOpen(Channel):
    """The serial side of a serial-to-TCP proxy: a link ending (host hung up, or a reset fault)
    must not close the port the terminal is plugged into."""

    def __init__(self, inner: Channel) -> None:
        super().__init__(name=inner.name, prefix=inner.prefix, max_frame=inner.max_frame,
                         idle_timeout=None)
        self.inner = inner
        self.reset_requested = False

    @property
    def closed(self) -> bool:
        return False

    async def recv(self, timeout: float | None = ...) -> bytes:  # type: ignore[override]
        return await self.inner.recv(timeout=None)

    async def send(self, frame: bytes) -> None:
        await self.inner.send(frame)

    async def send_raw(self, data: bytes) -> None:
        await self.inner.send_raw(data)

    def wrap(self, frame: bytes) -> bytes:
        return self.inner.wrap(frame)

    async def close(self) -> None:
        return None

    async def reset(self) -> None:
        self.reset_requested = True
