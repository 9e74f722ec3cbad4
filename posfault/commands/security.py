"""``posfault security``: check MACs, PIN blocks, sign-on keys and ICC data of captured messages.

For engineers with a real test terminal: was the MAC of this capture right under our MAK? Does
field 62 decrypt under the terminal's TMK? Which PIN format is this block, and is it the PIN we
expect? Keys are given as hex or as a name from the TEST ONLY fixture (``tmk``, ``pik``, ``mak``,
``bdk``). Nothing printed contains a key or a PIN: keys show as check values, PINs as match or not.

Examples::

    posfault security verify-mac capture.hex -d unionpay_pos --framing length --key 0723C80DB5F4CD3D
    posfault security field62 C460...5276 --tmk tmk
    posfault security check-pin 1B9C1845EB993A7A --pan 4012345678909 --pin 1234 --key 042666B4...
    posfault security kcv 0123456789ABCDEFFEDCBA9876543210
    posfault security tlv 9F2608C2C12B098F3DA6E39F270180
"""

from __future__ import annotations

import argparse
import re

from iso8583 import BUILTIN_SPECS, decode, load_spec
from iso8583 import tlv as tlvmod
from iso8583.security import Key, KeyCheckError, PinBlockError, WorkingKeys, kcv, mac, pin
from iso8583.security.keys import load_test_keys

from .decode import read_input, strip_envelope, strip_length

_NAMED = ("tmk", "pik", "mak", "bdk", "aes")


def _key(text: str, algorithm: str = "tdes") -> Key:
    """A key from hex text or a TEST ONLY fixture name."""
    name = text.strip().lower()
    if name in _NAMED:
        keys = load_test_keys()
        return {"tmk": keys.tmk, "pik": keys.working_keys.pin_key, "mak": keys.working_keys.mac_key,
                "bdk": keys.bdk, "aes": keys.aes_pin_key}[name]
    compact = re.sub(r"\s+", "", text)
    if not re.fullmatch(r"[0-9A-Fa-f]+", compact or "x"):
        raise ValueError(f"a key must be hex or one of {', '.join(_NAMED)} (test keys)")
    return Key(compact, "aes" if algorithm == "aes" else "tdes")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "security", help="check MACs, PIN blocks, field 62 working keys and field 55 of captured messages",
        description="Payment-security checks on captured traffic. Keys are hex or a TEST ONLY fixture name "
                    f"({', '.join(_NAMED)}); output shows key check values, never keys or PINs.")
    sub = parser.add_subparsers(dest="security_command", metavar="CHECK", required=True)

    vm = sub.add_parser("verify-mac", help="verify field 64/128 of a captured message")
    vm.add_argument("input", metavar="FILE|HEX")
    vm.add_argument("--dialect", "-d", default="iso87ascii",
                    help=f"built-in dialect ({', '.join(BUILTIN_SPECS)}) or a spec file")
    vm.add_argument("--framing", choices=("none", "frame", "length"), default="none",
                    help="as for `posfault decode`: where INPUT starts")
    vm.add_argument("--key", required=True, help="MAC key (hex or fixture name)")
    vm.add_argument("--algorithm", default=None, help="retail, cbc, unionpay_ecb, aes_cmac (default: dialect's)")
    vm.set_defaults(func=_verify_mac)

    f62 = sub.add_parser("field62", help="decrypt sign-on working keys (field 62) and check their KCVs")
    f62.add_argument("payload", metavar="HEX")
    f62.add_argument("--tmk", required=True, help="terminal master key (hex or 'tmk')")
    f62.set_defaults(func=_field62)

    cp = sub.add_parser("check-pin", help="decode a PIN block and compare it with an expected PIN")
    cp.add_argument("block", metavar="HEX")
    cp.add_argument("--pan", default=None, help="PAN (formats 0, 3, 4)")
    cp.add_argument("--pin", required=True, help="the PIN you expect (never printed)")
    cp.add_argument("--key", required=True, help="PIN key (hex or fixture name)")
    cp.add_argument("--aes", action="store_true", help="the key is AES (format 4)")
    cp.set_defaults(func=_check_pin)

    kc = sub.add_parser("kcv", help="key check value of a key")
    kc.add_argument("key", metavar="HEX|NAME")
    kc.add_argument("--aes", action="store_true", help="AES key (CMAC check value)")
    kc.set_defaults(func=_kcv)

    tl = sub.add_parser("tlv", help="decode BER-TLV (field 55), sensitive tags masked")
    tl.add_argument("input", metavar="FILE|HEX")
    tl.set_defaults(func=_tlv)


def _verify_mac(args: argparse.Namespace) -> int:
    spec = load_spec(args.dialect)
    data = read_input(args.input)
    if args.framing == "length":
        data = strip_length(data, spec)
    if args.framing in ("frame", "length"):
        data, _ = strip_envelope(data, spec)
    key = _key(args.key)
    algorithm = mac.algorithm_for(spec, args.algorithm)
    msg = decode(data, spec)
    number = 128 if 128 in msg else 64
    if number not in msg:
        print(f"no MAC: the message has neither field 64 nor 128 (dialect {spec.name})")
        return 1
    ok = mac.verify(data, spec, key, algorithm)
    received = bytes(msg[number])
    expected = mac.compute(algorithm, key, mac.mac_input(msg, spec))
    print(f"dialect {spec.name}, MAC field {number}, algorithm {algorithm}, key kcv {kcv(key).hex().upper()}")
    print(f"received {received.hex().upper()}  computed {expected.hex().upper()}")
    print("MAC OK" if ok else "MAC MISMATCH (wrong key, wrong algorithm, or the message was altered)")
    return 0 if ok else 1


def _field62(args: argparse.Namespace) -> int:
    try:
        keys = WorkingKeys.unpack(re.sub(r"\s+", "", args.payload), _key(args.tmk))
    except KeyCheckError as exc:
        print(f"KCV MISMATCH: {exc}")
        return 1
    print(f"field 62 OK under TMK kcv {kcv(_key(args.tmk)).hex().upper()}")
    for label, key in (("PIN key", keys.pin_key), ("MAC key", keys.mac_key), ("data key", keys.data_key)):
        if key is not None:
            print(f"{label}: {len(key) * 8}-bit, kcv {kcv(key).hex().upper()}")
    return 0


def _check_pin(args: argparse.Namespace) -> int:
    key = _key(args.key, "aes" if args.aes else "tdes")
    try:
        block = bytes.fromhex(re.sub(r"\s+", "", args.block))
    except ValueError:
        raise ValueError("the PIN block must be hex") from None
    try:
        ok = pin.verify_pin(block, args.pan, key, args.pin)
    except PinBlockError as exc:
        print(f"PIN block does not decode: {exc}")
        return 1
    print("PIN matches" if ok else "PIN does NOT match (the block is well-formed)")
    return 0 if ok else 1


def _kcv(args: argparse.Namespace) -> int:
    key = _key(args.key, "aes" if args.aes else "tdes")
    print(f"{key.algorithm}-{len(key) * 8} kcv {kcv(key).hex().upper()}")
    return 0


def _tlv(args: argparse.Namespace) -> int:
    print(tlvmod.describe(read_input(args.input)))
    return 0
