"""The timeline as fixed-width text, one column per lane, for a terminal window or a CI log."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .lanes import GAP_SECONDS, LANE_TITLES, LANES, gap_text, rows_of

LANE_WIDTH = 30


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render_text(trace: Iterable[Mapping[str, Any]], *, width: int = LANE_WIDTH, limit: int | None = None) -> str:
    """Render the trace as lanes; ``limit`` keeps the first and last rows of a long run."""
    rows = rows_of(trace)
    header = f"{'t (s)':>11}  " + "".join(f"{LANE_TITLES[lane].upper():<{width}}" for lane in LANES)
    out = [header.rstrip(), "-" * len(header.rstrip())]
    shown = rows
    skipped = 0
    if limit is not None and len(rows) > limit:
        half = limit // 2
        shown = rows[:half] + rows[-(limit - half):]
        skipped = len(rows) - limit
    last_t: float | None = None
    for i, row in enumerate(shown):
        if skipped and i == limit // 2:  # type: ignore[operator]
            out.append(f"{'':>11}  … {skipped} more events …")
        if last_t is not None and row.t - last_t > GAP_SECONDS:
            out.append(f"{'':>11}  ⋮ {gap_text(row.t - last_t)}")
        last_t = row.t
        marker = {"right": "→ ", "left": "← "}.get(row.arrow or "", "• ")
        if row.fault:
            marker = ""
        cells = [""] * len(LANES)
        index = LANES.index(row.lane)
        # The last lane has the rest of the line to itself; the others must not spill into a neighbour.
        text = marker + row.label
        cells[index] = text if index == len(LANES) - 1 else _fit(text, width - 1)
        line = f"{row.t:>11.3f}  " + "".join(f"{c:<{width}}" for c in cells)
        out.append(line.rstrip())
    return "\n".join(out)
