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
from typing import Any

from iso8583.transactions import rc_text

from .errors import PrinterFault

PRINTER_FAULTS = ("paper_out", "jam")


class Receipt:
    """One receipt as it came out of (or was sent to) the printer.

    ``text`` may be given, or rendered on first read from ``source`` — the
    :func:`render_receipt` arguments: a terminal prints one receipt per sale that usually nobody
    reads back in a simulation, so its text is not built until someone does. Immutable.
    """

    __slots__ = ("_source", "_text", "at", "attempt", "copy")

    attempt: int
    copy: str            # original | reprint | recovery
    at: float

    def __init__(self, attempt: int, text: str | None = None, copy: str = "original", at: float = 0.0, *,
                 source: tuple[Any, ...] | None = None) -> None:
        if text is None and source is None:
            raise ValueError("a receipt needs its text or the source to render it from")
        setter = object.__setattr__
        setter(self, "attempt", attempt)
        setter(self, "copy", copy)
        setter(self, "at", at)
        setter(self, "_text", text)
        setter(self, "_source", source)

    @property
    def text(self) -> str:
        text = self._text
        if text is None:
            text = render_receipt(*self._source)  # type: ignore[misc]
            object.__setattr__(self, "_text", text)
        return text

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Receipt is immutable (cannot set {name!r})")

    @classmethod
    def lazy(cls, attempt: int, source: tuple[Any, ...], copy: str, at: float) -> Receipt:
        """``Receipt(attempt, None, copy, at, source=source)``, made without the immutable
        type's per-attribute ``object.__setattr__`` calls (a third of the cost; one per sale)."""
        made = _ReceiptFields()
        made.attempt = attempt
        made.copy = copy
        made.at = at
        made._text = None
        made._source = source
        made.__class__ = cls
        return made  # type: ignore[return-value]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Receipt):
            return NotImplemented
        return (self.attempt, self.text, self.copy, self.at) == (other.attempt, other.text, other.copy, other.at)

    def __hash__(self) -> int:
        return hash((self.attempt, self.text, self.copy, self.at))

    def __repr__(self) -> str:
        return f"Receipt(attempt={self.attempt!r}, text={self.text!r}, copy={self.copy!r}, at={self.at!r})"


class _ReceiptFields:
    """A mutable twin of :class:`Receipt` (same slots), only used to build one."""

    __slots__ = Receipt.__slots__


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
    return render_receipt(merchant, mid, tid, kind, amount, currency, card, entry, stan, batch, rc, auth_code, rrn,
                          when, outcome, offline)


def render_receipt(merchant: str, mid: str, tid: str, kind: str, amount: int, currency: str, card: str,
                   entry: str, stan: str, batch: int, rc: str | None, auth_code: str | None, rrn: str | None,
                   when: str, outcome: str, offline: bool = False) -> str:
    """:func:`format_receipt` with positional arguments (the form a lazy :class:`Receipt` keeps)."""
    title = _TITLES.get(kind) or kind.upper()
    sign = "-" if kind in ("void", "refund") else ""
    return (f"{merchant}\nMID {mid}  TID {tid}\n{title}{' (OFFLINE)' if offline else ''}\n"
            f"CARD {card} ({entry})\nBATCH {batch:06d}  TRACE {stan}\nDATE {when}\n"
            f"REF {rrn or '-'}  AUTH {auth_code or '-'}\n"
            f"AMOUNT {currency} {sign}{amount // 100}.{amount % 100:02d}\n"
            f"RESULT {outcome.upper()} ({rc_text(rc) if rc else 'offline'})")


_TITLES = {"sale": "SALE", "void": "VOID", "refund": "REFUND", "preauth": "PRE-AUTH",
           "completion": "PRE-AUTH COMPLETION", "balance": "BALANCE"}
