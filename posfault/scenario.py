"""Scenario files: a failure scripted as data (TOML), with the verdict it is expected to produce.

A scenario names the world (dialect, terminal firmware profile, host behaviour switches, seed),
the faults on the link, the steps a person would take at the counter (sales, power cuts, host
crashes, settlement) and what the oracle must conclude. ``posfault scenario run FILE`` replays it
and exits 0 when the verdict matches, 1 with the difference when it does not.

Example (``fixtures/scenarios/debited_no_receipt.faulty.toml``)::

    [scenario]
    name = "debited, no receipt — terminal does not reverse on timeout"
    incident = "debited-no-receipt"
    seed = 7
    dialect = "unionpay_pos"
    terminal_profile = "no_reversal_on_timeout"

    [[faults]]
    action = "drop"
    direction = "to_terminal"
    mti = "0210"
    nth = 1

    [[steps]]
    do = "sale"
    amount = "100.00"
    card = "chip-ok"

    [expect]
    anomalies = ["debited-no-receipt"]

Everything is validated on load; an error names the file, the table and the key.
"""

from __future__ import annotations

import dataclasses
import pathlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .oracle import ANOMALY_KINDS, Verdict, money

DIALECTS = ("iso87ascii", "iso87binary", "iso93ascii", "unionpay_pos")
PROFILES = ("correct", "reversal_not_persisted", "no_reversal_on_timeout", "late_response_accepted",
            "offline_not_uploaded", "retransmit_new_stan", "print_before_commit")
HOST_SWITCHES = ("lose_response_after_commit", "no_duplicate_detection", "ignore_unknown_reversal",
                 "skip_payout_retries", "corrupt_response_mac")
POWER_STEPS = ("before-send", "after-send", "after-response", "before-print", "after-print")
#: The terminal of the first test merchant (fixtures/cards/merchants.toml); others select their merchant.
DEFAULT_TID = "10000001"

#: Step name -> {argument: (type, required)}. Amounts are "12.34" text or integer minor units.
STEP_ARGS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "sale": {"amount": ((str, int), True), "card": ((str,), False), "merchant": ((str,), False)},
    "offline_sale": {"amount": ((str, int), True), "card": ((str,), False)},
    "refund": {"amount": ((str, int), True), "card": ((str,), False)},
    "settle": {},
    "power_cycle": {"target": ((str,), False), "at": ((str,), False), "off_for": ((int, float), False)},
    "host_crash": {"down_for": ((int, float), False)},
    "host_restart": {},
    "printer": {"paper": ((bool,), False), "jam": ((bool,), False)},
    "reprint": {},
    "wait": {"seconds": ((int, float), True)},
    "quiesce": {},
    "fix_merchant": {"merchant": ((str,), False)},
}
TRUTH_KEYS = {"attempt": (int,), "outcome": (str,), "receipt": (bool,), "cardholder_debit": (str, int),
              "merchant_credit": (str, int)}


class ScenarioError(ValueError):
    """A scenario file or dict is malformed; the message names the file, table and key."""


@dataclass(frozen=True)
class Step:
    do: str
    args: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        args = " ".join(f"{k}={v}" for k, v in self.args.items())
        return f"{self.do} {args}".strip()


@dataclass
class Expectation:
    anomalies: list[str] | None = None             # exact multiset of anomaly kinds; None = not checked
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def differences(self, verdict: Verdict) -> list[str]:
        """What differs between this expectation and ``verdict`` (empty list = it matches)."""
        diffs: list[str] = []
        if self.anomalies is not None:
            want, got = sorted(self.anomalies), verdict.anomaly_kinds
            if want != got:
                diffs.append(f"anomalies: expected {want or 'none'}, got {got or 'none'}")
                for a in verdict.anomalies:
                    if a.kind not in want:
                        diffs.append("  unexpected " + a.describe().replace("\n", "\n  "))
        for exp in self.attempts:
            number = exp["attempt"]
            try:
                truth = verdict.truth(number)
            except KeyError as exc:
                diffs.append(str(exc.args[0]))
                continue
            for key, want in exp.items():
                if key == "attempt":
                    continue
                got = getattr(truth, key)
                if key in ("cardholder_debit", "merchant_credit"):
                    want_minor = parse_money(want, f"expect.attempts[{number}].{key}")
                    if got != want_minor:
                        diffs.append(f"attempt {number} {key}: expected {money(want_minor)}, got {money(got)}")
                elif got != want:
                    diffs.append(f"attempt {number} {key}: expected {want!r}, got {got!r}")
        return diffs


