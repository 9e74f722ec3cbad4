"""Host configuration: careful-host settings and the behaviour switches incidents come from.

Every switch is off by default and named for what it does. Time windows are in event-loop seconds
(``loop.time()``; the simulation's virtual clock starts at 0), so a scenario can say "issuer
unavailable from t=30 s to t=90 s" and get the same behaviour on the virtual and the real clock.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Literal

from .rules import Rule


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open interval ``[start, end)`` of loop time; ``end=None`` means for ever."""

    start: float = 0.0
    end: float | None = None

    def __post_init__(self) -> None:
        if self.end is not None and self.end < self.start:
            raise ValueError(f"window ends ({self.end}) before it starts ({self.start})")

    def contains(self, t: float) -> bool:
        return self.start <= t and (self.end is None or t < self.end)


Toggle = bool | Window


def active(toggle: Toggle | None, t: float) -> bool:
    """Whether a switch given as bool or :class:`Window` is on at loop time ``t``."""
    if toggle is None or toggle is False:
        return False
    if toggle is True:
        return True
    return toggle.contains(t)


@dataclass(slots=True)
class HostConfig:
    """How the host behaves. Defaults are a careful acquirer/issuer.

    Careful-host settings:
      duplicate_response   "original": a retransmission gets the original answer (no new posting);
                           "94": it gets 94 duplicate transmission.
      content_duplicates   also treat a request with a new STAN but the same card, amount, terminal
                           and local date/time (fields 12/13) as a duplicate of an approved one (94).
      pin_tries            wrong PINs before 75 (allowable PIN tries exceeded).
      mac_required         financial requests from a signed-on terminal must carry a valid MAC.
      mac_failure_rc       rc for a bad/missing MAC; None = dialect default (UnionPay A0, ISO 96).
      mac_failure_drop     do not answer a bad MAC at all (some ISO hosts just drop it).
      mac_responses        MAC the response (field 64/128, the dialect's algorithm, the terminal's
                           working MAC key) whenever the request carried a MAC that verified.
      late_reversal        what a reversal of an already settled original does; None = dialect
                           default (ISO: "reverse" with a merchant adjustment; UnionPay: "reject" 12).
      late_original_rc     answer to an original arriving after its own reversal (never debited).
      capture              "host": every approved transaction settles at the daily cut-off;
                           "terminal_batch": only those of a terminal batch closed by settlement.
      cutoff               daily cut-off (business time of the injected clock).
      payout_delay_days    T+N payout value date.
      auto_enrol_merchants accept an unknown MID (a real test terminal) as an active merchant;
                           False answers 03 invalid merchant.
      max_amount           amounts above this are 13 invalid amount.
    Switches (incident makers; bool or Window):
      lose_response_after_commit  post the debit durably, then send nothing.
      no_duplicate_detection      a retransmission is processed (and debited) again.
      ignore_unknown_reversal     acknowledge a reversal of an unknown original but forget it, so a
                                  late original is still debited.
      skip_payout_retries         a failed payout is never retried (no 补划款).
      issuer_unavailable          answer 91 to authorizations/financials without touching the ledger.
      issuer_slow                 wait issuer_slow_delay seconds before authorizing.
      corrupt_response_mac        stamp a wrong MAC on the answer to an authorization/financial
                                  request (after committing its effect; needs a MACed request from
                                  a signed-on terminal): the terminal must distrust the approval it
                                  was sent and reverse it. Reversal answers keep a good MAC.
    """

    duplicate_response: Literal["original", "94"] = "original"
    content_duplicates: bool = True
    pin_tries: int = 3
    mac_required: bool = False
    mac_failure_rc: str | None = None
    mac_failure_drop: bool = False
    mac_responses: bool = True
    late_reversal: Literal["reverse", "reject"] | None = None
    late_original_rc: str = "12"
    capture: Literal["host", "terminal_batch"] = "host"
    cutoff: _dt.time = _dt.time(23, 0)
    payout_delay_days: int = 1
    auto_enrol_merchants: bool = True
    max_amount: int = 99_999_999_99
    rules: list[Rule] = field(default_factory=list)

    lose_response_after_commit: Toggle = False
    no_duplicate_detection: Toggle = False
    ignore_unknown_reversal: Toggle = False
    skip_payout_retries: bool = False
    issuer_unavailable: Toggle = False
    issuer_slow: Toggle = False
    issuer_slow_delay: float = 0.0
    corrupt_response_mac: Toggle = False

    def __post_init__(self) -> None:
        if self.duplicate_response not in ("original", "94"):
            raise ValueError(f"duplicate_response must be 'original' or '94', got {self.duplicate_response!r}")
        if self.capture not in ("host", "terminal_batch"):
            raise ValueError(f"capture must be 'host' or 'terminal_batch', got {self.capture!r}")
        if self.late_reversal not in (None, "reverse", "reject"):
            raise ValueError(f"late_reversal must be 'reverse' or 'reject', got {self.late_reversal!r}")
        if self.pin_tries < 1:
            raise ValueError("pin_tries must be at least 1")
        if self.issuer_slow_delay < 0:
            raise ValueError("issuer_slow_delay must not be negative")


SWITCHES = ("lose_response_after_commit", "no_duplicate_detection", "ignore_unknown_reversal",
            "skip_payout_retries", "issuer_unavailable", "issuer_slow", "corrupt_response_mac")
