"""The host's use of :mod:`iso8583.security`: working keys at sign-on, MAC and PIN verification.

Kept apart from :mod:`host_sim.host` so the authorization logic reads as business rules. Key
material is held as hex in the ledger's ``terminals`` table (the host's HSM stand-in; test keys
only) and never appears in events, reprs or errors.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any, Literal

from iso8583.message import Message

from .ledger import Card, pin_hash

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_KEYS = ROOT / "fixtures" / "keys" / "test_keys.toml"
#: Used only when no test-keys fixture is present: a well-known *test* TMK (0123456789ABCDEFFEDCBA9876543210).
FALLBACK_TMK = "0123456789ABCDEFFEDCBA9876543210"

PinCheck = Literal["ok", "wrong", "no_keys"]


@dataclass(frozen=True, repr=False)
class Delivered:
    """Working keys generated at a sign-on: clear hex for the ledger, field 62 for the terminal."""

    clear_hex: dict[str, str]
    field62: Any
    kcv_text: str

    def __repr__(self) -> str:
        return f"Delivered(kcv={self.kcv_text})"


_FIXTURE_TMK: list[str] = []


def tmk_for(host: Any, tid: str) -> str:
    """The terminal master key (hex) of ``tid``: ``host.keys`` (a mapping tid -> hex with an optional
    ``"default"``, or one hex string for every terminal), else the TEST ONLY fixture TMK."""
    keys = host.keys
    if isinstance(keys, str):
        return keys
    if isinstance(keys, dict):
        if tid in keys:
            return str(keys[tid])
        if "default" in keys:
            return str(keys["default"])
    if not _FIXTURE_TMK:
        try:
            from iso8583.security.keys import load_test_keys

            _FIXTURE_TMK.append(bytes(load_test_keys().tmk).hex().upper())
        except Exception:  # no fixture file (installed package): the documented fallback test key
            _FIXTURE_TMK.append(FALLBACK_TMK)
    return _FIXTURE_TMK[0]


_SPECS: dict[Any, Any] = {}


def spec_of(host: Any) -> Any:
    """The codec Spec of the host's dialect (cached); the dialect may already be a Spec."""
    dialect = host.dialect
    if not isinstance(dialect, str):
        return dialect
    if dialect not in _SPECS:
        from iso8583 import load_spec  # type: ignore[attr-defined]

        _SPECS[dialect] = load_spec(dialect)
    return _SPECS[dialect]


def _field62_is_binary(host: Any) -> bool:
    try:
        spec = spec_of(host)
        field = spec.fields[62]
        kind = getattr(field, "type", None) or getattr(field, "data_type", None) or ""
        return str(kind).lower().startswith("b")
    except Exception:
        return host.family == "unionpay"


def new_working_keys(host: Any, tid: str) -> Delivered:
    from iso8583.security.keys import WorkingKeys, kcv

    working = WorkingKeys.generate(16, rng=host.rng)
    tmk = bytes.fromhex(tmk_for(host, tid))
    field62 = working.pack(tmk) if _field62_is_binary(host) else working.pack_hex(tmk)
    clear = {"pin_key": bytes(working.pin_key).hex().upper(), "mac_key": bytes(working.mac_key).hex().upper()}
    return Delivered(clear, field62, kcv(working.mac_key, length=3).hex().upper())


def verify_mac(host: Any, msg: Message, keys: dict[str, str], raw: bytes | None) -> bool:
    from iso8583.security import mac
    from iso8583.security.keys import Key

    try:
        return bool(mac.verify(raw if raw is not None else msg, spec_of(host), Key(keys["mac_key"])))
    except Exception:  # undecodable or unplaceable MAC: a failure, never a crash of the host
        return False


def stamp_mac(host: Any, response: Message, keys: dict[str, str], *, corrupt: bool = False) -> Message:
    """``response`` with field 64 (or 128) set to its MAC under the terminal's working MAC key, in the
    dialect's algorithm — the same one request MACs are verified with.

    ``corrupt=True`` stamps a MAC made under a different key instead: well-formed, but wrong, as a
    host with a stale key or a corrupting middlebox would send. Raises ``MacError`` when the
    response cannot carry a MAC (the caller decides what to do).
    """
    from iso8583.security import mac
    from iso8583.security.keys import Key

    key = bytes.fromhex(keys["mac_key"])
    if corrupt:
        key = bytes(b ^ 0x5A for b in key)
    return mac.stamp(response, spec_of(host), Key(key))


_PIN_AND_KEY: tuple[Any, Any] | None = None


def _pin_and_key() -> tuple[Any, Any]:
    """``iso8583.security.pin`` and ``Key``, imported on first use (cryptography loads only when a
    host meets a PIN) and then kept: an import statement per request costs a few µs."""
    global _PIN_AND_KEY
    if _PIN_AND_KEY is None:
        from iso8583.security import pin
        from iso8583.security.keys import Key

        _PIN_AND_KEY = (pin, Key)
    return _PIN_AND_KEY


#: (PIN key hex, field 52 as received, PAN) -> the PIN verification value the block decodes to (None:
#: undecipherable). A pure function of its key, so a memo: a terminal's format 0 block is the same
#: for every purchase of a card under one working key (no random fill), and the decryption plus the
#: salted hash cost ~40 µs. Holds hashes only, never a clear PIN or block; a new sign-on's key is a
#: new memo key. Bounded: emptied when full.
_PVV_MEMO: dict[tuple[str, Any, str], str | None] = {}
PVV_MEMO_SIZE = 4096


def verify_pin(host: Any, msg: Message, pan: str, card: Card, keys: dict[str, str] | None) -> PinCheck:
    """Decrypt field 52 with the terminal's PIN key and compare with the card's PIN verification value."""
    if not keys:
        return "no_keys"
    pin_key = keys["pin_key"]
    block = msg.fields.get(52)
    slot = (pin_key, block, pan)
    try:
        pvv = _PVV_MEMO[slot]
    except KeyError:
        pvv = _pvv_of(block, pan, pin_key)
        if len(_PVV_MEMO) >= PVV_MEMO_SIZE:
            _PVV_MEMO.clear()
        _PVV_MEMO[slot] = pvv
    except TypeError:   # an unhashable field value (never from a codec): no memo
        pvv = _pvv_of(block, pan, pin_key)
    return "ok" if pvv is not None and pvv == card.pin_hash else "wrong"


def _pvv_of(block: Any, pan: str, pin_key: str) -> str | None:
    """The PIN verification value of the PIN in ``block`` (None when it does not decipher)."""
    pin, Key = _pin_and_key()
    if isinstance(block, str):
        try:
            block = bytes.fromhex(block)
        except ValueError:
            return None
    try:
        clear = pin.decrypt(bytes(block), pan, Key(pin_key))
    except Exception:  # undecipherable block: counts as a wrong PIN, as issuers do
        return None
    return pin_hash(pan, clear)
