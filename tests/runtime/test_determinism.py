"""Same seed ⇒ byte-identical trace and pcap, even across processes with different hash seeds."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent("""
    import asyncio, hashlib, sys
    from iso8583 import Message, load_spec
    from iso8583.wire import Wire
    from posfault import faults
    from posfault.clock import run_virtual
    from posfault.pcap import write_pcap
    from posfault.trace import Trace

    wire = Wire(load_spec("unionpay_pos"))
    plan = faults.load_rules("fixtures/faults/flaky_network.toml", seed=int(sys.argv[1]))
    plan.add(faults.fragment(3, gap=0.01, direction="to_host", probability=0.1))

    async def main(env):
        trace = Trace(wire=wire, clock=env.clock)
        for conn in range(40):                       # one connection per transaction
            term, host, link = faults.faulty_pipe(plan, wire=wire, trace=trace, name=f"c{conn}")
            stan = f"{conn + 1:06d}"
            req = Message("0200", {2: "6225880000000001", 3: "000000", 4: f"{env.rng.randrange(1, 10**6):012d}",
                                   11: stan, 41: "10000001", 42: "100000000000001",
                                   60: {"60.1": "22", "60.2": "000001"}})
            await term.send(wire.pack(req))
            try:
                frame = await host.recv(timeout=5)
                msg, envl = wire.unpack(frame)
                await host.send(wire.pack(Message("0210", {3: "000000", 4: msg[4], 11: msg[11], 39: "00",
                                                           41: msg[41], 42: msg[42]}), envl.reply()))
                await term.recv(timeout=5)
            except Exception:
                pass
            await term.close()
            await asyncio.sleep(env.rng.uniform(0, 20))
        return trace

    trace = run_virtual(main, seed=int(sys.argv[1]))
    jsonl = "\\n".join(trace.jsonl_lines()).encode()
    print(hashlib.sha256(jsonl).hexdigest(), hashlib.sha256(write_pcap(trace)).hexdigest(), len(trace))
""")


def _run(seed: int, hash_seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(seed)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_same_seed_byte_identical_across_processes_and_hash_seeds() -> None:
    a = _run(5, "1")
    b = _run(5, "2")
    assert a == b
    jsonl_hash, pcap_hash, events = a.split()
    assert int(events) > 150
    assert _run(6, "1").split()[0] != jsonl_hash
    assert hashlib.sha256(b"").hexdigest() not in (jsonl_hash, pcap_hash)
