"""Interop with pyiso8583 4.0.1 (default_ascii spec) for iso87ascii, both directions, byte for byte.

pyiso8583 also imports as ``iso8583``, so it runs in its own virtualenv ($POSFAULT_PYISO8583_PYTHON,
prepared by scripts/test), in one subprocess per test fed with JSON.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import require_path
from hypothesis import given, settings

from iso8583 import Message, decode, encode, load_spec
from iso8583.strategies import messages

SPEC = load_spec("iso87ascii")
FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "messages" / "iso87ascii_0200_sale.hex"

PEER = r'''
import json, sys
import iso8583
from iso8583.specs import default_ascii as spec
job = json.loads(sys.stdin.read())
out = {"spec": {k: dict(v) for k, v in spec.items()}, "encoded": [], "decoded": []}
for doc in job["to_encode"]:
    try:
        data, _ = iso8583.encode(dict(doc), spec)
        out["encoded"].append(bytes(data).hex())
    except Exception as exc:
        out["encoded"].append("error: %s" % exc)
for hex_data in job["to_decode"]:
    try:
        doc, _ = iso8583.decode(bytes.fromhex(hex_data), spec)
        out["decoded"].append({k: v for k, v in doc.items() if k not in ("p", "1", "h")})
    except Exception as exc:
        out["decoded"].append({"error": str(exc)})
print(json.dumps(out))
'''


def as_pyiso(msg: Message) -> dict[str, str]:
    """pyiso8583's decoded form: field numbers as str keys, binary fields as upper-case hex."""
    doc = {"t": msg.mti}
    for number, value in msg.items():
        doc[str(number)] = value.hex().upper() if isinstance(value, bytes) else value
    return doc


def run_peer(python: str, to_encode: list[dict], to_decode: list[bytes]) -> dict:
    job = json.dumps({"to_encode": to_encode, "to_decode": [d.hex() for d in to_decode]})
    result = subprocess.run([python, "-I", "-c", PEER], input=job, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def sample_messages() -> list[Message]:
    collected: list[Message] = [decode(bytes.fromhex(FIXTURE.read_text()), SPEC)]

    @settings(max_examples=150, database=None)
    @given(messages(SPEC, long_cap=120))
    def collect(msg: Message) -> None:
        collected.append(msg)

    collect()
    return collected


def test_pyiso8583_and_posfault_agree_byte_for_byte() -> None:
    python = require_path("POSFAULT_PYISO8583_PYTHON", "pyiso8583 virtualenv")
    msgs = sample_messages()
    ours = [encode(m, SPEC) for m in msgs]
    peer = run_peer(python, [as_pyiso(m) for m in msgs], ours)
    for msg, our_bytes, their_hex, their_doc in zip(msgs, ours, peer["encoded"], peer["decoded"]):
        # pyiso8583 encodes our message to exactly our bytes ...
        assert their_hex == our_bytes.hex(), (msg, their_hex)
        # ... decodes our bytes to the same fields ...
        assert their_doc == as_pyiso(msg), (msg, their_doc)
        # ... and we decode its bytes back to the message.
        assert decode(bytes.fromhex(their_hex), SPEC) == msg


def test_pyiso8583_spec_dict_loads_and_matches_its_wire_format() -> None:
    python = require_path("POSFAULT_PYISO8583_PYTHON", "pyiso8583 virtualenv")
    msgs = sample_messages()[:40]
    peer = run_peer(python, [as_pyiso(m) for m in msgs], [])
    migrated = load_spec(peer["spec"])  # a pyiso8583 spec dict, as its users have them
    assert migrated.fields[2].length == "LL" and migrated.fields[55].length == "LLL"
    for msg, their_hex in zip(msgs, peer["encoded"]):
        # under the migrated spec every field is text (pyiso8583 has no field types), binary as hex
        text_msg = Message(msg.mti, {n: v.hex().upper() if isinstance(v, bytes) else v for n, v in msg.items()})
        assert encode(text_msg, migrated).hex() == their_hex
        assert decode(bytes.fromhex(their_hex), migrated) == text_msg
