"""The timeline as a Mermaid sequence diagram, to paste into a bug report or a pull request."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..oracle import Verdict
from .lanes import GAP_SECONDS, LANE_TITLES, gap_text, rows_of

_NEXT = {("terminal", "right"): "network", ("network", "right"): "host", ("host", "right"): "ledger",
         ("ledger", "left"): "host", ("host", "left"): "network", ("network", "left"): "terminal"}


def _text(label: str) -> str:
    # Mermaid message text ends at a newline and treats ';' and '#' specially.
    return label.replace(";", ",").replace("#", "no.").replace("\n", " ")


def render_mermaid(trace: Iterable[Mapping[str, Any]], verdict: Verdict | None = None, *,
                   title: str | None = None) -> str:
    lines = ["sequenceDiagram"]
    if title:
        lines.insert(0, f"---\ntitle: {_text(title)}\n---")
    for lane, name in LANE_TITLES.items():
        lines.append(f"    participant {lane} as {name}")
    last_t: float | None = None
    for row in rows_of(trace):
        if last_t is not None and row.t - last_t > GAP_SECONDS:
            lines.append(f"    Note over terminal,ledger: {gap_text(row.t - last_t)}")
        last_t = row.t
        text = _text(f"{row.t:.3f}s {row.label}")
        if row.fault:
            lines.append(f"    Note over {row.lane}: {text}")
            continue
        peer = _NEXT.get((row.lane, row.arrow or ""))
        if peer is not None:
            lines.append(f"    {row.lane}->>{peer}: {text}")
        else:
            lines.append(f"    Note right of {row.lane}: {text}")
    if verdict is not None:
        if verdict.ok:
            lines.append("    Note over terminal,ledger: verdict - money is right")
        for anomaly in verdict.anomalies:
            lines.append(f"    Note over terminal,ledger: ANOMALY {anomaly.kind} attempt {anomaly.attempt}")
    return "\n".join(lines) + "\n"