@dataclass
class Scenario:
    name: str
    steps: list[Step]
    faults: list[dict[str, Any]] = field(default_factory=list)
    seed: int = 0
    dialect: str = "iso87ascii"
    terminal_profile: str = "correct"
    tid: str = "10000001"
    #: MAC requests and responses (working keys from the sign-on); needed by MAC incidents.
    mac: bool = False
    host: dict[str, Any] = field(default_factory=dict)
    incident: str = ""
    description: str = ""
    expect: Expectation = field(default_factory=Expectation)
    source: str = "<dict>"

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | pathlib.Path) -> Scenario:
        path = pathlib.Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> Scenario:
        where = source
        _only(data, {"scenario", "host", "faults", "steps", "expect"}, where, "top level")
        head = data.get("scenario")
        if not isinstance(head, Mapping):
            raise ScenarioError(f"{where}: missing [scenario] table (with at least name = ...)")
        _only(head, {"name", "incident", "description", "seed", "dialect", "terminal_profile", "tid", "mac"},
              where, "[scenario]")
        name = _typed(head, "name", (str,), where, "[scenario]", required=True)
        dialect = _typed(head, "dialect", (str,), where, "[scenario]") or "iso87ascii"
        if dialect not in DIALECTS:
            raise ScenarioError(f"{where}: [scenario] dialect = {dialect!r}: expected one of {list(DIALECTS)}")
        profile = _typed(head, "terminal_profile", (str,), where, "[scenario]") or "correct"
        if profile not in PROFILES:
            raise ScenarioError(f"{where}: [scenario] terminal_profile = {profile!r}: expected one of {list(PROFILES)}")
        seed = _typed(head, "seed", (int,), where, "[scenario]")
        tid = _typed(head, "tid", (str,), where, "[scenario]") or DEFAULT_TID
        if not (len(tid) == 8 and tid.isalnum()):
            raise ScenarioError(f"{where}: [scenario] tid = {tid!r}: expected 8 characters (field 41)")
        mac = _typed(head, "mac", (bool,), where, "[scenario]") or False
        host = dict(data.get("host") or {})
        _only(host, set(HOST_SWITCHES), where, "[host]")
        for key, value in host.items():
            if not isinstance(value, bool):
                raise ScenarioError(f"{where}: [host] {key} must be true or false, found {value!r}")
        faults = [_fault(f, i, where) for i, f in enumerate(_array(data, "faults", where), 1)]
        steps = [_step(s, i, where) for i, s in enumerate(_array(data, "steps", where), 1)]
        if not steps:
            raise ScenarioError(f"{where}: no [[steps]]: a scenario needs at least one step (e.g. do = \"sale\")")
        return cls(name=name, steps=steps, faults=faults, seed=seed if seed is not None else 0,
                   dialect=dialect, terminal_profile=profile, host=host, tid=tid, mac=mac,
                   incident=_typed(head, "incident", (str,), where, "[scenario]") or "",
                   description=_typed(head, "description", (str,), where, "[scenario]") or "",
                   expect=_expect(data.get("expect"), where), source=source)

    # -- writing -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        head: dict[str, Any] = {"name": self.name}
        if self.incident:
            head["incident"] = self.incident
        if self.description:
            head["description"] = self.description
        head.update(seed=self.seed, dialect=self.dialect, terminal_profile=self.terminal_profile)
        if self.tid != DEFAULT_TID:
            head["tid"] = self.tid
        if self.mac:
            head["mac"] = True
        out: dict[str, Any] = {"scenario": head}
        if self.host:
            out["host"] = dict(self.host)
        if self.faults:
            out["faults"] = [dict(f) for f in self.faults]
        out["steps"] = [{"do": s.do, **s.args} for s in self.steps]
        expect: dict[str, Any] = {}
        if self.expect.anomalies is not None:
            expect["anomalies"] = list(self.expect.anomalies)
        if self.expect.attempts:
            expect["attempts"] = [dict(a) for a in self.expect.attempts]
        if expect:
            out["expect"] = expect
        return out

    def to_toml(self, comment: str = "") -> str:
        return dump_toml(self.to_dict(), comment=comment)

    def replace(self, **changes: Any) -> Scenario:
        return dataclasses.replace(self, **changes)


# -- validation helpers ------------------------------------------------------------------------------
def _only(table: Mapping[str, Any], allowed: set[str], where: str, what: str) -> None:
    for key in table:
        if key not in allowed:
            raise ScenarioError(f"{where}: {what}: unknown key {key!r} (expected one of {sorted(allowed)})")


def _typed(table: Mapping[str, Any], key: str, types: tuple[type, ...], where: str, what: str,
           required: bool = False) -> Any:
    if key not in table:
        if required:
            raise ScenarioError(f"{where}: {what}: missing required key {key!r}")
        return None
    value = table[key]
    if isinstance(value, bool) and bool not in types:
        raise ScenarioError(f"{where}: {what} {key}: expected {'/'.join(t.__name__ for t in types)}, found {value!r}")
    if not isinstance(value, types):
        raise ScenarioError(f"{where}: {what} {key}: expected {'/'.join(t.__name__ for t in types)}, "
                            f"found {type(value).__name__} {value!r}")
    return value


