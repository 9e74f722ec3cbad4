"""Load the issuer side of the shared test cards and the test merchants into a ledger.

``fixtures/cards/test_cards.toml`` is read by both the terminal (card side) and the host (issuer
side: balance, status, PIN, limits); ``fixtures/cards/merchants.toml`` lists merchants, their
terminals and payout bank details (docs/CONTRACTS.md §5).
"""

from __future__ import annotations

import datetime as _dt
import pathlib
import tomllib
from dataclasses import dataclass
from typing import Any

from .ledger import Card, Ledger, Merchant, pin_hash

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_CARDS = ROOT / "fixtures" / "cards" / "test_cards.toml"
DEFAULT_MERCHANTS = ROOT / "fixtures" / "cards" / "merchants.toml"
CARD_STATUSES = ("active", "blocked", "lost", "stolen", "expired")
MERCHANT_STATUSES = ("active", "frozen")


class FixtureError(ValueError):
    """A fixture file is malformed; names the file, the entry and the key."""


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """Issuer view of one test card: the card record plus its opening balance."""

    card: Card
    balance: int


_CACHE: dict[tuple[str, int, int], dict[str, Any]] = {}


def _read(path: str | pathlib.Path) -> dict[str, Any]:
    """Parse a TOML fixture (cached by path, size and mtime: simulations reseed many ledgers)."""
    path = pathlib.Path(path)
    stat = path.stat()
    cache_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if cache_key not in _CACHE:
        try:
            with path.open("rb") as fh:
                _CACHE[cache_key] = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise FixtureError(f"{path}: not valid TOML: {exc}") from None
    return _CACHE[cache_key]


def _need(where: str, table: dict[str, Any], key: str, kind: type) -> Any:
    if key not in table:
        raise FixtureError(f"{where}: missing key {key!r}")
    value = table[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise FixtureError(f"{where}: key {key!r} must be {kind.__name__}, found {type(value).__name__}")
    return value


def load_accounts(path: str | pathlib.Path = DEFAULT_CARDS) -> dict[str, AccountSpec]:
    """Card name -> :class:`AccountSpec` from a test-cards TOML file."""
    data = _read(path).get("cards", {})
    out: dict[str, AccountSpec] = {}
    for name, table in data.items():
        where = f"{path}: [cards.{name}]"
        pan = _need(where, table, "pan", str)
        if not (pan.isdigit() and 12 <= len(pan) <= 19):
            raise FixtureError(f"{where}: pan must be 12..19 digits")
        pin = _need(where, table, "pin", str)
        if not (pin.isdigit() and 4 <= len(pin) <= 12):
            raise FixtureError(f"{where}: pin must be 4..12 digits")
        status = table.get("status", "active")
        if status not in CARD_STATUSES:
            raise FixtureError(f"{where}: status must be one of {CARD_STATUSES}, found {status!r}")
        expiry = _need(where, table, "expiry", str)
        if not (expiry.isdigit() and len(expiry) == 4):
            raise FixtureError(f"{where}: expiry must be YYMM, found {expiry!r}")
        balance = int(table.get("balance", 0))
        limit = int(table.get("daily_limit", 10**12))
        out[name] = AccountSpec(Card(pan, name, status, pin_hash(pan, pin), expiry, limit), balance)
    return out


def load_merchants(path: str | pathlib.Path = DEFAULT_MERCHANTS) -> dict[str, Merchant]:
    """MID -> :class:`Merchant` from a merchants TOML file."""
    data = _read(path).get("merchants", {})
    out: dict[str, Merchant] = {}
    for mid, table in data.items():
        where = f"{path}: [merchants.{mid}]"
        if not (mid.isdigit() and len(mid) == 15):
            raise FixtureError(f"{where}: MID must be 15 digits")
        status = table.get("status", "active")
        if status not in MERCHANT_STATUSES:
            raise FixtureError(f"{where}: status must be one of {MERCHANT_STATUSES}, found {status!r}")
        terminals = table.get("terminals", [])
        if not all(isinstance(t, str) and len(t) == 8 for t in terminals):
            raise FixtureError(f"{where}: terminals must be a list of 8-character TIDs")
        out[mid] = Merchant(mid, str(table.get("name", mid)), status, str(table.get("bank_account", "")),
                            bool(table.get("bank_account_ok", True)), list(terminals))
    return out


def seed(ledger: Ledger, *, cards: str | pathlib.Path | None = DEFAULT_CARDS,
         merchants: str | pathlib.Path | None = DEFAULT_MERCHANTS,
         at: _dt.datetime | None = None) -> None:
    """Load cards and merchants into ``ledger`` once (a reopened ledger keeps its balances)."""
    at = at or _dt.datetime(2000, 1, 1)
    with ledger.step():
        _seed(ledger, cards, merchants, at)


def _seed(ledger: Ledger, cards: str | pathlib.Path | None, merchants: str | pathlib.Path | None,
          at: _dt.datetime) -> None:
    if cards is not None:
        for spec in load_accounts(cards).values():
            if ledger.card(spec.card.pan) is None:
                ledger.add_card(spec.card, spec.balance, at)
    if merchants is not None:
        for merchant in load_merchants(merchants).values():
            if ledger.merchant(merchant.mid) is None:
                ledger.add_merchant(merchant)
