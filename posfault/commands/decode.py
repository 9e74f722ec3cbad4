"""``posfault decode``: decode an ISO 8583 message (hex text or a binary file) and describe it, masked.

Examples::

    posfault decode fixtures/messages/iso87ascii_0200_sale.hex --dialect iso87ascii
    posfault decode 08002020000000800000000001... --dialect iso87binary
    posfault decode capture.bin --dialect unionpay_pos --framing length   # 2-byte length + TPDU + header
"""

from __future__ import annotations

import argparse
import re
import string
from pathlib import Path

from iso8583 import BUILTIN_SPECS, DecodeError, decode, describe, load_spec, scrub_text
from iso8583.spec import Spec

_HEX = set(string.hexdigits)
_MAX_INPUT = 1 << 20


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "decode", help="decode an ISO 8583 message (hex or binary) and print its fields, masked",
        description="Decode one ISO 8583 message and print one line per field (PAN, track, PIN block, "
                    "MAC and sensitive EMV tags masked). INPUT is a file (hex text or raw binary) or hex text.")
    parser.add_argument("input", metavar="FILE|HEX", help="a file holding the message, or the message as hex")
    parser.add_argument("--dialect", "-d", default="iso87ascii",
                        help=f"built-in dialect ({', '.join(BUILTIN_SPECS)}) or a spec file (.toml/.json)")
    parser.add_argument("--framing", choices=("none", "frame", "length"), default="none",
                        help="none: INPUT starts at the MTI (default); frame: INPUT starts with the dialect's "
                             "TPDU/application header; length: INPUT starts with the length header too")
    parser.set_defaults(func=run)


def read_input(text: str) -> bytes:
    """Bytes from a file (hex text or binary) or from hex given on the command line."""
    compact = re.sub(r"\s+", "", text)
    if compact.lower().startswith("0x"):
        compact = compact[2:]
    looks_hex = bool(compact) and len(compact) % 2 == 0 and set(compact) <= _HEX
    path = Path(text)
    try:
        is_file = not looks_hex and path.is_file()
    except OSError:
        is_file = False
    if is_file:
        raw = path.read_bytes()[:_MAX_INPUT + 1]
        if len(raw) > _MAX_INPUT:
            raise ValueError(f"{path}: larger than {_MAX_INPUT} bytes")
        try:
            as_text = raw.decode("ascii")
        except UnicodeDecodeError:
            return raw
        compact = re.sub(r"\s+", "", re.sub(r"#[^\n]*", "", as_text))
        if compact and len(compact) % 2 == 0 and set(compact) <= _HEX:
            return bytes.fromhex(compact)
        return raw
    if not looks_hex:
        raise ValueError(f"{scrub_text(text[:40])!r} is neither a file nor an even-length hex string")
    return bytes.fromhex(compact)


def strip_length(data: bytes, spec: Spec) -> bytes:
    """``data`` without the dialect's length header, checked against the bytes that follow."""
    return unframe(data, spec, "length", envelope=False)[0]


def strip_envelope(data: bytes, spec: Spec) -> tuple[bytes, list[str]]:
    """``data`` without the dialect's TPDU/application header, and their description."""
    return unframe(data, spec, "frame")


def unframe(data: bytes, spec: Spec, framing: str, *, envelope: bool = True) -> tuple[bytes, list[str]]:
    """The message bytes (from the MTI) of ``data``, using the dialect's ``[wire]`` table via
    :class:`iso8583.wire.Wire`: ``length`` strips and checks the length header, ``frame``/``length``
    strip the TPDU and application header. Returns notes describing what was stripped."""
    if framing == "none":
        return data, []
    from iso8583.wire import Wire

    wire = Wire(spec)
    notes = []
    if framing == "length":
        size = wire.prefix.size
        declared = wire.prefix.parse(data[:size], offset=0)
        body = data[size:]
        if declared != len(body):
            raise DecodeError(f"{wire.prefix.kind} length header says {declared} bytes, {len(body)} follow",
                              offset=0, expected=str(declared), found=str(len(body)))
        notes.append(f"length header ({wire.prefix.kind}): {declared}")
        data = body
    if envelope and wire.envelope is not None:
        from iso8583.framing import Envelope

        if len(data) < wire.envelope.size:
            raise DecodeError(f"frame of {len(data)} bytes is shorter than its {wire.envelope.size}-byte "
                              "TPDU/application header", offset=0)
        env = Envelope.parse(data, tpdu=wire.tpdu is not None, header=wire.app_header is not None)
        if env.tpdu is not None:
            notes.append(f"TPDU: {env.tpdu}")
        if env.header is not None:
            notes.append(f"application header: {env.header}")
        data = data[wire.envelope.size:]
    return data, notes


def run(args: argparse.Namespace) -> int:
    spec = load_spec(args.dialect)
    data = read_input(args.input)
    data, notes = unframe(data, spec, args.framing)
    msg = decode(data, spec)
    print(f"dialect {spec.name}, {len(data)} bytes")
    for note in notes:
        print(note)
    print(describe(msg, spec))
    return 0
