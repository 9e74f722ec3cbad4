"""Reports: text lanes, Mermaid, and the HTML page as a person sees it in headless Chromium."""

from __future__ import annotations

import pathlib
import re
import struct
import subprocess
import zlib
from collections import Counter

from posfault.oracle import AttemptRecord, LedgerRecord, Oracle
from posfault.report import render_html, render_mermaid, render_text, write_report
from tests.conftest import require_tool

TRACE = [
    {"t": 0.0, "actor": "terminal", "kind": "send", "mti": "0200", "stan": "000001", "attempt": 1, "amount": 10000},
    {"t": 0.001, "actor": "net", "kind": "deliver", "mti": "0200", "stan": "000001", "direction": "to_host"},
    {"t": 0.002, "actor": "host", "kind": "recv", "mti": "0200", "stan": "000001"},
    {"t": 0.002, "actor": "ledger", "kind": "debit", "stan": "000001", "amount": 10000,
     "detail": "card 621700******0014"},
    {"t": 0.003, "actor": "host", "kind": "send", "mti": "0210", "stan": "000001", "rc": "00"},
    {"t": 0.003, "actor": "net", "kind": "drop", "fault": "drop", "mti": "0210", "stan": "000001",
     "direction": "to_terminal", "rule": 1},
    {"t": 60.0, "actor": "terminal", "kind": "timeout", "attempt": 1, "stan": "000001"},
]


def verdict():
    att = AttemptRecord(1, "sale", 10000, "10000001", ("000001",), "failed", shown_at=60.0, started_at=0.0)
    led = LedgerRecord("10000001", "000001", 10000, 10000, debited_at=0.002, merchant_credit=10000,
                       credited_at=90000.0)
    return Oracle(TRACE, {"terminal_profile": "no_reversal_on_timeout"}).judge([att], [led], ended_at=90000.0)


def test_text_timeline_puts_events_on_their_lanes_and_folds_silence() -> None:
    text = render_text(TRACE)
    lines = text.splitlines()
    header = lines[0]
    drop = next(line for line in lines if "DROP" in line)
    assert drop.index("✕ DROP 0210") == header.index("NETWORK")
    debit = next(line for line in lines if "debit" in line)
    assert debit.index("• debit") == header.index("LEDGER")
    assert any("60.0 s later" in line for line in lines)
    assert "6217000000000014" not in text


def test_mermaid_is_a_sequence_diagram_with_the_fault_and_verdict() -> None:
    text = render_mermaid(TRACE, verdict(), title="lost 0210")
    assert "sequenceDiagram" in text and "participant network as Network" in text
    assert "terminal->>network: 0.000s send 0200 no.000001 100.00" in text
    assert "Note over network: 0.003s ✕ DROP 0210" in text
    assert "ANOMALY debited-no-receipt attempt 1" in text
    assert ";" not in text.split("sequenceDiagram", 1)[1]


def test_html_is_self_contained(tmp_path: pathlib.Path) -> None:
    paths = write_report(tmp_path, "run", TRACE, verdict(), title="lost 0210", pcap=b"\xd4\xc3\xb2\xa1")
    html = paths["html"].read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "page must fetch nothing"
    assert "<script" not in html
    assert paths["pcap"].read_bytes().startswith(b"\xd4\xc3\xb2\xa1")
    assert paths["trace"].read_text().count("\n") == len(TRACE)


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA PNG (what Chromium writes) into rows of raw pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, ctype = 8, b"", 0, 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    bpp = {2: 3, 6: 4}[ctype]
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line) if bpp == 3 else bytes(v for j, v in enumerate(line) if j % 4 != 3))
        prev = line
    return width, height, rows


def _chromium(tmp_path: pathlib.Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    exe = require_tool("chromium")
    return subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True, timeout=90, check=False)


def test_chromium_renders_what_a_person_should_see(tmp_path: pathlib.Path) -> None:
    page = tmp_path / "timeline.html"
    page.write_text(render_html(TRACE, verdict(), title="lost 0210"), encoding="utf-8")
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
    text = re.sub(r"<[^>]+>", " ", dom.stdout.decode())
    for visible in ("1 anomaly", "debited-no-receipt", "Terminal", "Network", "Host", "Ledger",
                    "DROP 0210", "60.0 s later", "drop 0210 (rule 1)"):
        assert visible in text, f"{visible!r} not on the rendered page"

    shot = tmp_path / "shot.png"
    run = _chromium(tmp_path, "--window-size=1300,700", "--hide-scrollbars", f"--screenshot={shot}", page.as_uri())
    assert run.returncode == 0 and shot.exists(), run.stderr.decode(errors="replace")[-2000:]
    width, height, rows = _png_pixels(shot.read_bytes())
    assert (width, height) == (1300, 700)

    pixels: Counter[bytes] = Counter()
    for row in rows:
        pixels.update(row[i:i + 3] for i in range(0, len(row), 3))

    def count(rgb: tuple[int, int, int]) -> int:
        return pixels[bytes(rgb)]

    # The lane headers (blue terminal, green host) and the red fault cross/verdict border are painted.
    assert count((0x1F, 0x77, 0xB4)) > 2000, "terminal lane header not visible"
    assert count((0x2C, 0xA0, 0x2C)) > 2000, "host lane header not visible"
    assert count((0xD6, 0x27, 0x28)) > 300, "no red fault marker / anomaly box visible"
