"""The headline incident over real sockets: terminal -> fault proxy -> host, all on 127.0.0.1.

The simulation proves the logic on a virtual clock; this proves the *same* terminal, proxy and host
code reproduce "debited, no receipt" on real TCP, which is how a user points a real test terminal
through our proxy. Timeouts are short real-clock values (the only real waiting in the suite, bounded).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from host_sim import Host, Ledger, seed
from iso8583 import load_spec
from iso8583.channels import tcp
from iso8583.security.keys import load_test_keys
from iso8583.wire import Wire
from posfault import faults
from posfault.faults.proxy import FaultProxy
from posfault.trace import Trace
from terminal_sim import Journal, Terminal, TerminalConfig, load_cards

pytestmark = pytest.mark.network

AMOUNT = 1234


async def _sale_through_proxy(tmp_path: Path, dialect: str, profile: str) -> tuple[object, object, Trace]:
    wire = Wire(load_spec(dialect))
    ledger = Ledger.open(str(tmp_path / "host.db"))
    seed(ledger)
    host = Host(ledger, dialect=dialect, keys={"10000001": bytes(load_test_keys().tmk).hex()})
    server = await tcp.serve(host.serve, "127.0.0.1", 0, header=wire.prefix, max_frame=wire.max_frame,
                             idle_timeout=5.0, max_connections=8)
    trace = Trace(wire=wire)
    plan = faults.FaultPlan([faults.drop(direction="to_terminal", mti="0210", nth=1)], seed=1)
    proxy = await FaultProxy(("127.0.0.1", server.port), plan, wire=wire, trace=trace,
                             idle_timeout=5.0).start()

    async def connect() -> tcp.Channel:  # type: ignore[name-defined]
        return await tcp.connect("127.0.0.1", proxy.port, header=wire.prefix, max_frame=wire.max_frame,
                                 timeout=2.0)

    journal = Journal.open(str(tmp_path / "terminal.db"))
    config = TerminalConfig(dialect=dialect, profile=profile, response_timeout=0.3,
                            reversal_timeout=1.0, reversal_interval=0.05)
    terminal = Terminal(config, journal=journal, connector=connect)
    try:
        result = await asyncio.wait_for(terminal.sale(AMOUNT, card=load_cards()["chip-ok"]), timeout=15)
    finally:
        await proxy.close()
        await server.close()
    (txn,) = [t for t in ledger.transactions() if t.kind == "sale"]
    ledger.check_conservation()
    return result, txn, trace


@pytest.mark.parametrize("dialect", ["iso87ascii", "unionpay_pos"])
def test_correct_terminal_reverses_a_lost_approval_over_tcp(tmp_path: Path, dialect: str) -> None:
    result, txn, trace = asyncio.run(_sale_through_proxy(tmp_path, dialect, "correct"))
    assert result.outcome == "failed" and result.receipt is None
    assert txn.approved and txn.reversed and txn.cardholder_debit == 0   # money is right
    exported = [trace.export_event(e) for e in trace.events if e.get("actor") == "net"]
    assert ("drop", "0210") in [(e.get("action"), e.get("mti")) for e in exported]
    assert "6217000000000014" not in "\n".join(trace.jsonl_lines())   # the PAN is masked


@pytest.mark.parametrize("dialect", ["iso87ascii", "unionpay_pos"])
def test_faulty_terminal_leaves_cardholder_debited_without_receipt_over_tcp(tmp_path: Path, dialect: str) -> None:
    result, txn, _ = asyncio.run(_sale_through_proxy(tmp_path, dialect, "no_reversal_on_timeout"))
    assert result.outcome == "failed" and result.receipt is None
    assert txn.approved and not txn.reversed and txn.cardholder_debit == AMOUNT   # 扣款未出单
