"""Per-bitmap plans: the field codecs of one bitmap, fused into one generated function.

Most real traffic repeats a handful of bitmaps (a terminal's sale, its reversal, its echo...). For
such a bitmap the codec generates, once, a straight-line Python function that encodes or decodes
all its fields: runs of fixed ASCII numerics are checked with one ``isdigit`` and sliced, runs of
fixed packed-BCD numerics are unpacked with one ``hex()``, fixed text and binary fields are inlined,
and every other field calls its compiled closure (:mod:`iso8583.fields`). Any fast-path check that
fails falls back to the field closures *in field order*, so the error raised is exactly the one the
closure would raise (same field, offset, message). Validation is never skipped.

A bitmap is compiled only after it has been seen :data:`COMPILE_AFTER` times, so a stream of
random bitmaps (fuzzing, a hostile peer) never pays for code generation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .fields import FieldSpec

COMPILE_AFTER = 2

DecodePlan = Callable[[bytes, int], tuple[dict[int, Any], int]]
EncodePlan = Callable[[dict[int, Any], list[bytes]], None]


def _kind(fs: FieldSpec) -> str:
    """Which inline template a field gets ('' = call its closure)."""
    if fs.composite is not None or not fs.fixed:
        return ""
    if fs.type == "n" and fs.encoding == "ascii":
        return "ascii_n"
    if fs.type == "ans" and fs.encoding == "ascii":
        return "ascii_ans"
    if fs.type == "n" and fs.encoding == "bcd" and (fs.max % 2 == 0 or fs.pad.endswith("0")):
        return "bcd_n"
    if fs.type == "b" and fs.encoding == "binary":
        return "binary"
    return ""


def _runs(fields: list[tuple[int, FieldSpec]]) -> list[tuple[str, list[tuple[int, FieldSpec]]]]:
    """Group consecutive fields that share a run-able template."""
    runs: list[tuple[str, list[tuple[int, FieldSpec]]]] = []
    for number, fs in fields:
        kind = _kind(fs)
        if runs and kind in ("ascii_n", "bcd_n") and runs[-1][0] == kind:
            runs[-1][1].append((number, fs))
        else:
            runs.append((kind, [(number, fs)]))
    return runs


def _bcd_layout(group: list[tuple[int, FieldSpec]]) -> tuple[int, list[str], list[str]]:
    """Total bytes, slice expressions into the hex text, and pad-nibble checks for a BCD run."""
    offset = 0
    slices, checks = [], []
    for _number, fs in group:
        nbytes = (fs.max + 1) // 2
        width = nbytes * 2
        if fs.max & 1:
            if fs.pad.startswith("left"):
                checks.append(f"h[{offset}] == '0'")
                slices.append(f"h[{offset + 1}:{offset + width}]")
            else:
                checks.append(f"h[{offset + width - 1}] == '0'")
                slices.append(f"h[{offset}:{offset + width - 1}]")
        else:
            slices.append(f"h[{offset}:{offset + width}]")
        offset += width
    return offset // 2, slices, checks


def compile_decoder(steps: tuple[tuple[int, Any], ...], fields: dict[int, FieldSpec]) -> DecodePlan:
    """A function ``(data, pos) -> (values, pos)`` decoding the fields of one bitmap."""
    ns: dict[str, Any] = {}
    lines = ["def plan(data, p):", "    v = {}"]
    for kind, group in _runs([(n, fields[n]) for n, _ in steps]):
        calls = [f"        v[{n}], p = F{n}(data, p)" for n, _ in group]
        for n, fs in group:
            ns[f"F{n}"] = fs.decode
        if kind == "ascii_n":
            total = sum(fs.max for _, fs in group)
            lines += [f"    e = p + {total}", "    r = data[p:e]", f"    if len(r) == {total} and r.isdigit():",
                      "        t = r.decode()"]
            offset = 0
            for n, fs in group:
                lines.append(f"        v[{n}] = t[{offset}:{offset + fs.max}]")
                offset += fs.max
            lines += ["        p = e", "    else:", *calls]
        elif kind == "bcd_n":
            total, slices, checks = _bcd_layout(group)
            cond = " and ".join(["h.isdigit()", *checks])
            lines += [f"    e = p + {total}", "    r = data[p:e]", f"    h = r.hex() if len(r) == {total} else 'x'",
                      f"    if {cond}:"]
            lines += [f"        v[{n}] = {sl}" for (n, _), sl in zip(group, slices)]
            lines += ["        p = e", "    else:", *calls]
        elif kind == "ascii_ans":
            n, fs = group[0]
            lines += [f"    e = p + {fs.max}", "    t = data[p:e].decode('latin-1')",
                      f"    if len(t) == {fs.max} and t.isascii() and t.isprintable():",
                      f"        v[{n}] = t", "        p = e", "    else:", *calls]
        elif kind == "binary":
            n, fs = group[0]
            lines += [f"    e = p + {fs.max}", "    r = data[p:e]", f"    if len(r) == {fs.max}:",
                      f"        v[{n}] = r", "        p = e", "    else:", *calls]
        else:
            lines += [c[4:] for c in calls]
    lines.append("    return v, p")
    exec(compile("\n".join(lines), "<iso8583 decode plan>", "exec"), ns)  # source generated from our own spec data only
    return ns["plan"]


def compile_encoder(steps: tuple[tuple[int, Any], ...], fields: dict[int, FieldSpec]) -> EncodePlan:
    """A function ``(values, out)`` appending the encoded fields of one bitmap to ``out``."""
    ns: dict[str, Any] = {}
    lines = ["def plan(f, out):", "    A = out.append"]
    for kind, group in _runs([(n, fields[n]) for n, _ in steps]):
        for n, fs in group:
            ns[f"E{n}"] = fs.encode
        loads = [f"    x{n} = f[{n}]" for n, _ in group]
        calls = [f"        A(E{n}(x{n}))" for n, _ in group]
        lines += loads
        if kind == "ascii_n":
            cond = " and ".join(f"x{n}.__class__ is str and len(x{n}) == {fs.max}" for n, fs in group)
            joined = " + ".join(f"x{n}" for n, _ in group)
            lines += [f"    if {cond}:", f"        t = {joined}", "        if t.isdigit() and t.isascii():",
                      "            A(t.encode())", "        else:", *["    " + c for c in calls], "    else:", *calls]
        elif kind == "bcd_n":
            cond = " and ".join(f"x{n}.__class__ is str and len(x{n}) == {fs.max}" for n, fs in group)
            parts = []
            for n, fs in group:
                if fs.max & 1:
                    parts.append(f"'0' + x{n}" if fs.pad.startswith("left") else f"x{n} + '0'")
                else:
                    parts.append(f"x{n}")
            digits = " + ".join(f"x{n}" for n, _ in group)
            lines += [f"    if {cond} and ({digits}).isdigit() and ({digits}).isascii():",
                      f"        A(bytes.fromhex({' + '.join(parts)}))", "    else:", *calls]
        elif kind == "ascii_ans":
            n, fs = group[0]
            lines += [f"    if x{n}.__class__ is str and len(x{n}) == {fs.max} and x{n}.isascii() and x{n}.isprintable():",
                      f"        A(x{n}.encode())", "    else:", *calls]
        elif kind == "binary":
            n, fs = group[0]
            lines += [f"    if x{n}.__class__ is bytes and len(x{n}) == {fs.max}:", f"        A(x{n})", "    else:",
                      *calls]
        else:
            lines += [c[4:] for c in calls]
    exec(compile("\n".join(lines), "<iso8583 encode plan>", "exec"), ns)  # source generated from our own spec data only
    return ns["plan"]
