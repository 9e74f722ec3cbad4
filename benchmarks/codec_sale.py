"""The codec + PIN work of simulated sales, replayed in-process (not a test; for callgrind).

    python3 benchmarks/codec_sale.py ROUNDS [--dialect iso87ascii|unionpay_pos] [--step all|enc|dec|pin]

Runs 30 sales of ``benchmarks/simulation.py`` (mixed magstripe / chip with PIN and EMV field 55 /
contactless) once, recording every ``iso8583.encode``/``decode`` and ``pin.encrypt``/``decrypt``
call, then replays those calls (sign-on excluded) ROUNDS times. Instructions per sale, independent
of the machine's load::

    ir() { valgrind --tool=callgrind --callgrind-out-file=/dev/null python3 benchmarks/codec_sale.py $1 \\
           --dialect unionpay_pos 2>&1 | sed -n 's/.*Collected : \\([0-9]*\\).*/\\1/p'; }
    echo $(( ($(ir 25) - $(ir 5)) / (20 * 30) ))
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import iso8583
from iso8583 import Message, load_spec
from iso8583.security import pin as pinmod
from iso8583.security.keys import Key

SALES = 30


def capture(dialect: str) -> list[tuple[Any, ...]]:
    """The codec and PIN calls of SALES simulated sales (each call with its arguments)."""
    import simulation

    calls: list[tuple[Any, ...]] = []
    enc, dec, penc, pdec = iso8583.encode, iso8583.decode, pinmod.encrypt, pinmod.decrypt

    def rec_encode(msg: Message, spec: Any) -> bytes:
        if msg.mti[1] != "8":   # sign-on is not part of a sale
            calls.append(("enc", msg.mti, dict(msg.fields)))
        return enc(msg, spec)

    def rec_decode(data: bytes, spec: Any) -> Message:
        msg = dec(data, spec)
        if msg.mti[1] != "8":
            calls.append(("dec", bytes(data)))
        return msg

    def rec_encrypt(pin: str, pan: Any, key: Any, fmt: int = 0, *, rng: Any = None) -> bytes:
        calls.append(("pinenc", pin, pan, bytes(key), fmt))
        return penc(pin, pan, key, fmt, rng=rng)

    def rec_decrypt(block: bytes, pan: Any, key: Any, fmt: Any = None) -> str:
        calls.append(("pindec", bytes(block), pan, bytes(key).hex().upper()))
        return pdec(block, pan, key, fmt)

    iso8583.encode, iso8583.decode, pinmod.encrypt, pinmod.decrypt = rec_encode, rec_decode, rec_encrypt, rec_decrypt
    try:
        simulation.simulated_sales(SALES, dialect)
    finally:
        iso8583.encode, iso8583.decode, pinmod.encrypt, pinmod.decrypt = enc, dec, penc, pdec
    return calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rounds", type=int)
    parser.add_argument("--dialect", default="iso87ascii")
    parser.add_argument("--step", default="all", choices=("all", "enc", "dec", "pin"))
    args = parser.parse_args()
    spec = load_spec(args.dialect)
    encode, decode = iso8583.encode, iso8583.decode
    ops = []
    for call in capture(args.dialect):
        kind = call[0]
        if kind == "enc" and args.step in ("all", "enc"):
            msg = Message.__new__(Message)
            msg.mti, msg.fields = call[1], call[2]
            ops.append(lambda msg=msg: encode(msg, spec))
        elif kind == "dec" and args.step in ("all", "dec"):
            ops.append(lambda data=call[1]: decode(data, spec))
        elif kind == "pinenc" and args.step in ("all", "pin"):
            _, pin, pan, raw, fmt = call
            key = Key(raw)
            ops.append(lambda pin=pin, pan=pan, key=key, fmt=fmt: pinmod.encrypt(pin, pan, key, fmt))
        elif kind == "pindec" and args.step in ("all", "pin"):
            _, block, pan, hexkey = call   # the host builds its PIN Key from hex for every PIN sale
            ops.append(lambda block=block, pan=pan, hexkey=hexkey: pinmod.decrypt(bytes(block), pan, Key(hexkey)))
    for _ in range(2 + args.rounds):
        for op in ops:
            op()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
