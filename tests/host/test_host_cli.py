"""`posfault host` on the command line: serving a terminal on a serial line (a pseudo-terminal
standing in for the USB cable) in the UnionPay dialect, over TCP in the ISO dialect, then settle
and report on the same ledger file."""

from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
import sys

import pytest
from host_msgs import request, sale

from iso8583.channels.serial import FdPort, SerialChannel
from iso8583.transactions import TxnType
from iso8583.wire import Wire

ROOT = pathlib.Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

pytestmark = pytest.mark.network


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "posfault", "host", *args], capture_output=True, text=True,
                          cwd=ROOT, env=ENV, timeout=timeout)


def test_serial_terminal_on_a_pty_in_unionpay(tmp_path: pathlib.Path) -> None:
    if not hasattr(os, "openpty"):
        pytest.skip("no pseudo-terminals on this platform")
    master_fd, slave_fd = os.openpty()
    db = tmp_path / "host.db"
    proc = subprocess.Popen([sys.executable, "-m", "posfault", "host", "serve", "--serial", os.ttyname(slave_fd),
                             "--baud", "115200", "--dialect", "unionpay_pos", "--ledger", str(db),
                             "--max-seconds", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=ENV)
    try:
        assert proc.stdout is not None
        assert "serving unionpay_pos on serial" in proc.stdout.readline()
        os.close(slave_fd)

        async def terminal():
            wire = Wire("unionpay_pos")
            ch = SerialChannel(FdPort(master_fd, "pty-master"), ack_timeout=2.0)
            try:
                await ch.send(wire.pack(sale(1, 2500, "unionpay")))
                first = wire.unpack(await ch.recv(timeout=10))
                await ch.send(wire.pack(request(TxnType.BALANCE, "unionpay", stan=2, amount=None)))
                second = wire.unpack(await ch.recv(timeout=10))
            finally:
                await ch.close()
            return first, second

        (sale_response, envelope), (balance, _) = asyncio.run(asyncio.wait_for(terminal(), 30))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert sale_response.mti == "0210" and sale_response[39] == "00" and envelope is not None
    assert balance[39] == "00" and balance[54].endswith(f"{500000 - 2500:012d}")
    report = _cli("report", "--ledger", str(db))
    assert report.returncode == 0 and "conservation: ok" in report.stdout
    assert "6217000000000014" not in report.stdout          # PANs masked in reports


def test_tcp_serve_then_settle_and_report(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "host.db"
    proc = subprocess.Popen([sys.executable, "-m", "posfault", "host", "serve", "--listen", "127.0.0.1:0",
                             "--ledger", str(db), "--max-seconds", "20"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        port = int(line.split("127.0.0.1:")[1].split()[0])

        async def terminal():
            wire = Wire("iso87ascii")
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            out = []
            for i in (1, 2):
                writer.write(wire.prefix.wrap(wire.pack(sale(i, 1000 * i, when=f"112310000{i}"))))
                header = await reader.readexactly(wire.prefix.size)
                out.append(wire.unpack(await reader.readexactly(wire.prefix.parse(header)))[0])
            writer.close()
            return out

        responses = asyncio.run(asyncio.wait_for(terminal(), 20))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert [r[39] for r in responses] == ["00", "00"]
    settled = _cli("settle", "--ledger", str(db), "--day", "2099-01-01", "--payout-at", "2099-01-02T09:00")
    assert settled.returncode == 0, settled.stderr
    assert "1 settlement(s)" in settled.stdout
    report = _cli("report", "--ledger", str(db), "--json")
    assert report.returncode == 0
    import json
    data = json.loads(report.stdout)
    assert {t["status"] for t in data["transactions"]} == {"approved"}
    shop = next(p for p in data["payouts"] if p["mid"] == "100000000000001")
    assert shop["credited"] == 3000 and shop["pending"] == 0
    assert "6217000000000014" not in report.stdout          # PANs masked in reports
