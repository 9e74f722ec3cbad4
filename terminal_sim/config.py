"""Terminal configuration: identity, dialect, timers, limits, security settings.

Timers are seconds on the event loop's clock (``loop.time()``), so under the virtual clock a 60 s
timeout costs nothing. Every timer and count the issue calls "configurable" lives here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .errors import TerminalError
from .profiles import Profile


@dataclass(frozen=True, slots=True)
class TerminalConfig:
    tid: str = "10000001"
    mid: str = "100000000000001"
    dialect: str = "iso87ascii"
    profile: str | Profile = "correct"
    currency: str = "156"
    #: Seconds to wait for a response to a request before deciding it is lost.
    response_timeout: float = 60.0
    #: How many times one recovery round sends a reversal (0400 then 0401 ...) before giving up
    #: until the next round (next transaction, settlement or power-up).
    reversal_max_tries: int = 3
    #: Seconds between two tries of a reversal or advice in one round.
    reversal_interval: float = 5.0
    #: Seconds to wait for a reversal/advice acknowledgement.
    reversal_timeout: float = 30.0
    advice_max_tries: int = 3
    #: Chip transactions at or below this amount (minor units) are approved offline and stored as
    #: an advice (0220). 0 disables offline approval.
    floor_limit: int = 0
    #: Contactless transactions at or below this amount need no PIN.
    contactless_cvm_limit: int = 30000
    #: ISO 9564 PIN block format (0, 1, 3; 4 needs an AES PIN key).
    pin_format: int = 0
    #: MAC algorithm name understood by ``iso8583.security.mac`` (None = the dialect's default).
    mac_algorithm: str | None = None
    #: Key name of the terminal master key in fixtures/keys/test_keys.toml (TEST ONLY), or hex.
    tmk: str = field(default="tmk", repr=False)
    #: Sign on automatically before the first transaction that needs working keys.
    auto_sign_on: bool = True
    #: Verify MACs on responses (a real terminal always does; off only for hosts without MAC).
    use_mac: bool = True
    #: Treat an approval that carries no MAC as untrustworthy (reverse it). Off by default because
    #: many hosts MAC only requests; a MAC that IS present is always verified.
    require_response_mac: bool = False
    #: Response codes meaning "the host cannot verify our MAC" (UnionPay A0: our working keys are stale,
    #: e.g. the host rotated them). The terminal drops its keys and signs on before the next transaction.
    resign_on_rc: tuple[str, ...] = ("A0",)
    merchant_name: str = "POSFAULT TEST SHOP"

    def __post_init__(self) -> None:
        if not (len(self.tid) == 8 and self.tid.isalnum()):
            raise TerminalError(f"tid must be 8 characters (field 41), found {self.tid!r}")
        if not (len(self.mid) == 15 and self.mid.isalnum()):
            raise TerminalError(f"mid must be 15 characters (field 42), found {self.mid!r}")
        if not (len(self.currency) == 3 and self.currency.isdigit()):
            raise TerminalError(f"currency must be a 3-digit ISO 4217 code, found {self.currency!r}")
        for name in ("response_timeout", "reversal_interval", "reversal_timeout"):
            if getattr(self, name) <= 0:
                raise TerminalError(f"{name} must be positive, found {getattr(self, name)!r}")
        for name in ("reversal_max_tries", "advice_max_tries"):
            if getattr(self, name) < 1:
                raise TerminalError(f"{name} must be at least 1, found {getattr(self, name)!r}")
        if self.pin_format not in (0, 1, 3, 4):
            raise TerminalError(f"pin_format must be 0, 1, 3 or 4, found {self.pin_format!r}")

    def replace(self, **changes: object) -> TerminalConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