def _array(data: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise ScenarioError(f"{where}: {key} must be an array of tables ([[{key}]]), found {value!r}")
    return value


def parse_money(value: Any, where: str) -> int:
    """``"100.00"`` -> 10000; an int is already minor units."""
    if isinstance(value, bool):
        raise ScenarioError(f"{where}: amount expected, found {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ScenarioError(f"{where}: amount must not be negative, found {value}")
        return value
    if isinstance(value, str):
        text = value.strip()
        negative = text.startswith("-")
        whole, dot, frac = text.lstrip("-").partition(".")
        if whole.isdigit() and (not dot or (frac.isdigit() and len(frac) <= 2)):
            minor = int(whole) * 100 + int(frac.ljust(2, "0") if frac else "0")
            return -minor if negative else minor
    raise ScenarioError(f"{where}: amount must look like \"12.34\" or be integer minor units, found {value!r}")


def _fault(table: Mapping[str, Any], index: int, where: str) -> dict[str, Any]:
    """A fault rule in the fault layer's own vocabulary (posfault.faults.Rule.from_dict validates it)."""
    from .faults import FaultRuleError, Rule

    what = f"{where}: [[faults]] #{index}"
    try:
        Rule.from_dict(table, what)
    except FaultRuleError as exc:
        raise ScenarioError(str(exc)) from None
    if table.get("action") == "delay" and "seconds" not in table:
        raise ScenarioError(f"{what}: action 'delay' needs seconds = ...")
    if table.get("action") == "blackhole" and "duration" not in table:
        raise ScenarioError(f"{what}: action 'blackhole' needs duration = ...")
    return dict(table)


def _step(table: Mapping[str, Any], index: int, where: str) -> Step:
    what = f"[[steps]] #{index}"
    do = _typed(table, "do", (str,), where, what, required=True)
    if do not in STEP_ARGS:
        raise ScenarioError(f"{where}: {what} do = {do!r}: expected one of {sorted(STEP_ARGS)}")
    spec = STEP_ARGS[do]
    _only(table, {"do", *spec}, where, f"{what} ({do})")
    args: dict[str, Any] = {}
    for key, (types, required) in spec.items():
        value = _typed(table, key, types, where, f"{what} ({do})", required=required)
        if value is not None:
            args[key] = value
    if "amount" in args:
        parse_money(args["amount"], f"{where}: {what} amount")
    if do == "power_cycle":
        if args.get("target", "terminal") not in ("terminal", "host"):
            raise ScenarioError(f"{where}: {what} target = {args['target']!r}: expected \"terminal\" or \"host\"")
        if "at" in args and args["at"] not in POWER_STEPS:
            raise ScenarioError(f"{where}: {what} at = {args['at']!r}: expected one of {list(POWER_STEPS)}")
    return Step(do, args)


def _expect(table: Any, where: str) -> Expectation:
    if table is None:
        return Expectation()
    if not isinstance(table, Mapping):
        raise ScenarioError(f"{where}: [expect] must be a table")
    _only(table, {"anomalies", "attempts"}, where, "[expect]")
    anomalies = table.get("anomalies")
    if anomalies is not None:
        if not isinstance(anomalies, list) or not all(isinstance(a, str) for a in anomalies):
            raise ScenarioError(f"{where}: [expect] anomalies must be a list of strings, found {anomalies!r}")
        for a in anomalies:
            if a not in ANOMALY_KINDS:
                raise ScenarioError(f"{where}: [expect] anomalies: unknown kind {a!r} (expected {list(ANOMALY_KINDS)})")
    attempts = []
    for i, row in enumerate(_array(table, "attempts", where), 1):
        what = f"[[expect.attempts]] #{i}"
        _only(row, set(TRUTH_KEYS), where, what)
        _typed(row, "attempt", (int,), where, what, required=True)
        for key, types in TRUTH_KEYS.items():
            _typed(row, key, types, where, what)
        for key in ("cardholder_debit", "merchant_credit"):
            if key in row:
                parse_money(row[key], f"{where}: {what} {key}")
        attempts.append(dict(row))
    return Expectation(anomalies=list(anomalies) if anomalies is not None else None, attempts=attempts)


# -- a small TOML writer (tomllib reads; the stdlib has no writer) ------------------------------
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as a TOML value")


def dump_toml(data: Mapping[str, Any], comment: str = "") -> str:
    """Write the scenario-shaped ``data`` (tables of scalars, arrays of tables) as TOML text."""
    lines = [f"# {line}".rstrip() for line in comment.splitlines()] if comment else []

    def table(prefix: str, body: Mapping[str, Any], array: bool = False) -> None:
        scalars = {k: v for k, v in body.items() if not isinstance(v, Mapping) and not (
            isinstance(v, list) and v and isinstance(v[0], Mapping))}
        if lines:
            lines.append("")
        lines.append(f"[[{prefix}]]" if array else f"[{prefix}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
        for key, value in body.items():
            if isinstance(value, Mapping):
                table(f"{prefix}.{key}", value)
            elif isinstance(value, list) and value and isinstance(value[0], Mapping):
                for item in value:
                    table(f"{prefix}.{key}", item, array=True)

    for key, value in data.items():
        if isinstance(value, Mapping):
            table(key, value)
        elif isinstance(value, list):
            for item in value:
                table(key, item, array=True)
        else:
            raise TypeError(f"top-level {key!r} must be a table or an array of tables")
    return "\n".join(lines) + "\n"
