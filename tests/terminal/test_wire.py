"""The terminal on the real codec, MACs and PIN blocks, in every dialect it speaks; plus the CLI
over real TCP against a responder on 127.0.0.1 (bounded in count and time)."""

from __future__ import annotations

import asyncio
import os
import random
import sys
from pathlib import Path

import pytest

from iso8583.channels import tcp
from iso8583.channels.memory import pipe
from iso8583.message import Message
from posfault.clock import clock_for, run_virtual
from terminal_sim import Journal, Terminal, TerminalConfig, TerminalError, load_cards
from terminal_sim.link import Link, terminal_master_key

from .wire_responder import WireResponder

CARDS = load_cards()
DIALECTS = ["iso87ascii", "iso87binary", "unionpay_pos"]
ROOT = Path(__file__).resolve().parents[2]


def _terminal(responder: WireResponder, **config) -> Terminal:
    tasks: set = set()

    async def connect():
        a, b = pipe()
        task = asyncio.get_running_loop().create_task(responder.serve(b))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return a

    cfg = TerminalConfig(dialect=responder.dialect, **config)
    return Terminal(cfg, journal=Journal.open(":memory:"), connector=connect, clock=clock_for())


@pytest.mark.parametrize("dialect", DIALECTS)
def test_signed_on_sale_carries_verifiable_mac_and_real_pin_block(dialect: str) -> None:
    responder = WireResponder(dialect)

    async def main() -> None:
        term = _terminal(responder)
        assert (await term.sign_on()).approved
        result = await term.sale(1234, card=CARDS["mag-ok"])
        assert result.approved, result
        assert responder.mac_checks == [True]
        assert responder.pins == ["1234"]
        sale = responder.requests[-1]
        assert sale.mti == "0200" and sale[4] == "000000001234" and 35 in sale and 55 not in sale

    run_virtual(main())


@pytest.mark.parametrize("dialect", DIALECTS)
def test_chip_and_contactless_send_field_55(dialect: str) -> None:
    responder = WireResponder(dialect)

    async def main() -> None:
        term = _terminal(responder)
        chip = await term.sale(500, card=CARDS["chip-ok"])
        ctls = await term.sale(500, card=CARDS["ctls-ok"])
        assert chip.approved and ctls.approved
        chip_req, ctls_req = responder.requests[-2], responder.requests[-1]
        assert chip_req[55] == CARDS["chip-ok"].emv and chip_req[22].startswith("05")
        assert ctls_req[22].startswith("07") and 52 not in ctls_req  # below the CVM limit: no PIN

    run_virtual(main())


@pytest.mark.parametrize("dialect", DIALECTS)
def test_response_with_wrong_mac_is_reversed(dialect: str) -> None:
    responder = WireResponder(dialect)

    async def main() -> None:
        term = _terminal(responder, reversal_max_tries=1)
        await term.sign_on()
        responder.wrong_mac = True
        result = await term.sale(900, card=CARDS["chip-ok"])
        assert result.outcome == "failed"
        rec = term.journal.attempts()[0]
        assert rec.reversal_reason == "A0"
        assert responder.requests[-1].mti == "0400" and responder.requests[-1][39] == "A0"

    run_virtual(main())


@pytest.mark.parametrize("dialect", DIALECTS)
def test_void_refund_preauth_completion_settlement_on_the_wire(dialect: str) -> None:
    responder = WireResponder(dialect)

    async def main() -> None:
        term = _terminal(responder)
        sale = await term.sale(1000, card=CARDS["chip-ok"])
        assert (await term.void(sale.attempt)).approved
        assert (await term.refund(200, card=CARDS["mag-ok"])).approved
        pre = await term.preauth(5000, card=CARDS["chip-ok"])
        assert (await term.completion(pre.attempt, 4000)).approved
        assert (await term.balance(card=CARDS["mag-ok"])).balance == 123456
        assert (await term.settle()).ok
        mtis = [m.mti for m in responder.requests]
        assert mtis[-1] == "0500" and "0220" in mtis and "0100" in mtis
        assert all(responder.mac_checks)

    run_virtual(main())


