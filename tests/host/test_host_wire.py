"""The host on the wire: sign-on key delivery, PIN verification, MACs, over a memory pipe with the codec."""

from __future__ import annotations

import asyncio

import pytest
from host_msgs import PAN, make_host, request, sale

from host_sim import HostConfig
from host_sim.ledger import card_account
from iso8583.channels import memory
from iso8583.security import mac, pin
from iso8583.security.keys import WorkingKeys, load_test_keys
from iso8583.transactions import TxnType
from iso8583.wire import Wire

FAMILIES = [("iso87ascii", "iso87"), ("unionpay_pos", "unionpay"), ("iso87binary", "iso87")]


class Terminal:
    """The smallest terminal that speaks through the wire (the real one lives in terminal_sim)."""

    def __init__(self, host, dialect: str) -> None:
        self.wire = Wire(dialect)
        self.spec = self.wire.spec
        self.term, self.host_side = memory.pipe(header=self.wire.prefix)
        self.server = asyncio.ensure_future(host.serve(self.host_side))
        self.keys: WorkingKeys | None = None

    async def send(self, msg):
        await self.term.send(self.wire.pack(msg))
        return self.wire.unpack(await asyncio.wait_for(self.term.recv(), 5))[0]

    async def close(self):
        await self.term.close()
        await asyncio.wait_for(self.server, 5)


def with_pin(msg, keys: WorkingKeys, digits: str):
    msg[52] = pin.encrypt(digits, msg[2], keys.pin_key, fmt=0)
    return msg


@pytest.mark.parametrize(("dialect", "family"), FAMILIES)
def test_sign_on_pin_and_mac_over_the_wire(dialect: str, family: str) -> None:
    host = make_host(dialect, config=HostConfig(mac_required=True, pin_tries=3))
    tmk = load_test_keys().tmk

    async def go():
        t = Terminal(host, dialect)
        signed = await t.send(request(TxnType.SIGN_ON, family, stan=1, amount=None))
        assert signed[39] == "00"
        keys = WorkingKeys.unpack(signed[62], tmk)           # KCVs checked: both sides agree on keys
        good = mac.stamp(with_pin(sale(2, 1000, family), keys, "1234"), t.spec, keys.mac_key)
        assert (await t.send(good))[39] == "00"
        unsigned = with_pin(sale(3, 1000, family, when="1123100003"), keys, "1234")
        assert (await t.send(unsigned))[39] == ("A0" if family == "unionpay" else "96")
        tampered = mac.stamp(with_pin(sale(4, 1000, family, when="1123100004"), keys, "1234"), t.spec,
                             keys.mac_key)
        tampered[4] = "000000009999"
        assert (await t.send(tampered))[39] == ("A0" if family == "unionpay" else "96")
        rcs = []
        for i in range(5, 8):
            wrong = mac.stamp(with_pin(sale(i, 1000, family, when=f"11231000{i:02d}"), keys, "9999"), t.spec,
                              keys.mac_key)
            rcs.append((await t.send(wrong))[39])
        assert rcs == ["55", "55", "75"]
        right_after = mac.stamp(with_pin(sale(9, 1000, family, when="1123100009"), keys, "1234"), t.spec,
                                keys.mac_key)
        assert (await t.send(right_after))[39] == "75"      # locked until the issuer resets the tries
        await t.close()

    asyncio.run(go())
    assert host.ledger.balance(card_account(PAN)) == 499000
    host.ledger.check_conservation()


def test_undecodable_frame_does_not_kill_the_connection() -> None:
    host = make_host()

    async def go():
        t = Terminal(host, "iso87ascii")
        await t.term.send(b"02007")
        ok = await t.send(sale(1, 100))
        await t.close()
        return ok

    assert asyncio.run(go())[39] == "00"


def test_echo_in_both_families() -> None:
    for dialect, family in FAMILIES[:2]:
        host = make_host(dialect)

        async def go(host=host, dialect=dialect, family=family):
            t = Terminal(host, dialect)
            r = await t.send(request(TxnType.ECHO, family, stan=1, amount=None))
            await t.close()
            return r

        assert asyncio.run(go())[39] == "00"


def test_fast_tcp_front_end_unionpay_with_mac() -> None:
    """The direct TCP front end (posfault host serve) speaks TPDU + header and verifies MACs over the
    received bytes."""
    from host_sim.tcp import serve_tcp

    host = make_host("unionpay_pos", config=HostConfig(mac_required=True))
    tmk = load_test_keys().tmk

    async def go():
        server = await serve_tcp(host)
        wire = Wire("unionpay_pos")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)

        async def send(msg):
            writer.write(wire.prefix.wrap(wire.pack(msg)))
            header = await reader.readexactly(wire.prefix.size)
            frame = await reader.readexactly(wire.prefix.parse(header))
            last.append(frame[wire.envelope.size:])
            return wire.unpack(frame)

        last: list[bytes] = []
        signed, env = await send(request(TxnType.SIGN_ON, "unionpay", stan=1, amount=None))
        keys = WorkingKeys.unpack(signed[62], tmk)
        ok, _ = await send(mac.stamp(with_pin(sale(2, 1000, "unionpay"), keys, "1234"), wire.spec, keys.mac_key))
        assert mac.verify(last[-1], wire.spec, keys.mac_key)     # the answer is MACed on this path too
        bad = mac.stamp(sale(3, 1000, "unionpay"), wire.spec, keys.mac_key)
        bad[64] = bytes(8)
        refused, _ = await send(bad)
        writer.close()
        await server.close()
        return env, ok, refused

    env, ok, refused = asyncio.run(asyncio.wait_for(go(), 20))
    assert env is not None and ok[39] == "00" and refused[39] == "A0"
    assert host.ledger.balance(card_account(PAN)) == 499000
