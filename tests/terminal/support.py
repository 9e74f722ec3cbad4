"""Test support for the terminal: a stand-in link, an in-test host on in-memory channels, a harness.

The in-test host is deliberately small and *not* host_sim: terminal tests must pin down the
terminal's behaviour on the wire without depending on another package's choices. It keeps an
issuer ledger of net debits per transaction key so that tests can assert money, not just messages.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from iso8583.channels.memory import pipe
from iso8583.message import Message
from iso8583.transactions import (
    SettlementTotals,
    TxnType,
    classify,
    make_response,
    original_key,
    txn_key,
)
from terminal_sim import Journal, Printer, Terminal, TerminalConfig
from terminal_sim.link import LinkError

FAKE_KEYS_62 = "00" * 8


@dataclass(frozen=True)
class FakeKeys:
    pin_key: bytes
    mac_key: bytes


class FakeLink:
    """Messages as JSON with an HMAC in field 64: exercises the state machine, not the codec."""

    def __init__(self, family: str = "iso87") -> None:
        self.family = family

    def supports(self, field: int) -> bool:
        return True

    def field_size(self, field: int) -> int | None:
        return None

    @staticmethod
    def _data(msg: Message) -> dict[str, Any]:
        data: dict[str, Any] = {"mti": msg.mti}
        for n, v in msg.fields.items():
            if n != 64:
                data[str(n)] = {"$b": v.hex()} if isinstance(v, bytes) else v
        return data

    @staticmethod
    def _mac(keys: Any, data: dict[str, Any]) -> str:
        body = json.dumps(data, sort_keys=True).encode()
        return hmac.new(keys.mac_key, body, hashlib.sha256).hexdigest()[:16]

    def pack(self, msg: Message, keys: Any | None) -> bytes:
        data = self._data(msg)
        if keys is not None:
            data["64"] = self._mac(keys, data)
        return json.dumps(data, sort_keys=True).encode()

    def unpack(self, frame: bytes, keys: Any | None) -> tuple[Message, bool | None]:
        try:
            data = json.loads(frame)
            mac = data.pop("64", None)
            body = dict(data)
            mti = data.pop("mti")
            fields = {int(k): (bytes.fromhex(v["$b"]) if isinstance(v, dict) and "$b" in v else v)
                      for k, v in data.items()}
            msg = Message(mti, fields)
        except (ValueError, KeyError, TypeError) as exc:
            raise LinkError(f"undecodable frame: {exc}") from None
        if mac is None or keys is None:
            return msg, None
        return msg, hmac.compare_digest(mac, self._mac(keys, body))

    def unwrap_keys(self, field62: Any) -> FakeKeys:
        return FakeKeys(b"P" * 16, b"M" * 16)

    def pin_block(self, pin: str, pan: str, keys: Any) -> bytes:
        return hashlib.sha256((pin + pan).encode()).digest()[:8]


@dataclass
class FakeHost:
    """An issuer/acquirer good enough to judge the terminal: duplicate detection by key,
    idempotent reversals, advices, settlement totals. Faults are per-message callables."""

    link: FakeLink
    keys: FakeKeys = field(default_factory=lambda: FakeKeys(b"P" * 16, b"M" * 16))
    #: net debit per transaction key (cardholder side)
    debits: dict[Any, int] = field(default_factory=dict)
    reversed: set = field(default_factory=set)
    advices: dict[Any, int] = field(default_factory=dict)
    seen: list[Message] = field(default_factory=list)
    #: decide per request: None = answer normally; "drop", "bad_mac", "garbage", ("delay", s), ("rc", "51")
    fault: Callable[[Message, int], Any] | None = None
    decline_amounts: dict[int, str] = field(default_factory=dict)
    settled_batches: list[tuple[str, SettlementTotals, str]] = field(default_factory=list)
    uploads: list[Message] = field(default_factory=list)
    voids: dict[Any, Any] = field(default_factory=dict)
    count: int = 0

    def totals(self) -> SettlementTotals:
        t = SettlementTotals()
        for key, amount in self.debits.items():
            if amount > 0 and key not in self.reversed:
                t = t.add(TxnType.SALE, amount)
        for amount in self.advices.values():
            t = t.add(TxnType.SALE, amount) if amount > 0 else t.add(TxnType.REFUND, -amount)
        return t

    def net(self) -> int:
        return sum(a for k, a in self.debits.items() if k not in self.reversed) + sum(self.advices.values())

    def answer(self, req: Message) -> Message | None:
        fam = self.link.family
        txn = classify(req, fam)  # type: ignore[arg-type]
        if txn is TxnType.SIGN_ON:
            return make_response(req, "00", fam, f62=FAKE_KEYS_62)  # type: ignore[arg-type]
        if txn is TxnType.ECHO:
            return make_response(req, "00", fam)  # type: ignore[arg-type]
        key = txn_key(req, fam)  # type: ignore[arg-type]
        if txn in (TxnType.SALE, TxnType.COMPLETION):
            if key in self.debits:
                return make_response(req, "00", fam, f37="000000000001", f38="123456")  # type: ignore[arg-type]
            amount = int(req[4])
            rc = self.decline_amounts.get(amount, "00")
            if rc == "00":
                self.debits[key] = amount
            return make_response(req, rc, fam, f37=f"{len(self.debits):012d}",  # type: ignore[arg-type]
                                 f38="123456" if rc == "00" else None)
        if txn is TxnType.PREAUTH:
            return make_response(req, "00", fam, f37="000000000009", f38="654321")  # type: ignore[arg-type]
        if txn is TxnType.BALANCE:
            return make_response(req, "00", fam, f54="1002156C000000500000")  # type: ignore[arg-type]
        if txn is TxnType.VOID:
            orig = original_key(req, fam)  # type: ignore[arg-type]
            if key not in self.voids and orig in self.debits and orig not in self.reversed:
                self.reversed.add(orig)
                self.voids[key] = orig
            self.debits.setdefault(key, 0)
            return make_response(req, "00", fam, f37="000000000002", f38="123456")  # type: ignore[arg-type]
        if txn is TxnType.REVERSAL:
            orig = original_key(req, fam)  # type: ignore[arg-type]
            if orig in self.voids:  # reversing a void puts the original debit back
                self.reversed.discard(self.voids.pop(orig))
            self.reversed.add(orig)
            return make_response(req, "00", fam)  # type: ignore[arg-type]
        if txn in (TxnType.REFUND, TxnType.OFFLINE_SALE):
            amount = int(req[4])
            self.advices.setdefault(key, -amount if txn is TxnType.REFUND else amount)
            return make_response(req, "00", fam)  # type: ignore[arg-type]
        if txn is TxnType.SETTLEMENT:
            theirs = SettlementTotals.from_message(req, fam)  # type: ignore[arg-type]
            rc = "00" if theirs == self.totals() else "95"
            self.settled_batches.append((str(req.get(60)), theirs, rc))
            return make_response(req, rc, fam)  # type: ignore[arg-type]
        if txn in (TxnType.BATCH_UPLOAD, TxnType.SETTLEMENT_FINAL):
            self.uploads.append(req)
            return make_response(req, "00", fam)  # type: ignore[arg-type]
        return make_response(req, "12", fam)  # type: ignore[arg-type]

    async def serve(self, ch: Any) -> None:
        while True:
            try:
                frame = await ch.recv(timeout=None)
            except Exception:
                return
            req, _ = self.link.unpack(frame, None)
            self.seen.append(req)
            self.count += 1
            action = self.fault(req, self.count) if self.fault else None
            resp = self.answer(req)
            if resp is None or action == "drop":
                continue
            keys = self.keys if req.mti not in ("0800", "0820") else None
            out = self.link.pack(resp, keys)
            if action == "bad_mac":
                out = self.link.pack(resp, FakeKeys(b"x" * 16, b"y" * 16))
            elif action == "garbage":
                out = b"\x00garbage"
            elif isinstance(action, tuple) and action[0] == "delay":
                asyncio.get_running_loop().call_later(action[1], _send_later, ch, out)
                continue
            try:
                await ch.send(out)
            except Exception:
                return

    def connector(self) -> Callable[[], Any]:
        async def connect() -> Any:
            term_side, host_side = pipe()
            asyncio.get_running_loop().create_task(self.serve(host_side))
            return term_side
        return connect


_LATER: set = set()


def _send_later(ch: Any, frame: bytes) -> None:
    if not ch.closed:
        task = asyncio.ensure_future(_safe_send(ch, frame))
        _LATER.add(task)
        task.add_done_callback(_LATER.discard)


async def _safe_send(ch: Any, frame: bytes) -> None:
    try:
        await ch.send(frame)
    except Exception:
        pass


def make_terminal(host: FakeHost, journal: Journal | None = None, *, profile: str = "correct",
                  printer: Printer | None = None, on_step: Any = None, **config: Any) -> Terminal:
    from posfault.clock import clock_for

    cfg = TerminalConfig(profile=profile, **config)
    return Terminal(cfg, journal=journal or Journal.open(":memory:"), connector=host.connector(),
                    printer=printer or Printer(), link=host.link, clock=clock_for(),
                    on_step=on_step)
