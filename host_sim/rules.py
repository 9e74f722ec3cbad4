"""User authorization rules, as data (TOML) or as Python callables.

Built-in checks (format 30, amount 13, card status 14/41/43/54, PIN 55/75, funds 51, limit 61)
model a careful issuer; user rules let a scenario decline *this* PAN, *that* amount or any request
whose field matches, without touching host code. Rules run after the format and amount checks and
before the card checks, first match wins.

TOML (``fixtures/host/rules.toml`` is an example)::

    [[rules]]
    name = "decline big tickets at the second till"
    rc = "05"
    txn = ["sale", "preauth"]        # optional: TxnType values
    amount_min = 100000              # optional, inclusive, minor units
    fields = { "41" = "10000002" }   # optional: field number -> exact value

    [[rules]]
    name = "custom"
    python = "mypkg.rules:decide"    # a callable(RuleContext) -> response code or None
"""

from __future__ import annotations

import importlib
import pathlib
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from iso8583.message import Message
from iso8583.transactions import RESPONSE_CODES, TxnType

from .ledger import Card


class RuleError(ValueError):
    """A rule file or rule definition is malformed (names the rule and the key)."""


@dataclass(frozen=True, slots=True)
class RuleContext:
    """What a rule may look at. ``pan`` is in clear: rules run inside the issuer."""

    txn: TxnType
    msg: Message
    pan: str
    amount: int
    tid: str
    mid: str
    card: Card | None
    balance: int


class Rule(Protocol):
    name: str

    def __call__(self, ctx: RuleContext) -> str | None: ...


@dataclass(frozen=True, slots=True)
class MatchRule:
    """Respond ``rc`` when every given condition holds (absent conditions match anything)."""

    name: str
    rc: str
    txn: frozenset[str] = frozenset()
    pans: frozenset[str] = field(default=frozenset(), repr=False)  # PANs never in a repr
    amount_min: int | None = None
    amount_max: int | None = None
    fields: dict[int, str] = field(default_factory=dict)

    def __call__(self, ctx: RuleContext) -> str | None:
        if self.txn and ctx.txn.value not in self.txn:
            return None
        if self.pans and ctx.pan not in self.pans:
            return None
        if self.amount_min is not None and ctx.amount < self.amount_min:
            return None
        if self.amount_max is not None and ctx.amount > self.amount_max:
            return None
        for number, expected in self.fields.items():
            if ctx.msg.get(number) != expected:
                return None
        return self.rc


@dataclass(frozen=True, slots=True)
class PythonRule:
    name: str
    func: Callable[[RuleContext], str | None]

    def __call__(self, ctx: RuleContext) -> str | None:
        return self.func(ctx)


def _import(target: str, where: str) -> Callable[[RuleContext], str | None]:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise RuleError(f"{where}: python must be 'module:function', found {target!r}")
    try:
        func = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise RuleError(f"{where}: cannot load {target!r}: {exc}") from None
    if not callable(func):
        raise RuleError(f"{where}: {target!r} is not callable")
    return func


def rule_from_dict(data: dict[str, Any], where: str = "rule") -> Rule:
    name = str(data.get("name", where))
    where = f"{where} {name!r}"
    known = {"name", "rc", "txn", "pan", "pans", "amount_min", "amount_max", "fields", "python"}
    unknown = set(data) - known
    if unknown:
        raise RuleError(f"{where}: unknown key(s) {sorted(unknown)}; expected some of {sorted(known)}")
    if "python" in data:
        return PythonRule(name, _import(str(data["python"]), where))
    rc = data.get("rc")
    if not isinstance(rc, str) or len(rc) != 2:
        raise RuleError(f"{where}: rc must be a 2-character response code, found {rc!r}")
    if rc not in RESPONSE_CODES:
        raise RuleError(f"{where}: rc {rc!r} is not a known response code")
    txn = data.get("txn", [])
    txn = [txn] if isinstance(txn, str) else txn
    valid = {t.value for t in TxnType}
    for t in txn:
        if t not in valid:
            raise RuleError(f"{where}: txn {t!r} is not one of {sorted(valid)}")
    pans = data.get("pans", [])
    if "pan" in data:
        pans = [*pans, data["pan"]]
    fields: dict[int, str] = {}
    for key, value in dict(data.get("fields", {})).items():
        if not str(key).isdigit():
            raise RuleError(f"{where}: fields keys must be field numbers, found {key!r}")
        fields[int(key)] = str(value)
    for bound in ("amount_min", "amount_max"):
        if bound in data and not isinstance(data[bound], int):
            raise RuleError(f"{where}: {bound} must be an integer amount in minor units")
    return MatchRule(name, rc, frozenset(txn), frozenset(str(p) for p in pans), data.get("amount_min"),
                     data.get("amount_max"), fields)


def load_rules(path: str | pathlib.Path) -> list[Rule]:
    """Rules from a TOML file with a ``[[rules]]`` array."""
    path = pathlib.Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{path}: not valid TOML: {exc}") from None
    return [rule_from_dict(item, f"{path}: rules[{i}]") for i, item in enumerate(data.get("rules", []))]


def evaluate(rules: Iterable[Rule], ctx: RuleContext) -> tuple[str, str] | None:
    """(rule name, rc) of the first rule that decides, else None."""
    for rule in rules:
        rc = rule(ctx)
        if rc is not None:
            return rule.name, rc
    return None
