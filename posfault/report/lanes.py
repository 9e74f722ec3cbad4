"""Trace events -> timeline rows on four lanes (terminal, network, host, ledger).

Every renderer (text, HTML/SVG, Mermaid) reads the same rows, so they never disagree about what
happened. The mapping is tolerant: an event with an actor or kind it does not know still gets a row
on the most plausible lane, because a report that hides an event hides the evidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from iso8583.mask import scrub_text

from ..oracle import event_time, is_fault_event, money

LANES = ("terminal", "network", "host", "ledger")
LANE_TITLES = {"terminal": "Terminal", "network": "Network", "host": "Host", "ledger": "Ledger"}

_ACTOR_LANE = {
    "terminal": "terminal", "printer": "terminal", "journal": "terminal", "card": "terminal",
    "net": "network", "network": "network", "link": "network", "fault": "network", "proxy": "network",
    "host": "host", "issuer": "ledger", "ledger": "ledger", "settlement": "ledger", "payout": "ledger",
}
_TOWARD_HOST = {"to_host", "request", "c2s", "upstream", "terminal->host", "to-host"}
_TOWARD_TERMINAL = {"to_terminal", "response", "s2c", "downstream", "host->terminal", "to-terminal"}


@dataclass(frozen=True)
class Row:
    """One event placed on a lane. ``arrow`` is ``"right"`` (toward host), ``"left"`` or ``None``."""

    t: float
    lane: str
    label: str
    fault: bool
    arrow: str | None
    kind: str
    event: Mapping[str, Any]


#: Host events that are money moving in the ledger rather than messages being handled.
_LEDGER_KINDS = {"posting", "payout", "payout_failed", "recredit", "settled_day", "merchant_fixed"}


def lane_of(ev: Mapping[str, Any]) -> str:
    actor = str(ev.get("actor", "")).lower()
    if actor == "host" and str(ev.get("kind", "")) in _LEDGER_KINDS:
        return "ledger"
    if actor == "sim":
        target = str(ev.get("target", "")).lower()
        return target if target in LANES else "network"
    return _ACTOR_LANE.get(actor, "network")


def _arrow(ev: Mapping[str, Any], lane: str) -> str | None:
    kind = str(ev.get("kind", "")).lower()
    direction = str(ev.get("direction", "")).lower()
    if direction in _TOWARD_HOST:
        return "right"
    if direction in _TOWARD_TERMINAL:
        return "left"
    if kind in ("send", "sent", "tx"):
        return "right" if lane == "terminal" else "left" if lane == "host" else None
    if kind in ("deliver", "forward", "delivered"):
        mti = str(ev.get("mti", ""))
        if len(mti) == 4 and mti.isdigit():
            return "right" if mti[2] in "024" else "left"
    return None


def label_of(ev: Mapping[str, Any]) -> str:
    """Short human text for an event; values are masked by their emitters and scrubbed again here."""
    kind = str(ev.get("kind", "?"))
    parts: list[str] = []
    if is_fault_event(ev):
        parts.append("✕ " + str(ev.get("fault") or kind).upper())
    elif not (str(ev.get("actor")) == "net" and kind in ("recv", "deliver") and ev.get("mti")):
        parts.append(kind.replace("_", " "))   # a message passing the network needs no verb
    if ev.get("mti"):
        parts.append(str(ev["mti"]))
    if ev.get("stan"):
        parts.append(f"#{ev['stan']}")
    amount = ev.get("amount")
    if isinstance(amount, int):
        parts.append(money(amount))
    elif amount:
        parts.append(str(amount))
    if ev.get("rc"):
        parts.append(f"rc={ev['rc']}")
    if ev.get("step"):
        parts.append(f"@{ev['step']}")
    if ev.get("detail"):
        parts.append(str(ev["detail"]))
    return scrub_text(" ".join(parts))


#: Network bookkeeping a person does not need on the timeline (still in the JSONL trace).
_QUIET_NET_KINDS = {"closed"}


def rows_of(trace: Iterable[Mapping[str, Any]]) -> list[Row]:
    rows = []
    for ev in trace:
        if ev.get("echo") or (ev.get("actor") == "net" and ev.get("kind") in _QUIET_NET_KINDS):
            continue
        lane = lane_of(ev)
        rows.append(Row(t=event_time(ev), lane=lane, label=label_of(ev), fault=is_fault_event(ev),
                        arrow=_arrow(ev, lane), kind=str(ev.get("kind", "")), event=ev))
    rows.sort(key=lambda r: r.t)  # stable: events at the same instant keep trace order
    return rows


def gap_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s later"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min later"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h later"
    return f"{seconds / 86400:.1f} days later"


#: Silence longer than this between two rows is drawn as an explicit gap ("60.0 s later").
GAP_SECONDS = 1.0
