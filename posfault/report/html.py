"""A self-contained HTML page: verdict, truth table and an SVG timeline with four lanes.

No scripts, fonts, stylesheets or images are fetched: the page is one file that opens offline, can
be attached to a ticket, and renders the same everywhere. Time flows downward like a sequence
diagram; long silences (a 60 s timeout, a night before T+1 payouts) are folded into a marked gap so
that the interesting instants stay readable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

from ..oracle import Verdict, duration, money
from .lanes import GAP_SECONDS, LANE_TITLES, LANES, Row, gap_text, rows_of

ROW_H = 22
LANE_W = 250
TIME_W = 90
TOP = 46
FAULT_COLOR = "#d62728"
LANE_COLORS = {"terminal": "#1f77b4", "network": "#7f7f7f", "host": "#2ca02c", "ledger": "#9467bd"}

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans CJK SC','PingFang SC','Microsoft YaHei',sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px} .sub{color:#555;margin:0 0 16px}
.verdict{padding:12px 16px;border-radius:6px;margin:0 0 16px;font-size:15px}
.verdict.ok{background:#e6f4ea;border:2px solid #2ca02c}
.verdict.bad{background:#fde8e8;border:2px solid #d62728}
.verdict h2{margin:0 0 6px;font-size:18px}
.anomaly{margin:6px 0} .anomaly b{color:#d62728} .cause{color:#444;font-size:13px}
table.truth{border-collapse:collapse;margin:0 0 18px;font-size:13px}
table.truth th,table.truth td{border:1px solid #ccc;padding:3px 8px;text-align:right}
table.truth th{background:#f3f3f3} table.truth td.l{text-align:left}
tr.wrong td{background:#fde8e8}
svg text{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.legend span{display:inline-block;margin-right:14px;font-size:13px}
details{margin:10px 0} pre{font-size:12px;background:#f7f7f7;padding:8px;overflow:auto}
"""


def _lane_x(lane: str) -> int:
    return TIME_W + LANES.index(lane) * LANE_W + LANE_W // 2


