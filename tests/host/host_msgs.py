"""Request builders for the host tests (one place that knows which fields each request carries)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from host_sim import Host, HostConfig, Ledger, seed
from iso8583 import Message
from iso8583.transactions import (
    SettlementTotals,
    TxnType,
    format_amount,
    make_reversal,
    original_reference,
    request_base,
)

NOW = dt.datetime(2026, 11, 23, 10, 0, 0)
TID, MID = "10000001", "100000000000001"
PAN = "6217000000000014"          # chip-ok, balance 500000, PIN 1234
CARDS = {
    "chip-ok": "6217000000000014", "mag-ok": "6217000000000022", "insufficient": "6217000000000048",
    "blocked": "6217000000000055", "lost": "6217000000000063", "stolen": "6217000000000071",
    "expired": "6217000000000089", "low-limit": "6217000000000097",
}


class Clock:
    """A settable business clock (the host's injected ``clock``)."""

    def __init__(self, now: dt.datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def make_host(dialect: str = "iso87ascii", config: HostConfig | None = None, path: str = ":memory:",
              clock: Clock | None = None, events: list | None = None) -> Host:
    ledger = Ledger.open(path, synchronous="NORMAL")
    seed(ledger)
    return Host(ledger, dialect, config or HostConfig(), clock=clock or Clock(),
                events=events.append if events is not None else None)


def family_of_dialect(dialect: str) -> str:
    return "unionpay" if dialect.startswith("unionpay") else "iso87"


def request(txn: TxnType, family: str = "iso87", *, stan: int = 1, amount: int | None = 10000,
            pan: str = PAN, tid: str = TID, mid: str = MID, batch: str = "000001", when: str = "1123100000",
            **extra: Any) -> Message:
    mti, fields = request_base(txn, family, batch=batch)  # type: ignore[arg-type]
    fields.update({11: f"{stan:06d}", 41: tid, 42: mid})
    if txn not in (TxnType.SIGN_ON, TxnType.ECHO, TxnType.SETTLEMENT, TxnType.SETTLEMENT_FINAL):
        fields[2] = pan
        fields[49] = "156"
        fields[22] = "051"
        fields[14] = "2812"
        if amount is not None:
            fields[4] = format_amount(amount)
    if family == "iso87":
        fields[7] = when
        fields[12] = when[4:]
        fields[13] = when[:4]
    for key, value in extra.items():
        fields[int(key[1:])] = value
    return Message(mti, fields)


def sale(stan: int = 1, amount: int = 10000, family: str = "iso87", **kw: Any) -> Message:
    return request(TxnType.SALE, family, stan=stan, amount=amount, **kw)


def against(txn: TxnType, original: Message, family: str = "iso87", *, stan: int, amount: int | None = None,
            **kw: Any) -> Message:
    """A void or completion naming ``original``."""
    msg = request(txn, family, stan=stan, amount=amount if amount is not None else int(original[4]),
                  pan=original[2], **kw)
    for n, v in original_reference(original, family).items():  # type: ignore[arg-type]
        msg[n] = v
    return msg


def reversal(original: Message, family: str = "iso87", repeat: bool = False) -> Message:
    return make_reversal(original, "98", family, repeat=repeat)  # type: ignore[arg-type]


def settlement(totals: SettlementTotals, family: str = "iso87", batch: str = "000001", stan: int = 900) -> Message:
    msg = request(TxnType.SETTLEMENT, family, stan=stan, batch=batch)
    for n, v in totals.to_fields(family).items():  # type: ignore[arg-type]
        msg[n] = v
    return msg


def run(coro: Any) -> Any:
    return asyncio.run(coro)
