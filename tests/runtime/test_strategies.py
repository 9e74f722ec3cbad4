"""The hypothesis strategies QA uses: generated plans are valid, round-trip as data, and any of them
can sit on a link without breaking it (messages are delivered, lost or damaged — never a crash)."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings

from iso8583 import Message, load_spec
from iso8583.channels import ChannelError
from iso8583.framing import FramingError
from iso8583.wire import Wire
from posfault import faults
from posfault.clock import run_virtual
from posfault.faults.strategies import fault_plans
from posfault.trace import Trace

WIRE = Wire(load_spec("iso87ascii"))


@given(plan=fault_plans())
def test_generated_plans_round_trip_as_data(plan: faults.FaultPlan) -> None:
    again = faults.FaultPlan.from_dicts(plan.to_dicts(), seed=plan.seed)
    assert again.rules == plan.rules


@settings(max_examples=40)
@given(plan=fault_plans(mtis=["0200", "0210"]))
def test_any_plan_on_a_link_never_crashes_it(plan: faults.FaultPlan) -> None:
    trace = Trace(wire=WIRE)

    async def main(env):
        term, host, link = faults.faulty_pipe(plan, wire=WIRE, trace=trace, idle_timeout=None)
        task = link.start()
        delivered = 0
        for stan in range(1, 6):
            try:
                await term.send(WIRE.pack(Message("0200", {4: "000000010000", 11: f"{stan:06d}",
                                                           41: "10000001"})))
                frame = await host.recv(timeout=200)
                delivered += 1
                await host.send(frame.replace(b"0200", b"0210", 1))
                await term.recv(timeout=200)
            except (ChannelError, FramingError, TimeoutError):
                break
            await asyncio.sleep(10)
        await term.close()
        await asyncio.sleep(300)
        assert task.done() and task.exception() is None   # the link ended cleanly
        return delivered

    assert 0 <= run_virtual(main) <= 5
    assert all("fault plan failed" not in str(e.get("detail", "")) for e in trace.select(kind="error"))
