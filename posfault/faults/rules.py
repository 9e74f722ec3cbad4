"""Fault rules as data: what to match on a link, and what to do to the matching message.

A :class:`Rule` is a :class:`Match` (direction, MTI, field values, n-th match, time window, seeded
probability, fire limit) and an :class:`Action` (drop, delay, duplicate, corrupt, truncate, fragment,
reset, black-hole, pass). A :class:`FaultPlan` is an ordered list of rules plus their state
(per-rule match counters, a seeded ``random.Random``, black-hole deadlines). One plan is shared by
every connection of a run — UnionPay terminals open one connection per transaction, so "the first
0210" must count across connections — and :class:`~posfault.faults.link.FaultLink` asks it, for
each message, what to deliver.

Rules load from TOML (``[[rule]]`` tables, see ``fixtures/faults/``) or are built in Python::

    from posfault import faults
    plan = faults.FaultPlan([
        faults.drop(direction="to_terminal", mti="0210", nth=1),      # lose the first approval
        faults.delay(65, jitter=5, direction="to_terminal", mti="0410"),
    ], seed=7)

Semantics, precisely:

* Every rule whose criteria hold *counts* the message (``nth`` is per rule, 1-based, among the
  messages that pass its direction/MTI/fields/window tests — as the sender sent them, whatever
  other rules did to them), then ``nth``, ``limit`` (how many times the rule may fire) and
  ``probability`` (one draw from the plan's RNG, only for otherwise-firing messages, so seeds
  replay exactly) decide whether it *fires*.
* Fired actions apply in rule order. ``drop``, ``reset`` and ``blackhole`` end the message (later
  rules still count it but do not fire); the others transform the list of deliveries (a delayed,
  duplicated, corrupted... frame).
* Rules that need fields (``mti``, ``fields``, ``corrupt(field=...)``) decode the frame lazily; a
  frame that does not decode matches none of them, but byte-level rules still apply to it.
* Time windows (``after``/``before``, seconds) are measured from the plan's origin: the loop time at
  which the first link using the plan started (or :meth:`FaultPlan.start`).
"""

from __future__ import annotations

import itertools
import random
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

from iso8583.message import Message
from iso8583.wire import Peek

__all__ = [
    "ACTIONS",
    "Action",
    "Blackhole",
    "Corrupt",
    "Decision",
    "Delay",
    "Delivery",
    "Drop",
    "Duplicate",
    "FaultPlan",
    "FaultRuleError",
    "Fragment",
    "Match",
    "Pass",
    "Reset",
    "Rule",
    "Truncate",
    "load_rules",
    "normalize_direction",
]

TO_HOST = "to_host"
TO_TERMINAL = "to_terminal"
_DIRECTIONS = {
    "to_host": TO_HOST, "request": TO_HOST, "requests": TO_HOST, "upstream": TO_HOST,
    "to_terminal": TO_TERMINAL, "response": TO_TERMINAL, "responses": TO_TERMINAL,
    "downstream": TO_TERMINAL,
    "both": None, "any": None,
}


class FaultRuleError(ValueError):
    """A rule (TOML or Python) is malformed; says which rule and which key."""


def normalize_direction(value: str | None) -> str | None:
    """``"to_host"``/``"request"`` -> ``"to_host"``, ``"to_terminal"``/``"response"`` -> ``"to_terminal"``,
    ``None``/``"both"`` -> ``None`` (either direction)."""
    if value is None:
        return None
    key = str(value).strip().lower()
    if key not in _DIRECTIONS:
        raise FaultRuleError(f"direction must be one of {sorted(_DIRECTIONS)}, got {value!r}")
    return _DIRECTIONS[key]


def _mti_regex(patterns: Sequence[str]) -> re.Pattern[str]:
    parts = []
    for pattern in patterns:
        text = str(pattern).strip()
        if len(text) != 4 or any(ch not in "0123456789?xX*" for ch in text):
            raise FaultRuleError(f"MTI pattern must be 4 digits, '?'/'x' as wildcards, got {pattern!r}")
        parts.append("".join("." if ch in "?xX*" else ch for ch in text))
    return re.compile("^(?:" + "|".join(parts) + ")$")