def test_1993_action_code_dialect_is_refused_with_a_clear_error() -> None:
    with pytest.raises(TerminalError, match="ISO 8583:1993"):
        Link("iso93ascii", tmk=terminal_master_key("tmk"))


@pytest.mark.network
def test_cli_sale_over_tcp(tmp_path: Path) -> None:
    responder = WireResponder("iso87ascii")

    async def main() -> tuple[int, str]:
        async with await tcp.serve(responder.serve, "127.0.0.1", 0, header=responder.wire.prefix,
                                   max_connections=8) as server:
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "posfault", "terminal", "sale", "--amount", "12.34",
                "--host", f"127.0.0.1:{server.port}", "--journal", str(tmp_path / "j.db"), "--timeout", "10",
                cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
            return proc.returncode or 0, out.decode()

    code, out = asyncio.run(main())
    assert code == 0, out
    assert "APPROVED rc=00" in out and "AMOUNT 156 12.34" in out
    assert "6217000000000014" not in out and "621700******0014" in out
    assert [m.mti for m in responder.requests] == ["0800", "0200"]
    assert responder.mac_checks == [True] and responder.pins == ["1234"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_fast_mac_path_equals_the_security_module(dialect: str) -> None:
    """The link MACs in one encode; it must produce and accept exactly what mac.stamp/verify do."""
    from iso8583.security import keys, mac
    from iso8583.transactions import TxnType, make_response, request_base

    responder = WireResponder(dialect)
    link = Link(dialect, tmk=terminal_master_key("tmk"))
    mti, fields = request_base(TxnType.SALE, link.family)
    msg = Message(mti, {n: v for n, v in {**fields, 2: "6217000000000014", 4: "000000001234",
                                          7: "0302090000", 11: "000042", 14: "2812", 22: "051",
                                          41: "10000001", 42: "100000000000001", 49: "156"}.items()
                        if link.supports(n)})
    working = responder.working
    frame = link.pack(msg, working)
    stamped = mac.stamp(msg, link.spec, working.mac_key)
    assert frame == link.wire.pack(stamped)
    decoded, ok = link.unpack(frame, working)
    assert ok is True and decoded == stamped
    response = mac.stamp(make_response(msg, "00", link.family), link.spec, working.mac_key)
    raw = bytearray(link.wire.pack(response))
    assert link.unpack(bytes(raw), working)[1] is True
    raw[-12] ^= 0x01                       # one bit flipped in the MACed part
    try:
        assert link.unpack(bytes(raw), working)[1] is False
    except Exception as exc:               # or the flip made it undecodable: malformed
        assert type(exc).__name__ == "LinkError"
    other = keys.WorkingKeys.generate(16, rng=random.Random(5))
    assert link.unpack(link.wire.pack(response), other)[1] is False


def test_cli_sale_over_a_serial_line(tmp_path: Path) -> None:
    """A pty stands in for the USB/serial cable: STX/LEN/ETX/LRC frames with ACKs, real codec."""
    import termios
    import tty

    from iso8583.channels.serial import FdPort, SerialChannel

    responder = WireResponder("iso87ascii")
    master, slave = os.openpty()
    tty.setraw(slave, termios.TCSANOW)
    device = os.ttyname(slave)

    async def main() -> tuple[int, str]:
        channel = SerialChannel(FdPort(master, "pty-master"), ack_timeout=2.0)
        serving = asyncio.ensure_future(responder.serve(channel))
        try:
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "posfault", "terminal", "sale", "--amount", "7.50", "--card", "mag-ok",
                "--serial", device, "--journal", str(tmp_path / "j.db"), "--timeout", "10",
                cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
            return proc.returncode or 0, out.decode()
        finally:
            serving.cancel()

    try:
        code, out = asyncio.run(main())
    finally:
        os.close(slave)
    assert code == 0, out
    assert "APPROVED rc=00" in out and "AMOUNT 156 7.50" in out
    assert [m.mti for m in responder.requests] == ["0800", "0200"]
    assert responder.mac_checks == [True] and responder.pins == ["1234"]
