"""Test cards as the terminal sees them: what a card reader gets from magstripe, chip or contactless.

Loaded from ``fixtures/cards/test_cards.toml`` (docs/CONTRACTS.md §5), the same file the host
reads for its issuer side; the terminal ignores the issuer fields (balance, status, limit).
``repr()`` never shows the PAN, PIN or track data.
"""

from __future__ import annotations

import pathlib
import tomllib
from dataclasses import dataclass, field

from iso8583.mask import mask_pan

from .errors import TerminalError

#: The fixtures shipped with the repository (also usable from an installed checkout).
DEFAULT_CARDS_PATH = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "cards" / "test_cards.toml"
ENTRY_KINDS = ("chip", "magstripe", "contactless")


@dataclass(frozen=True, slots=True)
class Card:
    """One card as presented at the terminal."""

    name: str
    pan: str = field(repr=False)
    expiry: str              # YYMM
    service_code: str = "101"
    pin: str = field(default="", repr=False)
    entry: str = "magstripe"
    card_seq: str = "001"
    emv: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if not (self.pan.isdigit() and 12 <= len(self.pan) <= 19):
            raise TerminalError(f"card {self.name!r}: pan must be 12..19 digits, found {len(self.pan)} chars")
        if not (len(self.expiry) == 4 and self.expiry.isdigit()):
            raise TerminalError(f"card {self.name!r}: expiry must be YYMM, found {self.expiry!r}")
        if self.entry not in ENTRY_KINDS:
            raise TerminalError(f"card {self.name!r}: entry must be one of {ENTRY_KINDS}, found {self.entry!r}")
        if self.entry in ("chip", "contactless") and not self.emv:
            raise TerminalError(f"card {self.name!r}: {self.entry} card needs emv (field 55) data")

    @property
    def masked_pan(self) -> str:
        return mask_pan(self.pan)

    @property
    def track2(self) -> str:
        """Track 2 equivalent data: PAN ``=`` YYMM service code, discretionary data (test only)."""
        return f"{self.pan}={self.expiry}{self.service_code}0000000000"

    @property
    def is_chip(self) -> bool:
        return self.entry in ("chip", "contactless")

    def __repr__(self) -> str:
        return f"Card(name={self.name!r}, pan={self.masked_pan!r}, entry={self.entry!r})"

    __str__ = __repr__


def load_cards(path: str | pathlib.Path | None = None) -> dict[str, Card]:
    """Cards by name from a test-cards TOML file (the shipped fixtures when ``path`` is None)."""
    source = pathlib.Path(path) if path is not None else DEFAULT_CARDS_PATH
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TerminalError(f"cards file not found: {source}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TerminalError(f"{source}: not valid TOML: {exc}") from None
    table = data.get("cards")
    if not isinstance(table, dict):
        raise TerminalError(f"{source}: expected a [cards.NAME] table")
    cards: dict[str, Card] = {}
    for name, entry in table.items():
        try:
            emv_hex = str(entry.get("emv", ""))
            cards[name] = Card(
                name=name, pan=str(entry["pan"]), expiry=str(entry["expiry"]),
                service_code=str(entry.get("service_code", "101")), pin=str(entry.get("pin", "")),
                entry=str(entry.get("entry", "magstripe")), card_seq=str(entry.get("card_seq", "001")),
                emv=bytes.fromhex(emv_hex),
            )
        except KeyError as exc:
            raise TerminalError(f"{source}: card {name!r} lacks {exc.args[0]!r}") from None
        except ValueError as exc:
            raise TerminalError(f"{source}: card {name!r}: emv is not hex ({exc})") from None
    return cards