def _field_key(key: Any) -> tuple[int, str | None]:
    """``3`` / ``"3"`` -> (3, None); ``"60.1"`` -> (60, "60.1") for a composite subfield."""
    text = str(key).strip()
    number, _, _ = text.partition(".")
    if not number.isdigit():
        raise FaultRuleError(f"field key must be a number or 'N.M' subfield, got {key!r}")
    return int(number), (text if "." in text else None)


def _field_value(msg: Message, number: int, sub: str | None) -> Any:
    value = msg.get(number)
    if value is None or sub is None:
        return value
    if isinstance(value, Mapping):
        return value.get(sub, value.get(sub.split(".", 1)[1]))
    return None


def _same(found: Any, wanted: Any) -> bool:
    if isinstance(found, (bytes, bytearray)):
        found = bytes(found).hex().upper()
        wanted = wanted.hex().upper() if isinstance(wanted, (bytes, bytearray)) else str(wanted).upper()
    return found == wanted


@dataclass(frozen=True)
class Match:
    """What a rule matches. Every given criterion must hold; omitted ones match anything.

    ``direction``: ``"to_host"`` (requests) / ``"to_terminal"`` (responses) / ``None`` (both).
    ``mti``: one pattern or several (``"0210"``, ``"02?0"``). ``fields``: ``{number or "60.1": value
    or [values]}``. ``nth``: 1-based positions among matching messages (``1`` or ``[2, 3]``).
    ``after``/``before``: time window in seconds from the plan origin. ``probability``: chance to
    fire (seeded). ``limit``: fire at most this many times.
    """

    direction: str | None = None
    mti: tuple[str, ...] = ()
    fields: tuple[tuple[str, Any], ...] = ()
    nth: tuple[int, ...] = ()
    after: float | None = None
    before: float | None = None
    probability: float = 1.0
    limit: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", normalize_direction(self.direction))
        mti = (self.mti,) if isinstance(self.mti, str) else tuple(self.mti or ())
        object.__setattr__(self, "mti", tuple(str(m) for m in mti))
        raw_fields = self.fields.items() if isinstance(self.fields, Mapping) else (self.fields or ())
        normalized = []
        for key, value in raw_fields:
            _field_key(key)
            values = tuple(value) if isinstance(value, (list, tuple)) else value
            normalized.append((str(key), values))
        object.__setattr__(self, "fields", tuple(sorted(normalized)))
        nth = (self.nth,) if isinstance(self.nth, int) else tuple(self.nth or ())
        if any((not isinstance(n, int)) or n < 1 for n in nth):
            raise FaultRuleError(f"nth must be positive integers (1 = first match), got {self.nth!r}")
        object.__setattr__(self, "nth", nth)
        if not 0.0 <= float(self.probability) <= 1.0:
            raise FaultRuleError(f"probability must be between 0 and 1, got {self.probability!r}")
        if self.after is not None and self.before is not None and self.before <= self.after:
            raise FaultRuleError(f"empty time window: before={self.before} <= after={self.after}")
        if self.limit is not None and self.limit < 0:
            raise FaultRuleError(f"limit must be >= 0, got {self.limit}")
        object.__setattr__(self, "_mti_re", _mti_regex(self.mti) if self.mti else None)
        object.__setattr__(self, "_field_keys", tuple((_field_key(k), v) for k, v in self.fields))

    @property
    def needs_message(self) -> bool:
        return bool(self.mti or self.fields)

    def matches_message(self, msg: Message) -> bool:
        regex = self._mti_re  # type: ignore[attr-defined]
        if regex is not None and not regex.match(msg.mti):
            return False
        for (number, sub), wanted in self._field_keys:  # type: ignore[attr-defined]
            found = _field_value(msg, number, sub)
            if found is None:
                return False
            if isinstance(wanted, tuple):
                if not any(_same(found, w) for w in wanted):
                    return False
            elif not _same(found, wanted):
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.direction:
            out["direction"] = self.direction
        if self.mti:
            out["mti"] = self.mti[0] if len(self.mti) == 1 else list(self.mti)
        if self.fields:
            out["fields"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.fields}
        if self.nth:
            out["nth"] = self.nth[0] if len(self.nth) == 1 else list(self.nth)
        for key in ("after", "before", "limit"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.probability != 1.0:
            out["probability"] = self.probability
        return out


# ---------------------------------------------------------------------------------------------------
# Deliveries and actions
# ---------------------------------------------------------------------------------------------------

@dataclass
class Delivery:
    """One write towards the receiving side: after ``delay`` seconds, ``data`` as a frame (the channel
    adds the length header) or, if ``raw``, as bytes written verbatim (bad headers). ``pieces`` (raw
    only) splits ``data`` into several writes ``gap`` seconds apart; nothing else is written to
    that receiver in between, so the byte stream stays intact as on a real TCP connection."""

    delay: float
    data: bytes
    raw: bool = False
    note: str = ""
    pieces: tuple[bytes, ...] = ()
    gap: float = 0.0


class FaultContext:
    """What an action may use: the plan's RNG, the sending channel's length header, lazy decoding."""

    def __init__(self, rng: random.Random, wrap: Callable[[bytes], bytes],
                 peek: Callable[[], Peek], repack: Callable[[Message, Any], bytes] | None) -> None:
        self.rng = rng
        self.wrap = wrap
        self.peek = peek
        self.repack = repack


@dataclass(frozen=True)
class Action:
    """Base of all actions. ``apply`` maps the pending deliveries to new ones."""

    kind: ClassVar[str] = "?"
    terminal: ClassVar[bool] = False  # ends the message (drop, reset, blackhole)

    def apply(self, deliveries: list[Delivery], ctx: FaultContext) -> list[Delivery]:
        return deliveries

    @property
    def needs_message(self) -> bool:
        return False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            if value != f.default and value is not None:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def describe(self) -> str:
        params = {k: v for k, v in self.to_dict().items() if k != "action"}
        return self.kind + (" " + " ".join(f"{k}={v}" for k, v in params.items()) if params else "")


@dataclass(frozen=True)
class Pass(Action):
    """Forward unchanged (useful to log/count matches, or with ``nth`` as a marker)."""

    kind: ClassVar[str] = "pass"


@dataclass(frozen=True)
class Drop(Action):
    """Lose the message."""

    kind: ClassVar[str] = "drop"
    terminal: ClassVar[bool] = True

    def apply(self, deliveries: list[Delivery], ctx: FaultContext) -> list[Delivery]:
        return []


@dataclass(frozen=True)
class Delay(Action):
    """Deliver ``seconds`` later, plus a uniform jitter in ``[-jitter, +jitter]`` (never negative).

    Later messages are not held back: a delayed response can arrive after the next request, which
    is exactly the "late 0210" of the incident catalogue.
    """

    kind: ClassVar[str] = "delay"
    seconds: float = 0.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.seconds < 0 or self.jitter < 0:
            raise FaultRuleError(f"delay seconds/jitter must be >= 0, got {self.seconds}/{self.jitter}")

    def apply(self, deliveries: list[Delivery], ctx: FaultContext) -> list[Delivery]:
        extra = self.seconds + (ctx.rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0)
        extra = max(0.0, extra)
        for d in deliveries:
            d.delay += extra
        return deliveries


@dataclass(frozen=True)
class Duplicate(Action):
    """Deliver ``copies`` extra copies, each ``gap`` seconds after the previous one."""

    kind: ClassVar[str] = "duplicate"
    copies: int = 1
    gap: float = 0.0

    def __post_init__(self) -> None:
        if self.copies < 1 or self.gap < 0:
            raise FaultRuleError(f"duplicate needs copies >= 1 and gap >= 0, got {self.copies}/{self.gap}")

    def apply(self, deliveries: list[Delivery], ctx: FaultContext) -> list[Delivery]:
        out = []
        for d in deliveries:
            out.append(d)
            for k in range(1, self.copies + 1):
                out.append(Delivery(d.delay + self.gap * k, d.data, d.raw, f"copy {k}"))
        return out


def _mutate_value(value: Any, rng: random.Random) -> Any:
    """A different value of the same type and length (so the message still encodes)."""
    if isinstance(value, (bytes, bytearray)):
        if not value:
            return value
        data = bytearray(value)
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
        return bytes(data)
    if isinstance(value, dict):
        if not value:
            return value
        key = sorted(value, key=str)[rng.randrange(len(value))]
        return {**value, key: _mutate_value(value[key], rng)}
    text = str(value)
    if not text:
        return text
    i = rng.randrange(len(text))
    ch = text[i]
    if ch.isdigit():
        repl = str((int(ch) + 1 + rng.randrange(9)) % 10)
    elif ch.isalpha():
        repl = "A" if ch != "A" else "B"
    else:
        repl = "0"
    return text[:i] + repl + text[i + 1:]


@dataclass(frozen=True)
class Corrupt(Action):
    """Flip ``bits`` random bits of the frame, or corrupt one ``field``.

    With ``field`` (number, or ``"60.1"``), the message is decoded, the field set to ``value`` (or,
    without ``value``, changed to a different value of the same length: one digit or bit), and
    re-encoded — a MAC-protected message then fails MAC verification, a changed amount shows up in
    the ledger. ``offset`` restricts bit flips to bytes from that offset on (e.g. past the TPDU).
    """

    kind: ClassVar[str] = "corrupt"
    bits: int = 1
    field: str | None = None
    value: Any = None
    offset: int = 0

    def __post_init__(self) -> None:
        if self.field is not None:
            _field_key(self.field)
            object.__setattr__(self, "field", str(self.field))
        if self.bits < 1:
            raise FaultRuleError(f"corrupt bits must be >= 1, got {self.bits}")

    @property
    def needs_message(self) -> bool:
        return self.field is not None

    def apply(self, deliveries: list[Delivery], ctx: FaultContext) -> list[Delivery]:
        if self.field is not None:
            peek = ctx.peek()
            if peek.message is None or ctx.repack is None:
                return deliveries
            msg = peek.message.copy()
            number, sub = _field_key(self.field)
            if number not in msg:
                return deliveries
            if sub is None:
                msg[number] = self.value if self.value is not None else _mutate_value(msg[number], ctx.rng)
            else:
                inner = dict(msg[number])
                key = sub if sub in inner else sub.split(".", 1)[1]
                inner[key] = self.value if self.value is not None else _mutate_value(inner.get(key, ""), ctx.rng)
                msg[number] = inner
            data = ctx.repack(msg, peek.envelope)
            for d in deliveries:
                if not d.raw:
                    d.data = data
                    d.note = f"field {self.field} corrupted"
            return deliveries
        for d in deliveries:
            if d.raw or len(d.data) <= self.offset:  # raw bytes already carry their own damage
                continue
            data = bytearray(d.data)
            span = len(data) - self.offset
            for bit in ctx.rng.sample(range(span * 8), min(self.bits, span * 8)):
                data[self.offset + bit // 8] ^= 1 << (bit % 8)
            d.data = bytes(data)
            d.note = f"{self.bits} bit(s) flipped"
        return deliveries


@dataclass(frozen=True)
class Truncate(Action):
    """Cut the frame to ``keep`` bytes (or ``fraction`` of it).

    ``adjust_length=True`` (default) sends the short frame with a correct length header: the
    receiver gets a frame that fails to decode. ``False`` keeps the original header: the receiver
    waits for bytes that never come, then swallows the start of the next message (stream desync).
    """

    kind: ClassVar[str] = "truncate"
    keep: int | None = None
    fraction: float = 0.5
    adjust_length: bool = True

    def __post_init__(self) -> None:
        if self.keep is not None and self.keep < 0:
            raise FaultRuleError(f"truncate keep must be >= 0, got {self.keep}")
        if not 0.0 <= self.fraction <= 1.0:
            raise FaultRuleError(f"truncate fraction must be within 0..1, got {self.fraction}")

    def apply(self, deliveries: list[Delivery], ctx: FaultContext) -> list[Delivery]:
        for d in deliveries:
            if d.raw:
                continue
            keep = self.keep if self.keep is not None else int(len(d.data) * self.fraction)
            keep = min(keep, max(len(d.data) - 1, 0))
            if self.adjust_length:
                d.data = d.data[:keep]
            else:
                d.data = ctx.wrap(d.data)[:len(ctx.wrap(b"")) + keep]
                d.raw = True
            d.note = f"truncated to {keep} bytes"
        return deliveries


@dataclass(frozen=True)
class Fragment(Action):
    """Split the bytes on the wire (length header included) across several writes.

    ``sizes`` gives the piece sizes (the rest goes in a last piece); otherwise ``pieces`` equal
    pieces. ``gap`` seconds between pieces — with a gap longer than the receiver's idle/read
    timeout, a receiver that does not reassemble properly fails.
    """

    kind: ClassVar[str] = "fragment"
    pieces: int = 2
    sizes: tuple[int, ...] = ()
    gap: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sizes", tuple(self.sizes or ()))
        if self.pieces < 1 or any(s < 1 for s in self.sizes) or self.gap < 0:
            raise FaultRuleError("fragment needs pieces >= 1, sizes >= 1, gap >= 0")

    def apply(self, deliveries: list[Delivery], ctx: FaultContext) -> list[Delivery]:
        out = []
        for d in deliveries:
            wire = d.data if d.raw else ctx.wrap(d.data)
            cuts = []
            if self.sizes:
                pos = 0
                for size in self.sizes:
                    pos += size
                    if pos >= len(wire):
                        break
                    cuts.append(pos)
            else:
                n = min(self.pieces, max(len(wire), 1))
                cuts = [len(wire) * i // n for i in range(1, n)]
            bounds = [0, *cuts, len(wire)]
            pieces = tuple(wire[a:b] for a, b in itertools.pairwise(bounds))
            out.append(Delivery(d.delay, wire, True, f"{len(pieces)} fragments", pieces, self.gap))
        return out


@dataclass(frozen=True)
class Reset(Action):
    """Drop the message and abort the connection on both sides (TCP RST)."""

    kind: ClassVar[str] = "reset"
    terminal: ClassVar[bool] = True

    def apply(self, deliveries: list[Delivery], ctx: FaultContext) -> list[Delivery]:
        return []


@dataclass(frozen=True)
class Blackhole(Action):
    """Drop this message and everything else on the link (both directions, all connections using
    the plan) for ``duration`` seconds; connections stay open, nothing gets through."""

    kind: ClassVar[str] = "blackhole"
    terminal: ClassVar[bool] = True
    duration: float = 60.0

    def __post_init__(self) -> None:
        if self.duration <= 0:
            raise FaultRuleError(f"blackhole duration must be > 0, got {self.duration}")

    def apply(self, deliveries: list[Delivery], ctx: FaultContext) -> list[Delivery]:
        return []


ACTIONS: dict[str, type[Action]] = {cls.kind: cls for cls in
                                    (Pass, Drop, Delay, Duplicate, Corrupt, Truncate, Fragment, Reset, Blackhole)}


# ---------------------------------------------------------------------------------------------------
# Rules and plans
# ---------------------------------------------------------------------------------------------------

_MATCH_KEYS = {f.name for f in fields(Match)}


@dataclass(frozen=True)
class Rule:
    """A named :class:`Match` + :class:`Action` pair."""

    match: Match
    action: Action
    name: str = ""

    @property
    def needs_message(self) -> bool:
        return self.match.needs_message or self.action.needs_message

    @property
    def label(self) -> str:
        return self.name or self.action.describe()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name} if self.name else {}
        out.update(self.action.to_dict())
        out.update(self.match.to_dict())
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "rule") -> Rule:
        """Build from a flat table: match keys, ``action`` and the action's parameters."""
        data = dict(data)
        name = str(data.pop("name", ""))
        where = f"{where} ({name!r})" if name else where
        kind = data.pop("action", None)
        if kind is None:
            raise FaultRuleError(f"{where}: missing 'action' (one of {sorted(ACTIONS)})")
        action_cls = ACTIONS.get(str(kind).lower())
        if action_cls is None:
            raise FaultRuleError(f"{where}: unknown action {kind!r}; expected one of {sorted(ACTIONS)}")
        params = {f.name for f in fields(action_cls)}
        match_args = {k: data.pop(k) for k in list(data) if k in _MATCH_KEYS}
        action_args = {k: data.pop(k) for k in list(data) if k in params}
        if data:
            raise FaultRuleError(f"{where}: unknown key(s) {sorted(data)} for action {kind!r}; match keys are "
                                 f"{sorted(_MATCH_KEYS)}, {kind} parameters are {sorted(params) or 'none'}")
        try:
            return cls(Match(**match_args), action_cls(**action_args), name)
        except FaultRuleError as exc:
            raise FaultRuleError(f"{where}: {exc}") from None
        except TypeError as exc:
            raise FaultRuleError(f"{where}: {exc}") from None


@dataclass
class _RuleState:
    seen: int = 0
    fired: int = 0


@dataclass
class Decision:
    """What a plan decided for one message: fired rules, resulting deliveries, link-level effects."""

    fired: list[Rule] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    reset: bool = False
    blackholed: bool = False  # dropped because a black-hole was active (not by a rule firing now)

    @property
    def action(self) -> str:
        """One word for traces: ``forward`` when nothing fired, else the fired actions joined by '+'."""
        if self.blackholed:
            return "blackhole"
        if not self.fired:
            return "forward"
        return "+".join(rule.action.kind for rule in self.fired)


class FaultPlan:
    """Ordered rules + state (counters, seeded RNG, black-hole deadline). Share one per run.

    ``plan.decide(direction, frame, now, peek=..., wrap=..., repack=...)`` is called by the link for
    every message; ``plan.stats()`` says how often each rule matched and fired.
    """

    def __init__(self, rules: Iterable[Rule] = (), *, seed: int | None = 0,
                 rng: random.Random | None = None) -> None:
        self.rules: list[Rule] = list(rules)
        for i, rule in enumerate(self.rules):
            if not isinstance(rule, Rule):
                raise FaultRuleError(f"rule {i + 1}: expected a Rule, got {type(rule).__name__}")
        self.seed = seed
        self.rng = rng if rng is not None else random.Random(seed)
        self._state = [_RuleState() for _ in self.rules]
        self.origin: float | None = None
        self.blackhole_until: float = float("-inf")

    def add(self, rule: Rule) -> FaultPlan:
        self.rules.append(rule)
        self._state.append(_RuleState())
        return self

    def start(self, now: float) -> None:
        """Fix the origin of time windows (the first link does this automatically)."""
        if self.origin is None:
            self.origin = now

    @property
    def needs_message(self) -> bool:
        return any(rule.needs_message for rule in self.rules)

    def stats(self) -> list[dict[str, Any]]:
        return [{"rule": rule.label, "matched": st.seen, "fired": st.fired}
                for rule, st in zip(self.rules, self._state, strict=True)]

    def decide(self, direction: str, frame: bytes, now: float, *, peek: Callable[[], Peek],
               wrap: Callable[[bytes], bytes],
               repack: Callable[[Message, Any], bytes] | None = None) -> Decision:
        self.start(now)
        decision = Decision(deliveries=[Delivery(0.0, frame)])
        if now < self.blackhole_until:
            decision.deliveries = []
            decision.blackholed = True
            return decision
        if not self.rules:
            return decision
        elapsed = now - (self.origin or 0.0)
        ctx = FaultContext(self.rng, wrap, peek, repack)
        ended = False
        for rule, state in zip(self.rules, self._state, strict=True):
            m = rule.match
            if m.direction is not None and m.direction != direction:
                continue
            if m.after is not None and elapsed < m.after:
                continue
            if m.before is not None and elapsed >= m.before:
                continue
            if rule.needs_message:
                msg = peek().message
                if msg is None or not m.matches_message(msg):
                    continue
                if isinstance(rule.action, Corrupt) and rule.action.field is not None:
                    number = _field_key(rule.action.field)[0]
                    if number not in msg:
                        continue
            state.seen += 1
            if ended:  # a drop/reset/blackhole already ended this message: count it, fire nothing
                continue
            if m.nth and state.seen not in m.nth:
                continue
            if m.limit is not None and state.fired >= m.limit:
                continue
            if m.probability < 1.0 and self.rng.random() >= m.probability:
                continue
            state.fired += 1
            decision.fired.append(rule)
            action = rule.action
            decision.deliveries = action.apply(decision.deliveries, ctx)
            if isinstance(action, Reset):
                decision.reset = True
            if isinstance(action, Blackhole):
                self.blackhole_until = max(self.blackhole_until, now + action.duration)
            if action.terminal:
                ended = True
        return decision

    def to_dicts(self) -> list[dict[str, Any]]:
        return [rule.to_dict() for rule in self.rules]

    def __repr__(self) -> str:
        return f"FaultPlan({len(self.rules)} rules, seed={self.seed})"

    @classmethod
    def from_dicts(cls, rules: Iterable[Mapping[str, Any]], *, seed: int | None = 0) -> FaultPlan:
        return cls([Rule.from_dict(r, f"rule {i + 1}") for i, r in enumerate(rules)], seed=seed)


def load_rules(source: str | Path | Mapping[str, Any], *, seed: int | None = None) -> FaultPlan:
    """A plan from a TOML file path, TOML text, or an already-parsed dict.

    TOML layout: optional top-level ``seed``, then ``[[rule]]`` tables (``[[rules]]`` also accepted).
    ``seed`` here overrides the file's.
    """
    if isinstance(source, Mapping):
        data = dict(source)
        where = "rules"
    else:
        text_or_path = str(source)
        path = Path(text_or_path)
        if "\n" not in text_or_path and path.suffix == ".toml":
            if not path.exists():
                raise FaultRuleError(f"fault rules file not found: {path}")
            text, where = path.read_text(encoding="utf-8"), str(path)
        else:
            text, where = text_or_path, "<rules>"
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise FaultRuleError(f"{where}: invalid TOML: {exc}") from None
    tables = data.pop("rule", None) or data.pop("rules", None) or []
    file_seed = data.pop("seed", 0)
    data.pop("description", None)
    if data:
        raise FaultRuleError(f"{where}: unknown top-level key(s) {sorted(data)}; expected seed, description, [[rule]]")
    if not isinstance(tables, list):
        raise FaultRuleError(f"{where}: 'rule' must be an array of tables ([[rule]])")
    rules = [Rule.from_dict(table, f"{where}: rule {i + 1}") for i, table in enumerate(tables)]
    return FaultPlan(rules, seed=file_seed if seed is None else seed)


# ---------------------------------------------------------------------------------------------------
# The small Python API: one builder per action, match criteria as keyword arguments
# ---------------------------------------------------------------------------------------------------

def _rule(action: Action, name: str, match: dict[str, Any]) -> Rule:
    unknown = set(match) - _MATCH_KEYS
    if unknown:
        raise FaultRuleError(f"unknown match keyword(s) {sorted(unknown)}; expected {sorted(_MATCH_KEYS)}")
    return Rule(Match(**match), action, name)


def drop(*, name: str = "", **match: Any) -> Rule:
    """Lose matching messages: ``drop(direction="to_terminal", mti="0210", nth=1)``."""
    return _rule(Drop(), name, match)


def delay(seconds: float, *, jitter: float = 0.0, name: str = "", **match: Any) -> Rule:
    """Deliver matching messages ``seconds`` (± ``jitter``) late."""
    return _rule(Delay(seconds, jitter), name, match)


def duplicate(copies: int = 1, *, gap: float = 0.0, name: str = "", **match: Any) -> Rule:
    """Deliver matching messages ``1 + copies`` times, ``gap`` seconds apart."""
    return _rule(Duplicate(copies, gap), name, match)


def corrupt(*, bits: int = 1, field: int | str | None = None, value: Any = None, offset: int = 0,
            name: str = "", **match: Any) -> Rule:
    """Flip ``bits`` random bits, or change ``field`` (to ``value``, else a one-digit change)."""
    return _rule(Corrupt(bits, None if field is None else str(field), value, offset), name, match)


def truncate(*, keep: int | None = None, fraction: float = 0.5, adjust_length: bool = True,
             name: str = "", **match: Any) -> Rule:
    """Cut matching frames short (see :class:`Truncate`)."""
    return _rule(Truncate(keep, fraction, adjust_length), name, match)


def fragment(pieces: int = 2, *, sizes: Sequence[int] = (), gap: float = 0.0, name: str = "",
             **match: Any) -> Rule:
    """Split matching messages across writes, ``gap`` seconds apart."""
    return _rule(Fragment(pieces, tuple(sizes), gap), name, match)


def reset(*, name: str = "", **match: Any) -> Rule:
    """Abort the connection (RST both ways) instead of delivering the matching message."""
    return _rule(Reset(), name, match)


def blackhole(duration: float, *, name: str = "", **match: Any) -> Rule:
    """From the matching message on, drop everything for ``duration`` seconds."""
    return _rule(Blackhole(duration), name, match)


def passthrough(*, name: str = "", **match: Any) -> Rule:
    """Match and count without changing anything."""
    return _rule(Pass(), name, match)


def with_match(rule: Rule, **changes: Any) -> Rule:
    """A copy of ``rule`` with some match criteria changed."""
    return Rule(replace(rule.match, **changes), rule.action, rule.name)
