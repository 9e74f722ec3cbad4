"""Whole-message plans: one generated function per recurring message layout, with a safe way out.

A terminal's sale always has the same bitmap, and so the same field layout. For such a layout
(seen :data:`iso8583.plans.COMPILE_AFTER` times) the codec generates, once, a straight-line
function that encodes or decodes the *whole* message:

* decode: the MTI comes from the cache of MTIs already validated, the bitmap is a constant, every
  field position is plain arithmetic (a dict lookup per length prefix), the text is decoded once
  (``latin-1``) and packed BCD is unpacked once (``hex()``); character classes are checked per run
  of adjacent fields of one class (one ``isdigit`` for all the numerics from field 2 to the prefix
  of field 35, one ``isprintable`` for 41 + 42 + 43...), and the :class:`Message` is built with
  one dict display;
* encode: the values of all text fields are joined once and encoded once, all BCD digits are
  packed by one ``bytes.fromhex``, the bitmap and the length prefixes are constants or table
  lookups, and the character classes are checked on a few joined strings.

Neither path ever decides a failure. Whenever anything is not exactly what the fast path handles
(a wrong type, a length, a character, a prefix, an unknown MTI, an exception in a subfield
codec), the function returns ``None`` and the general path (:mod:`iso8583.plans` and the field
closures of :mod:`iso8583.fields`) runs from the start, so every error keeps its field number,
offset, expected and found text, and every result is the general path's by construction: the fast
path only has to accept a subset of what the general path accepts, and give the same value or
bytes there. ``tests/codec/test_fastpath.py`` checks both on generated and mutated messages.
"""

from __future__ import annotations

import re
from binascii import unhexlify
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from .fields import FieldSpec, _str_check
from .message import Message

FastDecoder = Callable[[bytes], "Message | None"]
FastEncoder = Callable[[dict[int, Any], bytes], "bytes | None"]

_TEXT_TYPES = ("n", "a", "an", "ans", "as", "ns", "z")

#: Entries of a codec's round-trip memo (bytes just encoded -> their decoded message); cleared when full.
MEMO_LIMIT = 32


def _text_class(fs: FieldSpec) -> str:
    """The merged check a text field's bytes can join: digits, printable ASCII, alnum, or its own."""
    return {"n": "dig", "ans": "prt", "an": "aln"}.get(fs.type, "own")


class _Pos:
    """A byte position in generated code: ``var + off`` (var '' = a constant)."""

    __slots__ = ("off", "var")

    def __init__(self, var: str, off: int) -> None:
        self.var = var
        self.off = off

    def plus(self, n: int) -> _Pos:
        return _Pos(self.var, self.off + n)

    def expr(self, scale: int = 1) -> str:
        if not self.var:
            return str(self.off * scale)
        base = self.var if scale == 1 else f"{self.var} * {scale}"
        return f"{base} + {self.off * scale}" if self.off else base


