"""Hypothesis strategies that generate valid ISO 8583 messages for any spec (built-in or your own).

For QA suites::

    from hypothesis import given
    from iso8583 import decode, encode, load_spec
    from iso8583.strategies import messages

    SPEC = load_spec("unionpay_pos")

    @given(messages(SPEC, required=[3, 11, 41]))
    def test_round_trip(msg):
        assert decode(encode(msg, SPEC), SPEC) == msg

Every generated value respects its field's type, character class, exact/maximum length and the
spec's quirks (e.g. a packed-BCD variable field whose prefix counts bytes and pads with ``0`` can only
carry an even number of digits unambiguously, so only even lengths are generated for it).
Long variable fields are usually kept short (``long_cap``) to keep suites fast, but the maximum
length is still drawn now and then.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from typing import Any

from hypothesis import strategies as st

from .codec import encode
from .errors import EncodeError
from .fields import FieldSpec
from .message import Message
from .spec import Spec, load_spec

_SPECIAL = "".join(c for c in map(chr, range(0x20, 0x7F)) if not c.isalnum())
ALPHABETS = {
    "n": string.digits,
    "a": string.ascii_letters + " ",
    "an": string.ascii_letters + string.digits + " ",
    "ans": "".join(map(chr, range(0x20, 0x7F))),
    "as": string.ascii_letters + " " + _SPECIAL.replace(" ", ""),
    "ns": string.digits + _SPECIAL,
    "z": string.digits + "=D",
}

COMMON_MTIS = ("0100", "0110", "0200", "0210", "0220", "0230", "0320", "0330", "0400", "0401", "0410",
               "0500", "0510", "0800", "0810", "0820", "0830", "1200", "1210", "1420", "1804")

_CACHE: dict[tuple[int, int], tuple[FieldSpec, st.SearchStrategy[Any]]] = {}


def _lengths(fs: FieldSpec, long_cap: int) -> st.SearchStrategy[int]:
    if fs.fixed:
        return st.just(fs.max)
    even_only = fs.encoding == "bcd" and fs.count == "bytes" and not fs.pad.endswith("F")
    top = fs.max
    if even_only and top % 2:
        top -= 1
    small = st.integers(0, min(top, long_cap))
    lengths = small if top <= long_cap else st.one_of(small, small, small, st.just(top))
    return lengths.map(lambda n: n - (n % 2)) if even_only else lengths


def field_values(fs: FieldSpec, long_cap: int = 48) -> st.SearchStrategy[Any]:
    """Valid values for one field spec (composite fields give dicts of subfield values)."""
    key = (id(fs), long_cap)
    cached = _CACHE.get(key)
    if cached is not None and cached[0] is fs:
        return cached[1]
    if fs.composite is not None:
        strategy = _composite_values(fs, long_cap)
    elif fs.type == "b":
        strategy = _lengths(fs, long_cap).flatmap(lambda n: st.binary(min_size=n, max_size=n))
    elif fs.type == "x+n":
        strategy = st.tuples(st.sampled_from("CD"), _lengths(fs, long_cap).flatmap(
            lambda n: st.text(string.digits, min_size=n, max_size=n))).map("".join)
    else:
        alphabet = ALPHABETS.get(fs.type, ALPHABETS["ans"])
        if fs.type == "z" and fs.encoding == "bcd":
            alphabet = string.digits + "="  # '=' and 'D' are the same nibble; '=' is canonical
        strategy = _lengths(fs, long_cap).flatmap(lambda n: st.text(alphabet, min_size=n, max_size=n))
    _CACHE[key] = (fs, strategy)  # holding fs keeps its id from being reused by another spec
    return strategy


def _fits(fs: FieldSpec, value: Any) -> bool:
    try:
        fs.encode(value)
    except EncodeError:
        return False
    return True


def _composite_values(fs: FieldSpec, long_cap: int) -> st.SearchStrategy[dict]:
    comp = fs.composite
    keys = list(comp.subfields)
    subs = {k: field_values(comp.subfields[k], long_cap) for k in keys}
    if comp.kind == "positional":
        counts = st.just(len(keys)) if fs.fixed else st.integers(0, len(keys))
        strategy = counts.flatmap(lambda n: st.fixed_dictionaries({k: subs[k] for k in keys[:n]}))
    else:
        strategy = st.lists(st.sampled_from(keys), unique=True, max_size=len(keys)).flatmap(
            lambda chosen: st.fixed_dictionaries({k: subs[k] for k in (sorted(chosen, key=keys.index)
                                                                          if comp.kind == "bitmap" else chosen)}))
    return strategy.filter(lambda value: _fits(fs, value))


def messages(spec: Spec | str | dict, *, fields: Iterable[int] | None = None, required: Iterable[int] = (),
             mti: str | st.SearchStrategy[str] | None = None, max_fields: int = 24,
             long_cap: int = 48) -> st.SearchStrategy[Message]:
    """Valid :class:`Message` objects for ``spec``.

    ``fields`` limits which fields may appear (default: all of the spec's), ``required`` are always
    present, ``mti`` fixes the MTI (or gives a strategy; default: common MTIs and random digits),
    ``max_fields`` bounds the optional fields per message, ``long_cap`` the usual size of long
    variable fields.
    """
    spec = load_spec(spec)
    required = sorted(set(required))
    for number in required:
        if number not in spec.fields:
            raise ValueError(f"required field {number} is not in spec {spec.name!r}")
    pool = sorted(set(spec.fields if fields is None else fields) - set(required))
    for number in pool:
        if number not in spec.fields:
            raise ValueError(f"field {number} is not in spec {spec.name!r}")
    if mti is None:
        mti_strategy: st.SearchStrategy[str] = st.one_of(st.sampled_from(COMMON_MTIS),
                                                         st.text(string.digits, min_size=4, max_size=4))
    elif isinstance(mti, str):
        mti_strategy = st.just(mti)
    else:
        mti_strategy = mti
    chosen = st.lists(st.sampled_from(pool), unique=True, max_size=min(max_fields, len(pool))) if pool else st.just([])

    def build(numbers: list[int]) -> st.SearchStrategy[Message]:
        values = st.fixed_dictionaries({n: field_values(spec.fields[n], long_cap) for n in [*required, *numbers]})
        return st.builds(Message, mti_strategy, values)

    return chosen.flatmap(build)


def encodings(spec: Spec | str | dict, **kwargs: Any) -> st.SearchStrategy[bytes]:
    """Valid encoded messages for ``spec`` (bytes starting at the MTI); kwargs as for :func:`messages`."""
    spec = load_spec(spec)
    return messages(spec, **kwargs).map(lambda m: encode(m, spec))


__all__ = ["ALPHABETS", "COMMON_MTIS", "encodings", "field_values", "messages"]
