"""The receipt printer: what came out on paper, and the ways it fails.

Faults a scenario can inject: ``paper_out`` (stays until :meth:`Printer.load_paper`), ``jam``
(stays until :meth:`Printer.clear_jam`), or a one-shot fault for the next N prints
(:meth:`Printer.fail_next`). A power cut just before or after printing is the terminal's
``before-print`` / ``after-print`` step (see :class:`terminal_sim.PowerCut`).

``printer.roll`` is the physical paper: every receipt that actually came out, in order. It is
deliberately separate from the journal (the firmware's memory), although the terminal records
each successful print in the journal right after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from iso8583.transactions import rc_text

from .errors import PrinterFault

PRINTER_FAULTS = ("paper_out", "jam")


@dataclass(frozen=True, slots=True)
class Receipt:
    attempt: int
    text: str
    copy: str = "original"         # original | reprint | recovery
    at: float = 0.0


@dataclass
class Printer:
    """A receipt printer with injectable faults."""

    paper: bool = True
    jammed: bool = False
    roll: list[Receipt] = field(default_factory=list)
    _one_shot: list[str] = field(default_factory=list)

    def fail_next(self, fault: str, count: int = 1) -> None:
        """The next ``count`` prints fail with ``fault`` (then the printer works again)."""
        if fault not in PRINTER_FAULTS:
            raise ValueError(f"printer fault must be one of {PRINTER_FAULTS}, got {fault!r}")
        self._one_shot.extend([fault] * count)

    def paper_out(self) -> None:
        self.paper = False

    def load_paper(self) -> None:
        self.paper = True

    def jam(self) -> None:
        self.jammed = True

    def clear_jam(self) -> None:
        self.jammed = False

    def print(self, receipt: Receipt) -> None:
        """Put ``receipt`` on paper or raise :class:`PrinterFault` (nothing comes out then)."""
        if self._one_shot:
            raise PrinterFault(self._one_shot.pop(0))
        if self.jammed:
            raise PrinterFault("jam")
        if not self.paper:
            raise PrinterFault("paper_out")
        self.roll.append(receipt)

    @property
    def last(self) -> Receipt | None:
        return self.roll[-1] if self.roll else None


def format_receipt(*, merchant: str, mid: str, tid: str, kind: str, amount: int, currency: str, card: str,
                   entry: str, stan: str, batch: int, rc: str | None, auth_code: str | None, rrn: str | None,
                   when: str, outcome: str, offline: bool = False) -> str:
    """The receipt text (card already masked). Amounts are minor units shown with two decimals."""
    title = _TITLES.get(kind) or kind.upper()
    sign = "-" if kind in ("void", "refund") else ""
    return (f"{merchant}\nMID {mid}  TID {tid}\n{title}{' (OFFLINE)' if offline else ''}\n"
            f"CARD {card} ({entry})\nBATCH {batch:06d}  TRACE {stan}\nDATE {when}\n"
            f"REF {rrn or '-'}  AUTH {auth_code or '-'}\n"
            f"AMOUNT {currency} {sign}{amount // 100}.{amount % 100:02d}\n"
            f"RESULT {outcome.upper()} ({rc_text(rc) if rc else 'offline'})")


_TITLES = {"sale": "SALE", "void": "VOID", "refund": "REFUND", "preauth": "PRE-AUTH",
           "completion": "PRE-AUTH COMPLETION", "balance": "BALANCE"}