def compile_fast_decoder(codec: Any, raw_bitmap: bytes, numbers: list[int]) -> FastDecoder:
    """``fast(data) -> Message | None`` for messages whose bitmap is ``raw_bitmap``."""
    fields: dict[int, FieldSpec] = codec.fields
    ns: dict[str, Any] = {"MTI": codec.mti_dec, "unhexlify": unhexlify, "NEW": Message.__new__, "Message": Message}
    body: list[str] = []            # position arithmetic, prefix lookups, closure calls
    regions: list[tuple[str, _Pos, _Pos, bool]] = []   # (class, start, end, may be empty)
    checks: list[str] = []          # individual checks (after the length check)
    values: list[tuple[int, str]] = []
    uses = {"s": False, "h": False}
    ms = codec.mti_size
    unit = 8 if codec.bitmap_encoding == "binary" else 16
    pos = _Pos("", ms + len(raw_bitmap))
    if len(raw_bitmap) > unit:  # the lookup key is the primary bitmap: the others must match too
        ns["BM2"] = raw_bitmap[unit:]
        body.append(f"if data[{ms + unit}:{ms + len(raw_bitmap)}] != BM2: return None")
    counter = 0

    def new_var(prefix: str) -> str:
        nonlocal counter
        counter += 1
        return f"{prefix}{counter}"

    def text(start: _Pos, end: _Pos) -> str:
        uses["s"] = True
        return f"s[{start.expr()}:{end.expr()}]"

    def hexs(start: _Pos, end: _Pos) -> str:
        uses["h"] = True
        return f"h[{start.expr(2)}:{end.expr(2)}]"

    for n in numbers:
        fs = fields[n]
        kind, enc, layout = fs.type, fs.encoding, fs.layout
        if fs.composite is None and fs.fixed:
            size = fs.max
            end = pos.plus(size)
            if enc == "ascii" and kind in _TEXT_TYPES:
                cls = _text_class(fs)
                values.append((n, text(pos, end)))
                regions.append((cls, pos, end, False))
                if cls == "own" or cls == "aln":
                    ns[f"C{n}"] = _str_check(fs)
                pos = end
                continue
            if enc == "bcd" and kind == "n" and (size % 2 == 0 or fs.pad.endswith("0")):
                nbytes = (size + 1) // 2
                end = pos.plus(nbytes)
                regions.append(("hex", pos, end, False))
                if size & 1:
                    if fs.pad.startswith("left"):
                        values.append((n, f"h[{pos.expr(2)} + 1:{end.expr(2)}]"))
                    else:
                        values.append((n, f"h[{pos.expr(2)}:{end.expr(2)} - 1]"))
                    uses["h"] = True
                    # the pad nibble is a digit ('0'), checked by the run; it must also be '0'
                    at = f"{pos.expr(2)}" if fs.pad.startswith("left") else f"{end.expr(2)} - 1"
                    checks.append(f"h[{at}] == '0'")
                else:
                    values.append((n, hexs(pos, end)))
                pos = end
                continue
            if kind == "b" and enc == "binary":
                values.append((n, f"data[{pos.expr()}:{end.expr()}]"))
                regions.append(("", pos, end, False))
                pos = end
                continue
            if kind == "b" and enc == "ascii":
                end = pos.plus(2 * size)
                values.append((n, f"unhexlify(data[{pos.expr()}:{end.expr()}])"))
                regions.append(("", pos, end, False))
                pos = end
                continue
        elif fs.composite is None and layout is not None:
            plen, _penc, pdec, _max_units = layout
            by_bytes = fs.count == "bytes"
            handled = (enc == "ascii" and kind in _TEXT_TYPES) or (
                enc == "bcd" and kind in ("n", "z") and not by_bytes and fs.pad.endswith("0")) or (
                kind == "b" and enc in ("binary", "ascii"))
            if handled:
                k = new_var("k")
                ns[f"PD{n}"] = pdec
                start = pos.plus(plen)
                body.append(f"{k} = PD{n}[data[{pos.expr()}:{start.expr()}]]")
                # the prefix's own bytes: digits when ASCII, digits in the hex text when BCD
                regions.append(("dig" if fs.prefix == "ascii" else ("hex" if fs.prefix == "bcd" else ""),
                                pos, start, False))
                q = new_var("q")
                if enc == "ascii" and kind in _TEXT_TYPES:
                    body.append(f"{q} = {start.expr()} + {k}")
                    end = _Pos(q, 0)
                    cls = _text_class(fs)
                    values.append((n, text(start, end)))
                    regions.append((cls, start, end, True))
                    if cls == "own" or cls == "aln":
                        ns[f"C{n}"] = _str_check(fs)
                elif kind == "b":
                    per_unit = 2 if (enc == "ascii" and not by_bytes) else 1
                    body.append(f"{q} = {start.expr()} + {k}" + (" * 2" if per_unit == 2 else ""))
                    end = _Pos(q, 0)
                    raw = f"data[{start.expr()}:{q}]"
                    values.append((n, raw if enc == "binary" else f"unhexlify({raw})"))
                    regions.append(("", start, end, True))
                else:  # BCD n or z, counted in digits, '0' pad nibble
                    body.append(f"{q} = {start.expr()} + (({k} + 1) >> 1)")
                    end = _Pos(q, 0)
                    uses["h"] = True
                    left = fs.pad.startswith("left")
                    a = start.expr(2)
                    if left:
                        digits = f"h[{a} + ({k} & 1):{q} * 2]"
                        checks.append(f"(not {k} & 1 or h[{a}] == '0')")
                    else:
                        digits = f"h[{a}:{a} + {k}]"
                        checks.append(f"(not {k} & 1 or h[{a} + {k}] == '0')")
                    if kind == "n":
                        values.append((n, digits))
                        regions.append(("hex", start, end, True))
                    else:
                        ns[f"C{n}"] = _str_check(fs)
                        values.append((n, f"{digits}.replace('d', '=')"))
                        regions.append(("", start, end, True))
                        checks.append(f"C{n}(v{n})")
                pos = end
                continue
        # anything else: the field's own closure (it validates; any error sends us to the general path)
        ns[f"F{n}"] = fs.decode
        q = new_var("q")
        body.append(f"v{n}, {q} = F{n}(data, {pos.expr()})")
        values.append((n, f"v{n}"))
        regions.append(("", pos, _Pos(q, 0), True))
        pos = _Pos(q, 0)

    # merge adjacent regions of one class into runs, each checked by one call
    runs: list[list[Any]] = []
    for cls, start, end, empty in regions:
        if runs and cls and runs[-1][0] == cls:
            runs[-1][2] = end
            runs[-1][3] = runs[-1][3] and empty
        else:
            runs.append([cls, start, end, empty])
    checked = set()
    run_checks: list[str] = []
    for cls, start, end, empty in runs:
        if cls == "dig":
            cond = f"data[{start.expr()}:{end.expr()}].isdigit()"
        elif cls == "hex":
            uses["h"] = True
            cond = f"h[{start.expr(2)}:{end.expr(2)}].isdigit()"
        elif cls == "prt":
            cond = f"(t := {text(start, end)}).isascii() and t.isprintable()"
        elif cls == "aln":
            cond = f"(t := {text(start, end)}).isascii() and t.isalnum()"
        elif cls == "own":
            continue
        else:
            continue
        if empty:
            cond = f"({start.expr()} == {end.expr()} or {cond})"
        run_checks.append(f"({cond})")
    # per-field checks: fields of their own class, and 'an' runs that were not all alnum (spaces)
    value_of = dict(values)
    named = set()
    for n in numbers:
        fs = fields[n]
        if f"C{n}" in ns and fs.encoding == "ascii":
            named.add(n)
            if _text_class(fs) == "own":
                checks.append(f"C{n}(v{n})")
    aln_fallback = [f"C{n}(v{n})" for n in numbers if n in named and _text_class(fields[n]) == "aln"]
    if aln_fallback:
        # an 'an' value may hold spaces: when a run's isalnum fails, the fields' own checks decide
        run_checks = [c if "isalnum" not in c else f"({c} or ({' and '.join(aln_fallback)}))" for c in run_checks]
    for n in numbers:
        if any(f"v{n})" in c or f"v{n} " in c for c in checks + run_checks):
            checked.add(n)
    lines = ["def fast(data):", "    try:", f"        mti = MTI.get(data[:{ms}])", "        if mti is None: return None"]
    lines += [f"        {line}" for line in body]
    lines.append(f"        if len(data) != {pos.expr()}: return None")
    if uses["s"]:
        lines.append("        s = data.decode('latin-1')")
    if uses["h"]:
        lines.append("        h = data.hex()")
    # Text and hex values whose bounds depend only on length prefixes are cut by one itemgetter
    # call per source (s, h), built once per combination of prefix values (bounded cache): one C
    # call instead of a slice per field.
    call_vars: set[str] = set()
    mk_lines: list[str] = []
    for line in body:
        target = line.split(" = ", 1)[0]
        names = set(re.findall(r"\b[kq]\d+\b", line.split(" = ", 1)[-1]))
        if line.startswith("v") or names & call_vars:
            call_vars.update(re.findall(r"\bq\d+\b", target))
        elif target.startswith("q"):
            mk_lines.append(line)
    kvars = sorted({k for line in body for k in re.findall(r"\bk\d+\b", line)}, key=lambda v: int(v[1:]))
    cut: dict[str, list[tuple[int, str, str]]] = {"s": [], "h": []}
    for n, expr in values:
        m = re.fullmatch(r"([sh])\[(.+):(.+)\](\.replace\('d', '='\))?", expr)
        if m is None or set(re.findall(r"\b[kq]\d+\b", expr)) & call_vars:
            continue
        cut[m.group(1)].append((n, f"slice({m.group(2)}, {m.group(3)})", m.group(4) or ""))
    getters = [(src, items) for src, items in cut.items() if items]
    if getters:
        key = "(" + ", ".join(kvars) + ",)" if kvars else "()"
        mk = [f"def MK({', '.join(kvars)}):", *[f"    {line}" for line in mk_lines],
              f"    return ({', '.join('itemgetter(' + ', '.join(sl for _, sl, _ in items) + ')' for _, items in getters)},)"]
        exec(compile("\n".join(mk), "<iso8583 fast decode getters>", "exec"), ns)
        ns["itemgetter"] = itemgetter
        ns["GETS"] = {}
        lines += [f"        g = GETS.get({key})", "        if g is None:",
                  "            if len(GETS) >= 64: GETS.clear()",
                  f"            g = GETS[{key}] = MK({', '.join(kvars)})"]
        for i, (src, items) in enumerate(getters):
            names = [f"v{n}" for n, _, _ in items]
            target = names[0] if len(names) == 1 else ", ".join(names)
            lines.append(f"        {target} = g[{i}]({src})")
            for n, _, post in items:
                if post:
                    lines.append(f"        v{n} = v{n}{post}")
                value_of[n] = f"v{n}"
    for n in sorted(checked):
        expr = value_of[n]
        if expr != f"v{n}":
            lines.append(f"        v{n} = {expr}")
            value_of[n] = f"v{n}"
    conds = run_checks + checks
    if conds:
        lines.append(f"        if not ({' and '.join(conds)}): return None")
    display = ", ".join(f"{n}: {value_of[n]}" for n in numbers)
    lines += ["        m = NEW(Message)", "        m.mti = mti", f"        m.fields = {{{display}}}", "        return m",
              "    except Exception:", "        return None"]
    source = "\n".join(lines)
    exec(compile(source, "<iso8583 fast decode>", "exec"), ns)  # source generated from our own spec data only
    fast = ns["fast"]
    fast.source = source
    return fast  # type: ignore[no-any-return]


