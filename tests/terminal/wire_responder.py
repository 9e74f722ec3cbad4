"""A tiny host on the real codec and real security: checks the terminal's MACs and PIN blocks.

Not host_sim: it exists to show, byte for byte, that what the terminal puts on the wire in each
dialect decodes, carries a MAC the host can verify with the working key it delivered at sign-on,
and a PIN block that decrypts to the PIN the cardholder typed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from iso8583 import load_spec
from iso8583.message import Message
from iso8583.security import keys, mac, pin
from iso8583.transactions import TxnType, classify, family_of, make_response
from iso8583.wire import Wire


@dataclass
class WireResponder:
    dialect: str
    tmk: Any = field(default_factory=lambda: keys.load_test_keys().tmk)
    working: Any = field(default_factory=lambda: keys.WorkingKeys.generate(16, rng=random.Random(7)))
    wrong_mac: bool = False
    requests: list[Message] = field(default_factory=list)
    mac_checks: list[bool] = field(default_factory=list)
    pins: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.spec = load_spec(self.dialect)
        self.wire = Wire(self.spec)
        self.family = family_of(self.dialect)
        self.stan_seen: set[tuple[str, str]] = set()

    def respond(self, frame: bytes) -> bytes | None:
        msg, envelope = self.wire.unpack(frame)
        self.requests.append(msg)
        txn = classify(msg, self.family)
        if txn is TxnType.SIGN_ON:
            binary = getattr(self.spec.fields[62], "type", "") == "b"
            f62 = self.working.pack(self.tmk) if binary else self.working.pack_hex(self.tmk)
            response = make_response(msg, "00", self.family, f62=f62)
        elif txn is TxnType.ECHO:
            response = make_response(msg, "00", self.family)
        else:
            if 64 in msg or 128 in msg:
                self.mac_checks.append(mac.verify(msg, self.spec, self.working.mac_key))
            if 52 in msg:
                self.pins.append(pin.decrypt(msg[52], msg[2], self.working.pin_key))
            extra: dict[str, Any] = {}
            if txn in (TxnType.SALE, TxnType.PREAUTH, TxnType.COMPLETION, TxnType.VOID, TxnType.BALANCE):
                extra = {"f37": f"{len(self.requests):012d}", "f38": "A1B2C3"}
            if txn is TxnType.BALANCE:
                extra["f54"] = "1002156C000000123456"
            response = make_response(msg, "00", self.family, **extra)
            key = keys.WorkingKeys.generate(16, rng=random.Random(99)).mac_key if self.wrong_mac else self.working.mac_key
            response = mac.stamp(response, self.spec, key)
        return self.wire.pack(response, envelope.reply() if envelope is not None else None)

    async def serve(self, channel: Any) -> None:
        try:
            while True:
                frame = await channel.recv(timeout=None)
                out = self.respond(frame)
                if out is not None:
                    await channel.send(out)
        except Exception:
            return
        finally:
            await channel.close()
