"""Firmware profiles: how this terminal behaves when things go wrong, as data.

``correct`` is how a well-made terminal behaves. Each other shipped profile flips exactly the
switches that make up one real firmware mistake, so a scenario can reproduce an incident by naming
the profile and show its fix by switching back to ``correct``. Profiles are TOML files in
``terminal_sim/profiles/``; users can load their own from a path, and a file may name a ``base``
profile and override only some switches.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import tomllib
from dataclasses import dataclass
from typing import Any

from .errors import TerminalError

PROFILE_DIR = pathlib.Path(__file__).resolve().parent / "profiles"


@dataclass(frozen=True, slots=True)
class Profile:
    """Behaviour switches of the terminal firmware (every field documented in ``correct.toml``)."""

    name: str = "correct"
    description: str = ""
    #: Write the reversal record to the journal *before* the request leaves (survives power loss).
    persist_reversal_before_send: bool = True
    #: On timeout / bad MAC / malformed response, reverse the request (0400, repeated as 0401).
    reverse_on_failure: bool = True
    #: Seconds a terminal keeps listening after its timeout and accepts a late approval (0 = never).
    late_response_grace: float = 0.0
    #: Upload pending advices (offline approvals, refunds) before settlement.
    upload_advices_before_settlement: bool = True
    #: After a lost response, send the request again with a NEW STAN (instead of reversing).
    retransmit_new_stan: bool = False
    #: How many times such a retransmission is tried.
    retransmit_count: int = 1
    #: Print the receipt before committing the approval to the journal.
    print_before_commit: bool = False
    #: Send pending reversals and advices before starting a new transaction.
    flush_before_transaction: bool = True
    #: On power-up, print approved receipts that the journal says were never printed.
    print_unprinted_on_power_up: bool = True

    @property
    def is_correct(self) -> bool:
        return self == dataclasses.replace(CORRECT, name=self.name, description=self.description)


CORRECT = Profile()
_FIELDS = {f.name: f for f in dataclasses.fields(Profile)}


def _coerce(source: str, key: str, value: Any) -> Any:
    kind = _FIELDS[key].type
    expected = {"bool": bool, "float": (int, float), "int": int, "str": str}[str(kind)]
    if str(kind) == "bool" and not isinstance(value, bool):
        raise TerminalError(f"profile {source}: {key} must be true/false, found {value!r}")
    if not isinstance(value, expected) or (str(kind) in ("int", "float") and isinstance(value, bool)):
        raise TerminalError(f"profile {source}: {key} must be {kind}, found {value!r}")
    return float(value) if str(kind) == "float" else value


def profile_from_dict(data: dict[str, Any], source: str = "<dict>", _depth: int = 0) -> Profile:
    """A Profile from a parsed TOML table (``base`` names a profile to start from)."""
    base_name = data.get("base")
    base = load_profile(str(base_name), _depth=_depth + 1) if base_name else CORRECT
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key == "base":
            continue
        if key not in _FIELDS:
            known = ", ".join(sorted(_FIELDS))
            raise TerminalError(f"profile {source}: unknown switch {key!r} (known: {known})")
        changes[key] = _coerce(source, key, value)
    return dataclasses.replace(base, **changes)


def load_profile(name_or_path: str | pathlib.Path | Profile, *, _depth: int = 0) -> Profile:
    """A shipped profile by name (``"correct"``, ``"no_reversal_on_timeout"``, ...) or a TOML path."""
    if isinstance(name_or_path, Profile):
        return name_or_path
    if _depth == 0 and isinstance(name_or_path, str) and not name_or_path.endswith(".toml"):
        return _shipped(name_or_path)
    return _load(name_or_path, _depth)


@functools.lru_cache(maxsize=64)
def _shipped(name: str) -> Profile:
    """Shipped profiles are immutable data: parse each once (terminals are re-created often)."""
    return _load(name, 0)


def _load(name_or_path: str | pathlib.Path, _depth: int) -> Profile:
    if _depth > 8:
        raise TerminalError(f"profile {name_or_path}: 'base' chain too deep (a cycle?)")
    text = str(name_or_path)
    path = pathlib.Path(text) if text.endswith(".toml") else PROFILE_DIR / f"{text}.toml"
    if not path.is_file():
        raise TerminalError(f"unknown terminal profile {text!r} (shipped: {', '.join(shipped_profiles())})")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise TerminalError(f"profile {path}: not valid TOML: {exc}") from None
    data.setdefault("name", path.stem)
    return profile_from_dict(data, str(path), _depth)


def shipped_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))