def _prefix_forms(fs: FieldSpec, penc: list[bytes]) -> tuple[str, list[Any]]:
    """(stream, table) for a length prefix: text for ASCII, hex digits for BCD, else raw bytes."""
    if fs.prefix == "ascii":
        return "t", [p.decode("latin-1") for p in penc]
    if fs.prefix == "bcd":
        return "h", [p.hex() for p in penc]
    return "r", list(penc)


def _digit_composite_base(fs: FieldSpec) -> FieldSpec | None:
    """The plain variable packed-BCD ``n`` field under a positional composite whose subfields are all
    fixed ASCII ``n`` (so its content is just their digits, UnionPay field 60), or None."""
    comp = fs.composite
    if (comp is None or comp.kind != "positional" or fs.fixed or fs.type != "n" or fs.encoding != "bcd"
            or fs.count == "bytes" or not fs.pad.endswith("0") or not comp.subfields):
        return None
    subs = list(comp.subfields.values())
    if not all(sub.fixed and sub.type == "n" and sub.encoding == "ascii" and sub.max > 0 for sub in subs):
        return None
    from dataclasses import replace

    from .fields import compile_field

    base = compile_field(replace(fs, composite=None, encode=None, decode=None, layout=None))
    if base.layout is None or sum(sub.max for sub in subs) > base.layout[3]:
        return None
    return base


