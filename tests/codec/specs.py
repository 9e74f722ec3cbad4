"""A user spec that exercises every field type, encoding, prefix, count, pad and composite layout."""

from __future__ import annotations

from typing import Any

TYPES_TEXT = ["a", "an", "ans", "as", "ns"]


def kitchen_sink(mti: str = "ebcdic", bitmap: str = "hex-ebcdic") -> dict[str, Any]:
    fields: dict[str, Any] = {}
    number = 2

    def add(**attrs: Any) -> None:
        nonlocal number
        if number in (65, 129):
            number += 1
        fields[str(number)] = {"name": f"test {number}", **attrs}
        number += 1

    for enc in ("ascii", "ebcdic"):
        for kind in TYPES_TEXT:
            add(type=kind, max=5, encoding=enc)
            add(type=kind, length="LL", max=30, prefix="ebcdic" if enc == "ebcdic" else "ascii", encoding=enc)
        add(type="n", max=7, encoding=enc)
        add(type="z", length="LL", max=37, prefix="ascii", encoding=enc)
        add(type="x+n", max=8, encoding=enc)
        add(type="b", max=8, encoding=enc)
        add(type="b", length="LLL", max=60, prefix=enc, encoding=enc)
        add(type="b", length="LLL", max=60, prefix=enc, encoding=enc, count="chars")
    for pad in ("left0", "leftF", "right0", "rightF"):
        add(type="n", max=5, encoding="bcd", pad=pad)
        add(type="n", length="LL", max=19, prefix="bcd", encoding="bcd", pad=pad)
        add(type="n", length="LL", max=19, prefix="bcd", encoding="bcd", pad=pad, count="bytes")
        add(type="z", length="LL", max=37, prefix="bcd", encoding="bcd", pad=pad)
    add(type="x+n", max=9, encoding="bcd")
    add(type="x+n", length="LL", max=15, prefix="binary", encoding="bcd")
    for prefix in ("ascii", "ebcdic", "bcd", "binary"):
        for length, size in (("L", 9), ("LL", 40), ("LLL", 300), ("LLLL", 1200)):
            add(type="ans", length=length, max=size, prefix=prefix)
            add(type="b", length=length, max=size, prefix=prefix, encoding="binary")
    add(type="b", length="LL", max=300, prefix="binary", prefix_bytes=2)
    add(type="n", length="LLL", max=20, prefix="bcd", encoding="bcd", pad="right0", composite="positional",
        subfields={"1": {"type": "n", "max": 2}, "2": {"type": "n", "max": 6}, "3": {"type": "n", "length": "LL", "max": 9}})
    add(type="ans", length="LLL", max=200, composite="bitmap", bitmap_bytes=2,
        subfields={"2": {"type": "an", "max": 4}, "7": {"type": "ans", "length": "LL", "max": 20},
                   "16": {"type": "n", "max": 3}})
    add(type="b", length="LLL", max=200, prefix="binary", composite="bitmap", bitmap_bytes=1,
        subfields={"1": {"type": "b", "max": 2}, "3": {"type": "b", "length": "LL", "max": 20},
                   "8": {"type": "ans", "max": 3}})
    add(type="ans", length="LLL", max=300, composite="tlv", tag_length=2, len_length=3,
        subfields={"01": {"type": "n", "max": 6}, "AB": {"type": "ans", "length": "LLL", "max": 40},
                   "ZZ": {"type": "an", "length": "LL", "max": 10}})
    fields["150"] = {"name": "tertiary text", "type": "ans", "length": "LL", "max": 20}
    fields["192"] = {"name": "tertiary mac", "type": "b", "max": 8}
    assert number < 129
    return {"name": "kitchen_sink", "family": "test", "mti": {"encoding": mti},
            "bitmap": {"encoding": bitmap, "tertiary": True}, "fields": fields, "wire": {"length": "none"}}
