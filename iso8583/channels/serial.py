"""Serial channels through pyserial: any pyserial URL (``/dev/ttyUSB0``, ``loop://``, ``socket://h:p``,
``rfc2217://h:p``) carrying ISO 8583 frames, for real test terminals on a serial/USB cable.

Two framings:

* ``framing="stx"`` (default): ``STX | LEN(2, BCD) | DATA | ETX | LRC`` per frame, the receiver
  answering ``ACK`` (06) for a good frame and ``NAK`` (15) for a bad LRC/length/ETX. :meth:`send`
  waits for the ACK and retransmits on NAK or after ``ack_timeout`` up to ``retries`` times, then
  raises :class:`ChannelError`. A lost ACK makes the sender retransmit a frame we already
  delivered; with ``dedupe_window`` > 0, an identical frame arriving again within that many
  seconds is ACKed but not delivered twice (off by default: it would also hide genuine
  duplicates, which the terminal/host logic must handle anyway).
* a length header (``framing="binary2"``, ``"ascii4"``...): the same framing as on TCP, no ACK/NAK —
  some terminals just put their TCP byte stream on the serial line.

Reading uses ``loop.add_reader`` when the port has a file descriptor (tty devices, ptys) and
otherwise polls every ``poll_interval`` seconds with non-blocking reads (``loop://``, ``socket://``,
``rfc2217://``). Either way only asyncio is involved, so it also runs on the virtual clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from ..framing import (
    ACK,
    DEFAULT_MAX_FRAME,
    NAK,
    Deframer,
    SerialAck,
    SerialBadFrame,
    SerialDeframer,
    SerialFrame,
    SerialNak,
    build_serial_frame,
    length_prefix,
)
from .base import Channel, ChannelClosed, ChannelError

__all__ = ["FdPort", "SerialChannel", "open_serial"]


class FdPort:
    """A minimal pyserial-like port over a raw file descriptor (e.g. the master side of a pty), so a
    test or a device emulator can sit on the other end of a :class:`SerialChannel`."""

    def __init__(self, fd: int, name: str = "fd") -> None:
        self.fd = fd
        self.name = name
        os.set_blocking(fd, False)
        self.is_open = True

    def fileno(self) -> int:
        return self.fd

    @property
    def in_waiting(self) -> int:
        return 0

    def read(self, size: int = 1) -> bytes:
        try:
            return os.read(self.fd, max(size, 4096))
        except BlockingIOError:
            return b""
        except OSError:  # pty master reads EIO once the slave side is closed
            return b""

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                continue
            view = view[n:]
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self.is_open:
            self.is_open = False
            os.close(self.fd)


class SerialChannel(Channel):
    """A :class:`Channel` over an open pyserial port (or any object with read/write/close)."""

    def __init__(self, port: Any, *, name: str | None = None, framing: str = "stx", ack: bool = True,
                 ack_timeout: float = 1.0, retries: int = 3, max_frame: int = DEFAULT_MAX_FRAME,
                 idle_timeout: float | None = None, poll_interval: float = 0.005,
                 dedupe_window: float = 0.0, serial_length: str = "bcd2") -> None:
        self.stx = framing == "stx"
        super().__init__(name=name or f"serial:{getattr(port, 'name', None) or getattr(port, 'port', '?')}",
                         prefix=None if self.stx else length_prefix(framing), max_frame=max_frame,
                         idle_timeout=idle_timeout)
        self.port = port
        self.ack = ack and self.stx
        self.ack_timeout = ack_timeout
        self.retries = retries
        self.poll_interval = poll_interval
        self.dedupe_window = dedupe_window
        self.serial_length = serial_length
        self.stats = {"frames_in": 0, "frames_out": 0, "naks_sent": 0, "naks_received": 0,
                      "retransmissions": 0, "duplicates_dropped": 0}
        self._stx_deframer = SerialDeframer(serial_length, max_frame) if self.stx else None
        self._deframer = None if self.stx else Deframer(self.prefix, max_frame)
        self._ack_waiter: asyncio.Future[bool] | None = None
        self._send_lock = asyncio.Lock()
        self._last_payload: bytes | None = None
        self._last_payload_at = float("-inf")
        self._loop = asyncio.get_running_loop()
        self._fd: int | None = None
        self._poller: asyncio.Task[None] | None = None
        try:
            self._fd = port.fileno()
        except Exception:
            self._fd = None
        if self._fd is not None:
            self._loop.add_reader(self._fd, self._on_readable)
        else:
            self._poller = self._loop.create_task(self._poll(), name=f"{self.name}:poll")

    # -- reading -----------------------------------------------------------------------------------------
    def _on_readable(self) -> None:
        try:
            data = self.port.read(4096)
        except Exception as exc:
            self._fail(ChannelClosed(f"{self.name}: read failed: {exc}"))
            return
        if data:
            self._feed(data)

    async def _poll(self) -> None:
        while not self._closed:
            try:
                waiting = self.port.in_waiting
                data = self.port.read(waiting or 1) if waiting else self.port.read(4096)
            except Exception as exc:
                self._fail(ChannelClosed(f"{self.name}: read failed: {exc}"))
                return
            if data:
                self._feed(data)
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(self.poll_interval)

    def _fail(self, error: BaseException) -> None:
        self.inbox.fail(error)
        waiter = self._ack_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _feed(self, data: bytes) -> None:
        if self._deframer is not None:
            count = self.inbox.feed(self._deframer, data)
            if count:
                self.stats["frames_in"] += count
            return
        assert self._stx_deframer is not None
        for event in self._stx_deframer.feed(data):
            if isinstance(event, SerialFrame):
                if self.ack:
                    self._answer(ACK)
                now = self._loop.time()
                if (self.ack and self.dedupe_window and event.payload == self._last_payload
                        and now - self._last_payload_at <= self.dedupe_window):
                    self.stats["duplicates_dropped"] += 1
                    self._last_payload_at = now
                    continue
                self._last_payload, self._last_payload_at = event.payload, now
                self.stats["frames_in"] += 1
                self.inbox.put(event.payload)
            elif isinstance(event, SerialBadFrame):
                if self.ack:
                    self.stats["naks_sent"] += 1
                    self._answer(NAK)
            elif isinstance(event, (SerialAck, SerialNak)):
                if isinstance(event, SerialNak):
                    self.stats["naks_received"] += 1
                waiter = self._ack_waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(isinstance(event, SerialAck))

    def _answer(self, byte: int) -> None:
        """ACK/NAK from the reader callback: a port closing under us is not the reader's error."""
        with contextlib.suppress(ChannelClosed):
            self._write(bytes([byte]))

    # -- writing -----------------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self._closed:
            raise ChannelClosed(f"{self.name}: send on a closed channel")
        try:
            self.port.write(data)
            flush = getattr(self.port, "flush", None)
            if flush is not None and self._fd is None:
                flush()
        except Exception as exc:
            raise ChannelClosed(f"{self.name}: write failed: {exc}") from exc

    def wrap(self, frame: bytes) -> bytes:
        if self.stx:
            return build_serial_frame(frame, self.serial_length)
        return self.prefix.wrap(frame)

    async def send(self, frame: bytes) -> None:
        data = self.wrap(frame)
        if not self.ack:
            self._write(data)
            self.stats["frames_out"] += 1
            return
        async with self._send_lock:
            for attempt in range(self.retries + 1):
                if attempt:
                    self.stats["retransmissions"] += 1
                waiter = self._ack_waiter = self._loop.create_future()
                self._write(data)
                try:
                    async with asyncio.timeout(self.ack_timeout):
                        acked = await waiter
                except TimeoutError:
                    acked = False
                finally:
                    self._ack_waiter = None
                if acked:
                    self.stats["frames_out"] += 1
                    return
            raise ChannelError(f"{self.name}: frame of {len(frame)} bytes not acknowledged after "
                               f"{self.retries + 1} attempts (NAK or no ACK within {self.ack_timeout:g} s)")

    async def send_raw(self, data: bytes) -> None:
        self._write(bytes(data))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.inbox.close()
        self._release()

    async def reset(self) -> None:
        """A serial line has no reset: close the port (the peer just stops hearing from us)."""
        self._closed = True
        self.inbox.fail(ChannelClosed(f"{self.name}: port closed (reset)"))
        self._release()

    def _release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
        if self._poller is not None:
            self._poller.cancel()
        with contextlib.suppress(Exception):
            self.port.close()


async def open_serial(url: str, *, baudrate: int = 9600, framing: str = "stx", ack: bool = True,
                      ack_timeout: float = 1.0, retries: int = 3, max_frame: int = DEFAULT_MAX_FRAME,
                      idle_timeout: float | None = None, poll_interval: float = 0.005,
                      dedupe_window: float = 0.0, name: str | None = None,
                      **serial_kwargs: Any) -> SerialChannel:
    """Open ``url`` with ``serial.serial_for_url`` (non-blocking) and wrap it in a SerialChannel."""
    import serial  # pyserial; imported here so the rest of iso8583 does not need it

    try:
        port = serial.serial_for_url(url, baudrate=baudrate, timeout=0, write_timeout=5, **serial_kwargs)
    except (serial.SerialException, ValueError) as exc:
        raise ChannelClosed(f"cannot open serial port {url!r}: {exc}") from exc
    return SerialChannel(port, name=name or f"serial:{url}", framing=framing, ack=ack,
                         ack_timeout=ack_timeout, retries=retries, max_frame=max_frame,
                         idle_timeout=idle_timeout, poll_interval=poll_interval, dedupe_window=dedupe_window)
