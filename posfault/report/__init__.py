"""Reports a person would rather look at than read: text lanes, HTML/SVG timeline, Mermaid, pcap.

All renderers take the trace (a list of event dicts with ``t``) and optionally the oracle's
:class:`~posfault.oracle.Verdict`; :func:`write_report` writes the whole set into a directory.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from ..oracle import Verdict
from .html import render_html
from .mermaid import render_mermaid
from .text import render_text

__all__ = ["render_html", "render_mermaid", "render_text", "write_report"]


def write_report(outdir: str | pathlib.Path, name: str, trace: Sequence[Mapping[str, Any]],
                 verdict: Verdict | None = None, *, title: str | None = None, subtitle: str = "",
                 pcap: bytes | None = None) -> dict[str, pathlib.Path]:
    """Write ``NAME.html``, ``NAME.mmd``, ``NAME.jsonl`` (and ``NAME.pcap`` if given); return the paths."""
    out = pathlib.Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    mermaid = render_mermaid(trace, verdict, title=title or name)
    paths = {
        "html": out / f"{name}.html",
        "mermaid": out / f"{name}.mmd",
        "trace": out / f"{name}.jsonl",
    }
    paths["html"].write_text(render_html(trace, verdict, title=title or name, subtitle=subtitle,
                                         mermaid=mermaid), encoding="utf-8")
    paths["mermaid"].write_text(mermaid, encoding="utf-8")
    with paths["trace"].open("w", encoding="utf-8") as fh:
        for ev in trace:
            fh.write(json.dumps(dict(ev), sort_keys=True, default=str) + "\n")
    if pcap is not None:
        paths["pcap"] = out / f"{name}.pcap"
        paths["pcap"].write_bytes(pcap)
    return paths
