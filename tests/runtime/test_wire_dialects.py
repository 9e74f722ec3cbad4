"""Wire with the real codec and dialects; fault rules and pcap export on real ISO 8583 frames."""

from __future__ import annotations

import asyncio
import functools
import operator
import subprocess

import pytest

from iso8583 import Message, load_spec
from iso8583.channels import memory
from iso8583.framing import Envelope, FramingError, Tpdu
from iso8583.wire import Wire
from posfault import faults
from posfault.clock import run_virtual
from posfault.pcap import frames_to_pcap, tshark_options, write_pcap
from posfault.trace import Trace
from tests.conftest import require_tool

DIALECTS = ["iso87ascii", "iso87binary", "iso93ascii", "unionpay_pos"]
PAN = "4761739001010010"


def sale(stan: str = "000001") -> Message:
    return Message("0200", {2: PAN, 3: "000000", 4: "000000010000", 11: stan,
                            41: "10000001", 42: "100000000000001", 49: "156"})


def approval(stan: str = "000001", rc: str = "00") -> Message:
    return Message("0210", {3: "000000", 4: "000000010000", 11: stan, 37: "000000000001", 38: "123456",
                            39: rc, 41: "10000001", 42: "100000000000001"})


APPROVED = {"iso93ascii": "000"}  # ISO 8583:1993 action codes are 3 digits


@pytest.mark.parametrize("dialect", DIALECTS)
def test_pack_unpack_round_trip_and_header(dialect: str) -> None:
    wire = Wire(load_spec(dialect))
    frame = wire.pack(sale())
    msg, env = wire.unpack(frame)
    assert msg == sale()
    assert wire.peek(frame).stan == "000001" and wire.peek(frame).tid == "10000001"
    if dialect == "unionpay_pos":
        assert frame[:11] == bytes.fromhex("6000030000" "603100000000")
        assert env is not None and str(env.reply().tpdu) == "6000000003"
        reply = wire.pack(approval(), env.reply())
        assert reply[:5] == bytes.fromhex("6000000003")
    else:
        assert env is None
    stream = wire.wrap(sale())
    assert wire.prefix.deframer().feed(stream) == [frame]
    assert wire.prefix.kind == {"iso87ascii": "ascii4", "iso93ascii": "ascii4"}.get(dialect, "binary2")


def test_unionpay_envelope_mismatch_and_short_frame_are_clear() -> None:
    wire = Wire(load_spec("unionpay_pos"))
    with pytest.raises(FramingError, match="does not match"):
        wire.pack(sale(), Envelope(Tpdu(), None))
    with pytest.raises(FramingError, match="shorter than"):
        wire.unpack(b"\x60\x00")
    peek = wire.peek(b"\x60\x00\x03\x00\x00" + b"\x60\x31\x00\x00\x00\x00" + b"\xff")
    assert peek.message is None and "DecodeError" in (peek.error or "")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_field_rules_on_real_frames(dialect: str) -> None:
    wire = Wire(load_spec(dialect))
    plan = faults.FaultPlan([
        faults.corrupt(field=4, value="000000099999", direction="to_host", mti="0200", fields={3: "000000"}),
        faults.drop(direction="to_terminal", mti="0210", fields={39: APPROVED.get(dialect, "00")}, nth=1),
    ])
    rc = APPROVED.get(dialect, "00")

    async def main(env):
        term, host, link = faults.faulty_pipe(plan, wire=wire)
        await term.send(wire.pack(sale("000001")))
        seen, _ = wire.unpack(await host.recv())
        await host.send(wire.pack(approval("000001", rc)))
        await host.send(wire.pack(approval("000002", rc)))
        got, _ = wire.unpack(await term.recv())
        await link.stop()
        return seen, got

    seen, got = run_virtual(main)
    assert seen[4] == "000000099999" and seen[2] == PAN
    assert got[11] == "000002"


def _traced(dialect: str) -> Trace:
    wire = Wire(load_spec(dialect))
    trace = Trace(wire=wire)
    plan = faults.FaultPlan([faults.drop(direction="to_terminal", mti="0210", nth=1)])

    async def main(env):
        term, host, _link = faults.faulty_pipe(plan, wire=wire, trace=trace)
        for stan in ("000001", "000002"):
            await term.send(wire.pack(sale(stan)))
            _, envelope = wire.unpack(await host.recv())
            await asyncio.sleep(1.5)
            await host.send(wire.pack(approval(stan), envelope.reply() if envelope else None))
            await asyncio.sleep(0.5)
        await term.close()
        await asyncio.sleep(0.1)

    run_virtual(main)
    return trace


def test_trace_jsonl_has_masked_decoded_fields() -> None:
    trace = _traced("iso87ascii")
    text = "\n".join(trace.jsonl_lines())
    assert PAN not in text and "476173******0010" in text
    recv = [e for e in trace.select(kind="recv")]
    assert [e.get("action") for e in recv] == ["forward", "drop", "forward", "forward"]
    first = trace.export_event(recv[0])
    assert first["mti"] == "0200" and first["fields"]["11"] == "000001"


