"""A finished connection's objects (DirectLink, its ends, their inboxes, the host's DirectServer)
are reused for the next connection when nothing else can reach them — and only then.

Reuse must be invisible: the same runs give the same traces, verdicts, journals, ledgers and pcaps
with and without it, and an end somebody kept stays what it was.
"""

from __future__ import annotations

import weakref
from typing import Any

import pytest

from posfault.faults.direct import DirectLink
from posfault.simulation import Simulation

from .test_fast_paths import SCRIPTS, _digest


def _run(options: dict[str, Any], script: Any) -> dict[str, Any]:
    with Simulation(seed=11, **options) as sim:
        script(sim)
        sim.run_until_quiet()
        return _digest(sim)


@pytest.mark.parametrize("name", ["plain sales", "unionpay with MACs", "drop the answer", "fragment the answer",
                                  "reset the connection", "host crash", "slow issuer", "power cut after-send"])
def test_reusing_finished_connections_changes_nothing(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    options, script = SCRIPTS[name]
    reused = _run(options, script)
    monkeypatch.setattr(DirectLink, "reusable", lambda self: False)
    assert _run(options, script) == reused


def test_consecutive_sales_share_one_link_and_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """(Counted by construction: holding the link to compare would itself keep it from reuse.)"""
    from host_sim.serve import DirectServer

    made = {"links": 0, "servers": 0}
    for cls, key in ((DirectLink, "links"), (DirectServer, "servers")):
        def counting(self: Any, *args: Any, __init__: Any = cls.__init__, key: str = key, **kwargs: Any) -> None:
            made[key] += 1
            __init__(self, *args, **kwargs)
        monkeypatch.setattr(cls, "__init__", counting)
    with Simulation(seed=3, capture_frames=False) as sim:
        sim.terminal.sale("1.00")
        before = dict(made)
        for i in range(3):
            assert sim.terminal.sale(f"2.0{i}").outcome == "approved"
        assert made == before and len(sim._links) == 1
        link = sim._links[-1]
        assert link.name == "conn5" and link.terminal_end.name == "conn5:terminal" and link.conn == 4
        assert link.counts == {"forward": 2, "closed": 1}
        assert [e["link"] for e in sim.events() if e.get("kind") == "closed"][-2:] == ["conn4", "conn5"]


@pytest.mark.parametrize("keep", ["terminal end", "host end", "link", "weak reference to the terminal end"])
def test_a_connection_somebody_holds_is_never_reused(keep: str) -> None:
    with Simulation(seed=3, capture_frames=False) as sim:
        sim.terminal.sale("1.00")
        link = sim._links[-1]
        kept: Any = {"terminal end": link.terminal_end, "host end": link.host_end, "link": link,
                     "weak reference to the terminal end": weakref.ref(link.terminal_end)}[keep]
        end, name = link.terminal_end, link.terminal_end.name
        del link
        if keep != "weak reference to the terminal end":
            del end   # (only the weak reference itself may remain)
        else:
            end = None
        sim.terminal.sale("2.00")
        new = sim._links[-1]
        if keep.startswith("weak"):
            assert kept() is None   # not reused, so freed with its link
            return
        old = kept
        old_link = old if isinstance(old, DirectLink) else None
        old_end = old.terminal_end if old_link is not None else old
        assert new is not old_link and new.terminal_end is not old_end and new.host_end is not old_end
        assert old_end.closed and old_end.name in (name, name.replace(":terminal", ":host"))
        assert new.name == "conn3" and old_end.name.startswith("conn2:")
