"""Serial channels: loop://, a pseudo-terminal pair, STX/LEN/ETX/LRC frames with ACK/NAK."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time

import pytest

from iso8583.channels import ChannelError
from iso8583.channels.serial import FdPort, SerialChannel, open_serial
from iso8583.framing import ACK, NAK, build_serial_frame
from tests.conftest import require_tool


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


@contextlib.asynccontextmanager
async def pty_pair(**kw):
    """(device side opened through pyserial by path, raw master side as a SerialChannel)."""
    master_fd, slave_fd = os.openpty()
    device = await open_serial(os.ttyname(slave_fd), **kw)
    os.close(slave_fd)
    master = SerialChannel(FdPort(master_fd, "pty-master"), **kw)
    try:
        yield device, master
    finally:
        await device.close()
        await master.close()


def test_loop_url_round_trip_with_ack() -> None:
    async def main():
        ch = await open_serial("loop://", ack_timeout=0.5)
        frames = [b"0200 first", b"0200 second", bytes(range(256))]
        for frame in frames:
            await ch.send(frame)
        got = [await ch.recv(timeout=2) for _ in frames]
        await ch.close()
        return got, ch.stats

    got, stats = run(main())
    assert got == [b"0200 first", b"0200 second", bytes(range(256))]
    assert stats["frames_out"] == 3 and stats["retransmissions"] == 0


def test_pty_pair_both_directions() -> None:
    async def main():
        async with pty_pair(ack_timeout=0.5) as (device, master):
            await device.send(b"request from terminal")
            first = await master.recv(timeout=2)
            await master.send(b"response from host")
            second = await device.recv(timeout=2)
            return first, second

    assert run(main()) == (b"request from terminal", b"response from host")


def test_bad_lrc_gets_nak_and_good_frame_gets_ack() -> None:
    async def main():
        master_fd, slave_fd = os.openpty()
        device = await open_serial(os.ttyname(slave_fd))
        os.close(slave_fd)
        raw = FdPort(master_fd)
        bad = bytearray(build_serial_frame(b"hello"))
        bad[-1] ^= 0xFF
        raw.write(bytes(bad) + build_serial_frame(b"world"))
        frame = await device.recv(timeout=2)
        await asyncio.sleep(0.05)
        answers = raw.read(16)
        await device.close()
        raw.close()
        return frame, answers, device.stats

    frame, answers, stats = run(main())
    assert frame == b"world"
    assert answers == bytes([NAK, ACK])
    assert stats["naks_sent"] == 1


def test_sender_retransmits_after_nak_and_gives_up_without_ack() -> None:
    async def main():
        master_fd, slave_fd = os.openpty()
        device = await open_serial(os.ttyname(slave_fd), ack_timeout=0.1, retries=2)
        os.close(slave_fd)
        raw = FdPort(master_fd)
        sending = asyncio.create_task(device.send(b"sale"))
        await asyncio.sleep(0.03)
        first = raw.read(64)
        raw.write(bytes([NAK]))               # host NAKs the first copy
        await asyncio.sleep(0.03)
        second = raw.read(64)
        raw.write(bytes([ACK]))
        await sending
        retransmissions = device.stats["retransmissions"]
        started = time.monotonic()
        with pytest.raises(ChannelError, match="not acknowledged after 3 attempts"):
            await device.send(b"nobody listens")  # no ACK at all
        waited = time.monotonic() - started
        await device.close()
        raw.close()
        return first, second, retransmissions, waited

    first, second, retransmissions, waited = run(main())
    assert first == second == build_serial_frame(b"sale")
    assert retransmissions == 1
    assert 0.25 <= waited < 2


def test_lost_ack_retransmission_is_not_delivered_twice() -> None:
    async def main():
        master_fd, slave_fd = os.openpty()
        device = await open_serial(os.ttyname(slave_fd), dedupe_window=5)
        os.close(slave_fd)
        raw = FdPort(master_fd)
        frame = build_serial_frame(b"0200 once")
        raw.write(frame)
        raw.write(frame)                       # the sender did not see our ACK and sent it again
        raw.write(build_serial_frame(b"0200 next"))
        got = [await device.recv(timeout=2), await device.recv(timeout=2)]
        await device.close()
        raw.close()
        return got, device.stats

    got, stats = run(main())
    assert got == [b"0200 once", b"0200 next"]
    assert stats["duplicates_dropped"] == 1


def test_length_header_framing_over_serial() -> None:
    async def main():
        async with pty_pair(framing="ascii4") as (device, master):
            await device.send(b"plain stream")
            return await master.recv(timeout=2)

    assert run(main()) == b"plain stream"


def test_unknown_port_is_a_clear_error() -> None:
    async def main():
        with pytest.raises(Exception, match="cannot open serial port"):
            await open_serial("/dev/does-not-exist-posfault")

    run(main())


def test_socat_pty_pair() -> None:
    socat = require_tool("socat")

    async def main(tmp: str):
        a, b = f"{tmp}/ttyA", f"{tmp}/ttyB"
        proc = subprocess.Popen([socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                if os.path.exists(a) and os.path.exists(b):
                    break
                await asyncio.sleep(0.02)
            left = await open_serial(a, ack_timeout=0.5)
            right = await open_serial(b, ack_timeout=0.5)
            await left.send(b"over socat")
            got = await right.recv(timeout=3)
            await left.close()
            await right.close()
            return got
        finally:
            proc.terminate()
            proc.wait(5)

    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        assert run(main(tmp)) == b"over socat"
