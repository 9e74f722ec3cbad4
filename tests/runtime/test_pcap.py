"""pcap export: legs, timestamps, masking, determinism; and the real tshark ISO 8583 dissector."""

from __future__ import annotations

import asyncio
import itertools
import struct

from posfault import faults
from posfault.pcap import mask_frame, write_pcap
from posfault.trace import Trace

from .harness import TEXT_WIRE, msg, run_on


def read_pcap(data: bytes) -> list[dict]:
    """Minimal reader: (time, src ip, src port, dst port, tcp flags, payload) per packet."""
    magic, _, _, _, _, _, linktype = struct.unpack("<IHHiIII", data[:24])
    assert magic == 0xA1B2C3D4 and linktype == 1
    out, pos = [], 24
    while pos < len(data):
        sec, usec, incl, _orig = struct.unpack("<IIII", data[pos:pos + 16])
        frame = data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        ip = frame[14:34]
        ihl = (ip[0] & 0x0F) * 4
        tcp = frame[14 + ihl:14 + ihl + 20]
        sport, dport, seq, _ack, off, flags = struct.unpack("!HHIIBB", tcp[:14])
        out.append({"t": sec + usec / 1e6, "src": ".".join(map(str, ip[12:16])), "sport": sport,
                    "dport": dport, "flags": flags, "seq": seq, "payload": frame[14 + ihl + (off >> 4) * 4:]})
    return out


def _run(plan: faults.FaultPlan) -> Trace:
    trace = Trace(wire=TEXT_WIRE)

    async def main():
        term, host, link = faults.faulty_pipe(plan, wire=TEXT_WIRE, trace=trace)
        async with link:
            await term.send(msg("0200", 1, f2="4761739001010010"))
            await host.recv()
            await asyncio.sleep(2.5)
            await host.send(msg("0210", 1, f39="00"))
            await asyncio.sleep(1)
            await term.close()
            await asyncio.sleep(0.1)

    run_on("memory", main)
    return trace


def test_dropped_response_is_on_host_leg_only_with_virtual_timestamps() -> None:
    trace = _run(faults.FaultPlan([faults.drop(direction="to_terminal", mti="0210")]))
    packets = [p for p in read_pcap(write_pcap(trace, epoch=1000.0, mask=False)) if p["payload"]]
    legs = [(p["src"], p["sport"], p["t"], p["payload"][2:6]) for p in packets]
    assert legs == [
        ("10.83.0.1", 20000, 1000.0, b"0200"),   # terminal -> proxy
        ("10.83.0.2", 40000, 1000.0, b"0200"),   # proxy -> host
        ("10.83.0.3", 8583, 1002.5, b"0210"),    # host -> proxy ... and never proxy -> terminal
    ]
    for p in packets:  # the dissector's framing: 2-byte big-endian length, then the MTI
        assert struct.unpack("!H", p["payload"][:2])[0] == len(p["payload"]) - 2


def test_tcp_sequence_numbers_are_consistent() -> None:
    trace = _run(faults.FaultPlan([faults.duplicate(direction="to_host")]))
    packets = read_pcap(write_pcap(trace))
    by_flow: dict[tuple, list[dict]] = {}
    for p in packets:
        by_flow.setdefault((p["src"], p["sport"], p["dport"]), []).append(p)
    for flow in by_flow.values():
        for prev, nxt in itertools.pairwise(flow):
            consumed = len(prev["payload"]) + (1 if prev["flags"] & 0x03 else 0)
            assert nxt["seq"] == (prev["seq"] + consumed) & 0xFFFFFFFF
    host_leg = [p for p in packets if p["src"] == "10.83.0.2" and p["dport"] == 8583 and p["payload"]]
    assert len(host_leg) == 2  # the duplicate


def test_pcap_masks_pan_and_is_deterministic() -> None:
    plan = lambda: faults.FaultPlan([faults.delay(1, jitter=0.5, direction="to_terminal")], seed=4)  # noqa: E731
    a, b = write_pcap(_run(plan())), write_pcap(_run(plan()))
    assert a == b
    assert b"4761739001010010" not in a
    assert b"4761730000000010" in a
    assert b"4761739001010010" in write_pcap(_run(plan()), mask=False)


def test_mask_frame_without_decodable_message_scrubs_digit_runs() -> None:
    assert mask_frame(b"xx4761739001010010yy", None) == b"xx4761730000000010yy"
