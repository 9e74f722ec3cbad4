"""Exceptions of the terminal simulator.

``PowerCut`` is not an error of the terminal: it is how a scenario (or the fault layer) pulls the
plug at a named step. Raised from the ``on_step`` hook, it unwinds the terminal without running a
single further statement, exactly as a real power loss would; the caller then re-creates the
terminal from its journal and calls ``power_up()``.
"""

from __future__ import annotations

from iso8583.errors import ISO8583Error


class TerminalError(ISO8583Error, RuntimeError):
    """The terminal cannot do what was asked (bad configuration, unknown attempt, no keys, ...)."""


class PowerCut(BaseException):
    """The terminal lost power at ``step`` during ``attempt``.

    Derives from BaseException so that no ``except Exception`` inside the terminal (or in user code
    between the hook and the caller) can swallow it and carry on as if power were still there.
    """

    def __init__(self, step: str = "", attempt: int | None = None) -> None:
        self.step = step
        self.attempt = attempt
        super().__init__(f"power cut at {step or 'unnamed step'}" + (f" of attempt {attempt}" if attempt else ""))


class PrinterFault(TerminalError):
    """The receipt printer could not print: ``kind`` is ``paper_out`` or ``jam``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(f"printer fault: {kind.replace('_', ' ')}")
