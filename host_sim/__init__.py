"""host_sim: an acquirer host with its issuer ledger, settlement and merchant payouts.

Serves any `iso8583.channels.Channel`; never imports terminal_sim or posfault.

    from host_sim import Host, HostConfig, Ledger, seed
    ledger = Ledger.open(":memory:"); seed(ledger)
    host = Host(ledger, dialect="iso87ascii")
    response = await host.handle(request)
"""

from .config import SWITCHES, HostConfig, Window
from .fixtures import load_accounts, load_merchants, seed
from .host import Host
from .ledger import ConservationError, Ledger, LedgerError, LedgerTxn
from .payouts import format_report, payout_report
from .rules import MatchRule, PythonRule, RuleContext, load_rules

__all__ = [
    "SWITCHES",
    "ConservationError",
    "Host",
    "HostConfig",
    "Ledger",
    "LedgerError",
    "LedgerTxn",
    "MatchRule",
    "PythonRule",
    "RuleContext",
    "Window",
    "format_report",
    "load_accounts",
    "load_merchants",
    "load_rules",
    "payout_report",
    "seed",
]
