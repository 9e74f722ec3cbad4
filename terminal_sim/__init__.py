"""terminal_sim: a POS terminal simulator — journal, reversals, store-and-forward, receipts, profiles.

Talks to a host only through an `iso8583.channels.Channel`; never imports host_sim or posfault.
See docs/CONTRACTS.md §7 and the README section "POS terminal".
"""

from .cards import Card, load_cards
from .config import TerminalConfig
from .errors import PowerCut, PrinterFault, TerminalError
from .journal import AttemptRecord, Journal, RequestUse
from .printer import Printer, Receipt
from .profiles import Profile, load_profile, shipped_profiles
from .terminal import RECOVERY_STEPS, STEPS, SettleResult, Terminal, TxnResult

__all__ = [
    "RECOVERY_STEPS",
    "STEPS",
    "AttemptRecord",
    "Card",
    "Journal",
    "PowerCut",
    "Printer",
    "PrinterFault",
    "Profile",
    "Receipt",
    "RequestUse",
    "SettleResult",
    "Terminal",
    "TerminalConfig",
    "TerminalError",
    "TxnResult",
    "load_cards",
    "load_profile",
    "shipped_profiles",
]