TSHARK_FIELDS = ["2", "3", "4", "11", "37", "38", "39", "41", "42", "49"]


def _tshark_rows(pcap_path, bcd: bool) -> list[dict[str, str]]:
    tshark = require_tool("tshark")
    cols = ["ip.src", "tcp.srcport", "iso8583.mti"] + [f"iso8583.bit{n}" for n in TSHARK_FIELDS]
    args = [tshark, "-r", str(pcap_path), *tshark_options(bcd=bcd), "-Y", "iso8583", "-T", "fields",
            "-E", "separator=|", *functools.reduce(operator.iadd, (["-e", c] for c in cols), [])]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = []
    for line in out.stdout.splitlines():
        values = line.split("|")
        rows.append({k: v for k, v in zip(["src", "sport", "mti", *TSHARK_FIELDS], values) if v})
    return rows


@pytest.mark.external
@pytest.mark.parametrize(("dialect", "bcd"), [("iso87ascii", False), ("iso87binary", True),
                                              ("unionpay_pos", True)])
def test_tshark_dissector_shows_the_same_fields(tmp_path, dialect: str, bcd: bool) -> None:
    trace = _traced(dialect)
    path = tmp_path / "run.pcap"
    write_pcap(trace, path)
    rows = _tshark_rows(path, bcd)
    # leg A: 0200, 0200, 0210 (second only); leg B: 0200, 0210, 0200, 0210
    assert sorted(r["mti"] for r in rows) == ["0200"] * 4 + ["0210"] * 3
    wire = Wire(load_spec(dialect))
    expected = {"0200": sale("000001"), "0210": approval("000001")}
    for row in rows:
        msg = expected[row["mti"]]
        for n in TSHARK_FIELDS:
            if dialect == "iso87binary" and n == "49":
                # Wireshark's 1987 table reads bit 49 as 3 ASCII characters; this dialect packs the
                # numeric currency code in BCD, so the dissector stops there (unionpay_pos sends ASCII).
                assert row.get(n) is None
                continue
            if int(n) in msg:
                want = msg[int(n)]
                if n == "2":
                    want = PAN[:6] + "000000" + PAN[-4:]   # masked in the pcap
                if n == "11":
                    assert row[n] in ("000001", "000002")
                    continue
                assert row.get(n) == want, (dialect, row["mti"], n, row)
    assert wire is not None


@pytest.mark.external
def test_frames_to_pcap_for_simulation_capture(tmp_path) -> None:
    wire = Wire(load_spec("iso87ascii"))
    data = frames_to_pcap([(0.0, "to_host", wire.pack(sale())), (0.25, "to_terminal", wire.pack(approval()))],
                          dialect="iso87ascii")
    path = tmp_path / "sim.pcap"
    path.write_bytes(data)
    rows = _tshark_rows(path, bcd=False)
    assert [(r["mti"], r.get("39")) for r in rows] == [("0200", None), ("0210", "00")]
    assert rows[0]["2"] == "4761730000000010"


def test_memory_pipe_uses_dialect_header_for_raw_writes() -> None:
    wire = Wire(load_spec("iso87ascii"))

    async def main():
        a, b = memory.pipe(header=wire.prefix)
        data = wire.wrap(sale())
        assert data[:4].isdigit()
        for i in range(0, len(data), 7):
            await a.send_raw(data[i:i + 7])
        return wire.unpack(await b.recv())[0]

    assert run_virtual(main()) == sale()


def test_unionpay_subfield_match_and_corruption() -> None:
    wire = Wire(load_spec("unionpay_pos"))
    plan = faults.FaultPlan([faults.corrupt(field="60.1", value="23", direction="to_host",
                                            fields={"60.1": "22"})])
    sale_up = Message("0200", {3: "000000", 4: "000000010000", 11: "000001", 41: "10000001",
                               42: "100000000000001", 60: {"60.1": "22", "60.2": "000001"}})
    balance = Message("0200", {3: "310000", 11: "000002", 41: "10000001", 42: "100000000000001",
                               60: {"60.1": "01", "60.2": "000001"}})

    async def main(env):
        term, host, link = faults.faulty_pipe(plan, wire=wire)
        await term.send(wire.pack(sale_up))
        await term.send(wire.pack(balance))
        first, env1 = wire.unpack(await host.recv())
        second, _ = wire.unpack(await host.recv())
        await link.stop()
        return first, env1, second

    first, envelope, second = run_virtual(main)
    assert first[60]["60.1"] == "23" and first[60]["60.2"] == "000001"
    assert envelope is not None and str(envelope.tpdu) == "6000030000"   # re-packed in its envelope
    assert second[60]["60.1"] == "01"                                      # not matched, untouched