def _svg(rows: list[Row]) -> str:
    # Layout rows top to bottom, inserting gap rows for long silences.
    placed: list[tuple[int, Row | str]] = []
    y = TOP + 10
    last_t: float | None = None
    for row in rows:
        if last_t is not None and row.t - last_t > GAP_SECONDS:
            placed.append((y, gap_text(row.t - last_t)))
            y += ROW_H
        last_t = row.t
        placed.append((y, row))
        y += ROW_H
    width = TIME_W + LANE_W * len(LANES) + 150  # room for ledger labels right of its lane
    height = y + 10
    out = [f'<svg class="timeline" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'role="img" aria-label="timeline">']
    for lane in LANES:
        x = _lane_x(lane)
        out.append(f'<rect x="{x - LANE_W // 2 + 4}" y="4" width="{LANE_W - 8}" height="30" rx="5" '
                   f'fill="{LANE_COLORS[lane]}"/>')
        out.append(f'<text x="{x}" y="24" text-anchor="middle" fill="#fff" font-weight="bold" '
                   f'style="font-size:14px">{LANE_TITLES[lane]}</text>')
        out.append(f'<line x1="{x}" y1="{TOP - 6}" x2="{x}" y2="{height - 6}" stroke="{LANE_COLORS[lane]}" '
                   f'stroke-width="2" stroke-opacity="0.35"/>')
    out.append('<text x="6" y="24" fill="#555">time (s)</text>')
    for y, item in placed:
        if isinstance(item, str):
            out.append(f'<line x1="0" y1="{y - 6}" x2="{width}" y2="{y - 6}" stroke="#999" stroke-dasharray="4 4"/>')
            out.append(f'<text class="gap" x="{TIME_W + 6}" y="{y + 8}" fill="#666">⋮ {escape(item)}</text>')
            continue
        row = item
        x = _lane_x(row.lane)
        color = FAULT_COLOR if row.fault else LANE_COLORS[row.lane]
        if row.fault:
            out.append(f'<rect class="fault-band" x="{TIME_W}" y="{y - ROW_H // 2 - 1}" '
                       f'width="{width - TIME_W}" height="{ROW_H}" fill="{FAULT_COLOR}" fill-opacity="0.12"/>')
        out.append(f'<text x="6" y="{y + 4}" fill="#555">{row.t:10.3f}</text>')
        if row.arrow and not row.fault:
            dx = LANE_W - 20 if row.arrow == "right" else -(LANE_W - 20)
            if not (row.lane == "ledger" and dx > 0) and not (row.lane == "terminal" and dx < 0):
                x2 = x + dx
                head = 6 if dx > 0 else -6
                out.append(f'<line x1="{x}" y1="{y}" x2="{x2}" y2="{y}" stroke="{color}" stroke-width="1.5"/>')
                out.append(f'<path d="M{x2} {y} l{-head} -4 l0 8 z" fill="{color}"/>')
        if row.fault:
            out.append(f'<path class="fault" d="M{x - 7} {y - 7} L{x + 7} {y + 7} M{x + 7} {y - 7} '
                       f'L{x - 7} {y + 7}" stroke="{FAULT_COLOR}" stroke-width="3"/>')
        else:
            out.append(f'<circle cx="{x}" cy="{y}" r="5" fill="{color}"/>')
        label_x = x + 10
        anchor = "start"
        if row.arrow == "left" and not row.fault and row.lane != "terminal":
            label_x, anchor = x - 10, "end"
        weight = ' font-weight="bold"' if row.fault else ""
        out.append(f'<text x="{label_x}" y="{y - 5 if row.arrow and not row.fault else y + 4}" '
                   f'text-anchor="{anchor}" fill="{color}"{weight}><title>{escape(_tooltip(row))}</title>'
                   f'{escape(_clip(row.label, 34))}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _tooltip(row: Row) -> str:
    return f"t={row.t:.3f}s {row.event.get('actor', '?')}: {row.label}"


def _verdict_html(verdict: Verdict | None) -> str:
    if verdict is None:
        return ""
    if verdict.ok:
        return ('<div class="verdict ok"><h2>✓ Money is right</h2>Every receipt matches a debit, every '
                'debit a receipt, every charged sale a merchant credit.</div>')
    parts = [f'<div class="verdict bad"><h2>✕ {len(verdict.anomalies)} '
             f'anomal{"y" if len(verdict.anomalies) == 1 else "ies"}</h2>']
    if verdict.conservation:
        parts.append(f'<div class="anomaly"><b>money not conserved</b>: {escape(verdict.conservation)}</div>')
    for a in verdict.anomalies:
        parts.append(f'<div class="anomaly"><b>{escape(a.kind)}</b> — attempt {a.attempt}: '
                     f'{escape(a.detail)}<div class="cause">cause: {escape(a.cause)}</div></div>')
    parts.append("</div>")
    return "".join(parts)


def _truth_html(verdict: Verdict | None) -> str:
    if verdict is None or not verdict.truths:
        return ""
    head = ("<tr><th>attempt</th><th>kind</th><th>amount</th><th>terminal showed</th><th>receipt</th>"
            "<th>cardholder debited</th><th>merchant credited</th><th>debited w/o receipt</th>"
            "<th>merchant waited</th></tr>")
    rows = [head]
    for t in verdict.truths:
        wrong = {a.attempt for a in verdict.anomalies}
        cls = ' class="wrong"' if t.attempt in wrong else ""
        wait = ("-" if t.cardholder_debit <= 0 else "never") if t.merchant_wait_s is None else duration(t.merchant_wait_s)
        rows.append(
            f"<tr{cls}><td>{t.attempt}</td><td class=l>{escape(t.kind)}</td><td>{money(t.amount)}</td>"
            f"<td class=l>{escape(t.outcome)}{' (' + escape(t.rc) + ')' if t.rc else ''}</td>"
            f"<td class=l>{'yes' if t.receipt else 'no'}</td><td>{money(t.cardholder_debit)}</td>"
            f"<td>{money(t.merchant_credit)}</td><td>{duration(t.debited_without_receipt_s)}</td><td>{wait}</td></tr>")
    return '<table class="truth">' + "".join(rows) + "</table>"


def render_html(trace: Iterable[Mapping[str, Any]], verdict: Verdict | None = None, *,
                title: str = "posfault timeline", subtitle: str = "", mermaid: str | None = None) -> str:
    rows = rows_of(trace)
    legend = "".join(f'<span style="color:{LANE_COLORS[lane]}">● {LANE_TITLES[lane]}</span>' for lane in LANES)
    legend += f'<span style="color:{FAULT_COLOR}">✕ fault injected</span>'
    extra = ""
    if mermaid:
        extra = f"<details><summary>Mermaid source</summary><pre>{escape(mermaid)}</pre></details>"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1><p class=\"sub\">{escape(subtitle)}</p>"
        f"{_verdict_html(verdict)}{_truth_html(verdict)}"
        f"<div class=\"legend\">{legend}</div>{_svg(rows)}{extra}"
        "</body></html>\n"
    )