def compile_fast_encoder(codec: Any, bitmap: bytes, numbers: list[int]) -> FastEncoder:
    """``fast(fields, mti_bytes) -> bytes | None`` for messages with exactly the fields ``numbers``.

    ``bitmap`` is the encoded bitmap; ``numbers`` in wire (ascending) order.
    """
    fields: dict[int, FieldSpec] = codec.fields
    ns: dict[str, Any] = {"S": str, "B": bytes, "MEMO": codec.memo, "MTID": codec.mti_dec}
    closures: list[int] = []             # fields encoded by their own closure (composites...)
    composites: list[int] = []           # digit composites joined inline (see _digit_composite_base)
    memo_conds: list[str] = []           # values whose decoding would not give them back
    conds: list[str] = []                # type and length checks, before anything is joined
    parts: list[tuple[str, str]] = []   # (stream: t text / h hex digits / r raw bytes, expression)
    classes: dict[str, list[str]] = {"dig": [], "prt": [], "aln": []}
    own: list[str] = []
    aln_own: list[str] = []
    if codec.bitmap_encoding == "hex":
        parts.append(("t", repr(bitmap.decode("ascii"))))
    else:
        ns["BM"] = bitmap
        parts.append(("r", "BM"))
    for n in numbers:
        fs = fields[n]
        x = f"x{n}"
        kind, enc, layout = fs.type, fs.encoding, fs.layout
        if fs.composite is None and fs.fixed:
            size = fs.max
            if enc == "ascii" and kind in _TEXT_TYPES:
                conds.append(f"type({x}) is S and len({x}) == {size}")
                parts.append(("t", x))
                cls = _text_class(fs)
                if cls == "own":
                    ns[f"C{n}"] = _str_check(fs)
                    own.append(f"C{n}({x})")
                else:
                    classes[cls].append(x)
                    if cls == "aln":
                        ns[f"C{n}"] = _str_check(fs)
                        aln_own.append(f"C{n}({x})")
                continue
            if enc == "bcd" and kind == "n" and (size % 2 == 0 or fs.pad.endswith("0")):
                conds.append(f"type({x}) is S and len({x}) == {size}")
                classes["dig"].append(x)
                if size & 1 and fs.pad.startswith("left"):
                    parts.append(("h", "'0'"))
                parts.append(("h", x))
                if size & 1 and not fs.pad.startswith("left"):
                    parts.append(("h", "'0'"))
                continue
            if kind == "b" and enc == "binary":
                conds.append(f"type({x}) is B and len({x}) == {size}")
                parts.append(("r", x))
                continue
            if kind == "b" and enc == "ascii":
                conds.append(f"type({x}) is B and len({x}) == {size}")
                parts.append(("t", f"{x}.hex().upper()"))
                continue
        elif fs.composite is None and layout is not None:
            _plen, penc, _pdec, max_units = layout
            by_bytes = fs.count == "bytes"
            stream, table = _prefix_forms(fs, penc)
            ns[f"P{n}"] = table
            if enc == "ascii" and kind in _TEXT_TYPES:
                conds.append(f"type({x}) is S and len({x}) <= {max_units}")
                parts += [(stream, f"P{n}[len({x})]"), ("t", x)]
                cls = _text_class(fs)
                if cls == "own" or cls == "aln":
                    ns[f"C{n}"] = _str_check(fs)
                if cls == "own":
                    own.append(f"C{n}({x})")
                else:
                    classes[cls].append(x)
                    if cls == "aln":
                        aln_own.append(f"C{n}({x})")
                continue
            if kind == "b" and enc in ("binary", "ascii"):
                conds.append(f"type({x}) is B and len({x}) <= {max_units}")
                if enc == "binary":
                    parts += [(stream, f"P{n}[len({x})]"), ("r", x)]
                else:
                    parts += [(stream, f"P{n}[len({x}){' * 2' if by_bytes else ''}]"), ("t", f"{x}.hex().upper()")]
                continue
            if enc == "bcd" and kind in ("n", "z") and not by_bytes and fs.pad.endswith("0"):
                conds.append(f"type({x}) is S and len({x}) <= {max_units}")
                digits = x if kind == "n" else f"{x}.replace('=', 'D')"
                if kind == "n":
                    classes["dig"].append(x)
                else:
                    ns[f"C{n}"] = _str_check(fs)
                    own.append(f"C{n}({x})")
                    memo_conds.append(f"'D' not in {x}")   # packed 'D' decodes as '='
                # odd digit counts get a '0' pad nibble before (left) or after (right) the digits
                ns[f"PAD{n}"] = ["0" if i & 1 else "" for i in range(max_units + 1)]
                if fs.pad.startswith("left"):
                    parts += [(stream, f"P{n}[len({x})]"), ("h", f"PAD{n}[len({x})]"), ("h", digits)]
                else:
                    parts += [(stream, f"P{n}[len({x})]"), ("h", digits), ("h", f"PAD{n}[len({x})]")]
                continue
        base = _digit_composite_base(fs)
        if base is not None:
            # A positional composite of fixed digit subfields inside a packed-BCD digit field (UnionPay
            # 60): the subfield values, in spec order, are the parent's digits. Accepted: a dict whose
            # keys are exactly the first k canonical subfield keys, each value a str of its size;
            # decoding gives them back in spec order (the memo's value). Else: the general path.
            _plen, penc, _pdec, max_units = base.layout
            keys = list(fs.composite.subfields)
            sizes = [sub.max for sub in fs.composite.subfields.values()]
            stream, table = _prefix_forms(base, penc)
            ns[f"P{n}"] = table
            ns[f"PAD{n}"] = ["0" if i & 1 else "" for i in range(max_units + 1)]
            ns[f"K{n}"] = [tuple(keys[:k]) for k in range(len(keys) + 1)]
            ns[f"Z{n}"] = [(str,) * k + tuple(sizes[:k]) for k in range(len(keys) + 1)]
            ns["DICT"] = dict
            composites.append(n)
            classes["dig"].append(f"c{n}")
            pad = [("h", f"PAD{n}[len(c{n})]")]
            body = [("h", f"c{n}")]
            parts += [(stream, f"P{n}[len(c{n})]"), *(pad + body if base.pad.startswith("left") else body + pad)]
            continue
        ns[f"E{n}"] = fs.encode
        ns[f"F{n}"] = fs.decode
        closures.append(n)
        parts.append(("r", f"e{n}"))

    # consecutive parts of one stream become one segment: one join, then one encode / fromhex
    segments: list[tuple[str, list[str]]] = []
    for stream, expr in parts:
        if segments and segments[-1][0] == stream and stream != "r":
            segments[-1][1].append(expr)
        else:
            segments.append((stream, [expr]))
    lines = ["def fast(f, mti):", "    try:"]
    lines += [f"        x{n} = f[{n}]" for n in numbers]
    for n in composites:   # s: subfield values of the first k keys (KeyError otherwise); types, sizes
        lines += [f"        if type(x{n}) is not DICT: return None", f"        s{n} = tuple(map(x{n}.__getitem__, K{n}[len(x{n})]))",
                  f"        if (*map(type, s{n}), *map(len, s{n})) != Z{n}[len(x{n})]: return None",
                  f"        c{n} = ''.join(s{n})"]
    if conds:
        lines.append(f"        if not ({' and '.join(conds)}): return None")
    checks: list[str] = []
    for cls, method in (("dig", "isdigit"), ("prt", "isprintable"), ("aln", "isalnum")):
        members = classes[cls]
        if not members:
            continue
        joined = members[0] if len(members) == 1 else f"''.join(({', '.join(members)},))"
        var = f"J{cls}"
        lines.append(f"        {var} = {joined}")
        cond = f"{var}.isascii() and {var}.{method}()"
        if cls == "dig":   # bytes.isdigit: a table lookup per character, str.isdigit a Unicode query
            cond = f"{var}.isascii() and {var}.encode().isdigit()"
            cond = f"(not {var} or ({cond}))"
        elif cls == "prt":
            cond = f"{var}.isascii() and {var}.isprintable()"
        elif cls == "aln":
            cond = f"(({cond}) or ({' and '.join(aln_own)}))"
        checks.append(cond)
    checks += own
    out: list[str] = ["mti"]
    for i, (stream, exprs) in enumerate(segments):
        joined = exprs[0] if len(exprs) == 1 else f"''.join(({', '.join(exprs)},))"
        if stream == "t":
            lines.append(f"        T{i} = {joined}")
            checks.append(f"T{i}.isascii()")
            out.append(f"T{i}.encode()")
        elif stream == "h":
            out.append(f"bytes.fromhex({joined})")
        else:
            out.extend(exprs)
    if checks:
        lines.append(f"        if not ({' and '.join(checks)}): return None")
    lines += [f"        e{n} = E{n}(x{n})" for n in closures]
    lines.append(f"        b = b''.join(({', '.join(out)},))")
    # The round-trip memo: decoding ``b`` gives back exactly these values, in wire order (the
    # fields above are all of kinds whose decoding returns the value encoded; a closure field is
    # decoded from its own bytes). In a simulation the other end decodes ``b`` next, in the same
    # process: :func:`iso8583.decode` then takes the entry instead of parsing. The encoder only
    # keeps the values (one tuple); the fields dict is built by BUILD when and if ``b`` is
    # decoded, so encoding alone (a real terminal, a benchmark) pays little. Bounded; popped on use.
    kept = [f"e{n}" if n in closures else (f"s{n}" if n in composites else f"x{n}") for n in numbers]
    lines.append("        md = MTID.get(mti)")
    lines.append(f"        if md is not None{''.join(' and ' + c for c in memo_conds)}:")
    lines.append("            if len(MEMO) >= MEMO_LIMIT: MEMO.clear()")
    lines.append(f"            MEMO[b] = (md, BUILD, ({''.join(k + ', ' for k in kept)}))")
    lines += ["        return b", "    except Exception:", "        return None"]
    ns["MEMO_LIMIT"] = MEMO_LIMIT
    value = {n: f"dict(zip(K{n}[len(s{n})], s{n}))" if n in composites else f"x{n}" for n in numbers}
    build = ["def BUILD(t):", "    try:"]
    if kept:
        build.append(f"        {', '.join(kept)}{',' if len(kept) == 1 else ''} = t")
    for n in closures:   # decoded from the field's own bytes, which it must consume exactly
        build += [f"        x{n}, p = F{n}(e{n}, 0)", f"        if p != len(e{n}): return None"]
    build += [f"        return {{{', '.join(f'{n}: {value[n]}' for n in numbers)}}}", "    except Exception:",
              "        return None"]
    exec(compile("\n".join(build), "<iso8583 memo builder>", "exec"), ns)
    source = "\n".join(lines)
    exec(compile(source, "<iso8583 fast encode>", "exec"), ns)  # source generated from our own spec data only
    fast = ns["fast"]
    fast.source = source
    return fast  # type: ignore[no-any-return]
