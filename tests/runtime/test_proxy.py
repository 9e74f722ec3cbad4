"""The real proxy: in-process FaultProxy over TCP and serial, and the `posfault proxy` command."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest

from iso8583.channels import ChannelReset, tcp
from iso8583.channels.serial import FdPort, SerialChannel, open_serial
from posfault import faults
from posfault.faults.proxy import FaultProxy, parse_hostport
from tests.conftest import require_tool

from .harness import TEXT_WIRE, msg, unpack

pytestmark = pytest.mark.network
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def answering_host(responses: list[str] | None = None):
    """A host that answers every request with MTI+10 and echoes 11/41 (one connection per txn)."""
    async def handler(ch):
        async for frame in ch:
            m = unpack(frame)
            await ch.send(msg(m.mti[:2] + "1" + m.mti[3], int(m[11]), m[41], f39="00"))
    return await tcp.serve(handler, name="host")


def test_parse_hostport() -> None:
    assert parse_hostport("127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert parse_hostport(":9000") == ("127.0.0.1", 9000)
    assert parse_hostport("[::1]:80") == ("::1", 80)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_hostport("localhost:http")


def test_plan_counts_across_connections_and_log_is_masked() -> None:
    lines: list[str] = []

    async def main():
        host = await answering_host()
        plan = faults.FaultPlan([faults.drop(direction="to_terminal", mti="0210", nth=2)])
        async with FaultProxy(("127.0.0.1", host.port), plan, wire=TEXT_WIRE, log_line=lines.append) as proxy:
            results = []
            for stan in (1, 2, 3):                    # one connection per transaction
                ch = await tcp.connect("127.0.0.1", proxy.port)
                await ch.send(msg("0200", stan, f2="4761739001010010"))
                try:
                    results.append(unpack(await ch.recv(timeout=0.3))[11])
                except TimeoutError:
                    results.append("lost")
                await ch.close()
            await asyncio.sleep(0.05)
        await host.close()
        return results, proxy.trace

    results, trace = asyncio.run(asyncio.wait_for(main(), 20))
    assert results == ["000001", "lost", "000003"]
    assert any("0210" in line and "DROP" in line for line in lines)
    assert not any("4761739001010010" in line for line in lines)
    assert {e["conn"] for e in trace.select(kind="recv")} == {0, 1, 2}


def test_upstream_down_resets_terminal() -> None:
    async def main():
        probe = await tcp.serve(lambda ch: asyncio.sleep(0))
        dead_port = probe.port
        await probe.close()
        async with FaultProxy(("127.0.0.1", dead_port), connect_timeout=1) as proxy:
            ch = await tcp.connect("127.0.0.1", proxy.port)
            with pytest.raises(ChannelReset):
                await ch.recv(timeout=5)
            return proxy.failed_upstream

    assert asyncio.run(asyncio.wait_for(main(), 20)) == 1


def test_serial_terminal_through_proxy_to_tcp_host_reconnecting() -> None:
    async def main():
        host = await answering_host()
        master_fd, slave_fd = os.openpty()
        proxy = FaultProxy(("127.0.0.1", host.port), faults.FaultPlan([faults.duplicate(direction="to_terminal",
                                                                                          nth=2)]),
                           listen=None, wire=TEXT_WIRE)
        serial_side = await open_serial(os.ttyname(slave_fd))
        os.close(slave_fd)
        proxy.start_serial(serial_side)
        terminal = SerialChannel(FdPort(master_fd, "terminal"))
        got = []
        for stan in (1, 2):
            await terminal.send(msg("0200", stan))
            got.append(unpack(await terminal.recv(timeout=3))[11])
        got.append(unpack(await terminal.recv(timeout=3))[11])   # the duplicated second response
        await proxy.close()
        await terminal.close()
        await host.close()
        return got

    assert asyncio.run(asyncio.wait_for(main(), 20)) == ["000001", "000002", "000002"]


def test_posfault_proxy_command(tmp_path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(textwrap.dedent("""
        seed = 3
        [[rule]]
        name = "lose first answer"
        action = "drop"
        direction = "to_terminal"
        nth = 1
    """))
    trace_path = tmp_path / "trace.jsonl"

    async def main():
        host = await answering_host()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "posfault", "proxy", "--listen", "127.0.0.1:0",
            "--upstream", f"127.0.0.1:{host.port}", "--rules", str(rules), "--header", "binary2",
            "--trace", str(trace_path), "--duration", "20", cwd=ROOT,
            stderr=asyncio.subprocess.PIPE)
        first = (await asyncio.wait_for(proc.stderr.readline(), 10)).decode()
        port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", first).group(1))
        results = []
        for stan in (1, 2):
            ch = await tcp.connect("127.0.0.1", port)
            await ch.send(msg("0200", stan))
            try:
                results.append(unpack(await ch.recv(timeout=0.5))[11])
            except TimeoutError:
                results.append("lost")
            await ch.close()
        proc.send_signal(signal.SIGTERM)       # what Ctrl-C / a service manager does: flush and exit 0
        rest = (await proc.stderr.read()).decode()
        await proc.wait()
        await host.close()
        return results, first + rest, proc.returncode

    results, log, code = asyncio.run(asyncio.wait_for(main(), 30))
    assert code == 0, log
    assert results == ["lost", "000002"]
    assert "DROP" in log and "rule 'lose first answer': matched 2, fired 1" in log
    events = [json.loads(line) for line in trace_path.read_text().splitlines()]
    assert [e["action"] for e in events if e["kind"] == "recv" and e["direction"] == "to_terminal"] == ["drop", "forward"]


def test_proxy_command_rejects_bad_rules(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\naction = "vanish"\n')
    proc = subprocess.run([sys.executable, "-m", "posfault", "proxy", "--listen", "127.0.0.1:0",
                           "--upstream", "127.0.0.1:1", "--rules", str(bad)], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "unknown action 'vanish'" in proc.stderr


def test_posfault_proxy_command_serial_to_tcp(tmp_path) -> None:
    async def main():
        host = await answering_host()
        master_fd, slave_fd = os.openpty()
        slave_path = os.ttyname(slave_fd)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "posfault", "proxy", "--serial", slave_path,
            "--upstream", f"127.0.0.1:{host.port}", "--header", "binary2", "--duration", "20", cwd=ROOT,
            stderr=asyncio.subprocess.PIPE)
        first = (await asyncio.wait_for(proc.stderr.readline(), 10)).decode()
        os.close(slave_fd)
        terminal = SerialChannel(FdPort(master_fd, "terminal"), ack_timeout=1.0)
        await terminal.send(msg("0200", 7))
        answer = unpack(await terminal.recv(timeout=5))
        proc.send_signal(signal.SIGTERM)
        rest = (await proc.stderr.read()).decode()
        await proc.wait()
        await terminal.close()
        await host.close()
        return first, answer, rest, proc.returncode

    first, answer, log, code = asyncio.run(asyncio.wait_for(main(), 30))
    assert "serial /dev/" in first and code == 0, log
    assert answer.mti == "0210" and answer[11] == "000007"
    assert "FORWARD" in log


@pytest.mark.external
def test_proxy_command_with_dialect_writes_masked_trace_and_pcap_tshark_reads(tmp_path) -> None:
    tshark = require_tool("tshark")
    from iso8583 import Message, load_spec
    from iso8583.wire import Wire
    from posfault.pcap import tshark_options

    wire = Wire(load_spec("iso87ascii"))
    trace_path, pcap_path = tmp_path / "run.jsonl", tmp_path / "run.pcap"

    async def host_handler(ch):
        async for frame in ch:
            m, _ = wire.unpack(frame)
            await ch.send(wire.pack(Message("0210", {3: m[3], 4: m[4], 11: m[11], 39: "00", 41: m[41]})))

    async def main():
        host = await tcp.serve(host_handler, header=wire.prefix)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "posfault", "proxy", "--listen", "127.0.0.1:0", "--upstream",
            f"127.0.0.1:{host.port}", "--dialect", "iso87ascii", "--rules",
            os.path.join(ROOT, "fixtures", "faults", "lost_approval.toml"), "--trace", str(trace_path),
            "--pcap", str(pcap_path), "--duration", "20", cwd=ROOT, stderr=asyncio.subprocess.PIPE)
        first = (await asyncio.wait_for(proc.stderr.readline(), 10)).decode()
        port = int(re.search(r":(\d+),", first).group(1))
        answers = []
        for stan in ("000001", "000002"):
            ch = await tcp.connect("127.0.0.1", port, header=wire.prefix)
            await ch.send(wire.pack(Message("0200", {2: "4761739001010010", 3: "000000", 4: "000000010000",
                                                     11: stan, 41: "10000001"})))
            try:
                answers.append(wire.unpack(await ch.recv(timeout=0.5))[0][11])
            except TimeoutError:
                answers.append("lost")
            await ch.close()
        proc.send_signal(signal.SIGTERM)
        log = (await proc.stderr.read()).decode()
        await proc.wait()
        await host.close()
        return answers, first + log

    answers, log = asyncio.run(asyncio.wait_for(main(), 40))
    assert answers == ["lost", "000002"], log
    assert "0210 stan=000001 tid=10000001" in log and "DROP" in log
    trace_text = trace_path.read_text()
    assert "4761739001010010" not in trace_text and "476173******0010" in trace_text
    out = subprocess.run([tshark, "-r", str(pcap_path), *tshark_options(), "-Y", "iso8583", "-T", "fields",
                          "-e", "ip.src", "-e", "iso8583.mti", "-e", "iso8583.bit2", "-e", "iso8583.bit11",
                          "-e", "iso8583.bit39"], capture_output=True, text=True, timeout=60)
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    to_terminal = [r for r in rows if r[1] == "0210" and r[0] == "10.83.0.2"]   # proxy -> terminal leg
    from_host = [r for r in rows if r[1] == "0210" and r[0] == "10.83.0.3"]     # host -> proxy leg
    assert [r[3] for r in to_terminal] == ["000002"]
    assert sorted(r[3] for r in from_host) == ["000001", "000002"]
    assert {r[2] for r in rows if r[1] == "0200"} == {"4761730000000010"}
