"""The event trace: everything that happened in a run, in order, with its time — masked on export.

One :class:`Trace` collects the events of the terminal, the host, the ledger and the network (the
fault links). It is the ``events`` callable of CONTRACTS §0: ``trace({"actor": ..., "kind": ...})``
adds the time (``t``, the loop's clock: virtual seconds in a simulation) and a sequence number.

Network events carry the frame bytes (``frame``) so that :mod:`posfault.pcap` can write exactly what
went over the wire. Those bytes stay in memory: :meth:`Trace.to_jsonl` writes, instead of bytes, the
decoded fields passed through :func:`iso8583.mask.mask_value` (PAN 6+4, track data / PIN block /
MAC / secret EMV tags masked), and scrubs free text. The output is deterministic: sorted keys,
fixed float rounding, nothing from the wall clock — two runs with the same seed give byte-identical
files.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

from iso8583.mask import mask_value, scrub_text

__all__ = ["Connection", "Trace", "masked_fields"]

#: Keys holding raw bytes for the pcap; never exported as such.
_BYTES_KEYS = ("frame", "wire_bytes")


class Connection(NamedTuple):
    """A network connection seen by the trace (one per link), for pcap addressing.

    (Immutable, compared and hashed by value, as a frozen dataclass; a named tuple because a
    simulation opens one per sale: cheaper to make, and not tracked by the garbage collector.)"""

    id: int
    name: str
    opened_at: float


def masked_fields(message: Any) -> dict[str, str]:
    """``{"2": "476173******0010", "4": "000000010000", ...}``: every field, masked for display."""
    return {str(number): mask_value(number, value) for number, value in message.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int)):
        return value
    return scrub_text(str(value))


class Trace:
    """An ordered list of event dicts; callable as an event sink.

    ``loop``: whose ``time()`` stamps events (default: the running loop at each call).
    ``wire``: an :class:`iso8583.wire.Wire` used to decode frames for the JSONL export (optional).
    """

    def __init__(self, *, loop: asyncio.AbstractEventLoop | None = None, wire: Any = None,
                 clock: Callable[[], Any] | None = None) -> None:
        self.loop = loop
        self.wire = wire
        self.clock = clock
        # Events in order: dicts, and (t, code, args) tuples for events recorded lazily
        # (record_lazy), built into their dicts the first time ``events`` is read. ``code`` is the
        # builder's index in ``_builders``, not the builder itself: a tuple of floats, ints,
        # strings and bytes is untracked by the garbage collector at its first pass, one holding a
        # function stays tracked — and every event kept tracked makes each later full collection
        # longer (a simulation keeps several per sale: that was most of its collector time).
        self._events: list[Any] = []
        self._lazy = 0          # how many of them are still tuples
        self._builders: list[Callable[..., dict[str, Any]]] = []
        self._codes: dict[Callable[..., dict[str, Any]], int] = {}
        # The connections seen, as plain (id, name, opened_at) tuples (untracked by the garbage
        # collector, as above) until read as Connection (:attr:`connections`).
        self._connections: list[Any] = []
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        # A clock that is a pure function of this trace's loop time (the simulation's VirtualClock)
        # need not be read per event: the business time ``at`` of an event stamped with ``t`` is
        # ``clock.at(t)``, formatted when the event is exported (and for live listeners).
        self._at_of: Callable[[float], Any] | None = (
            getattr(clock, "at", None) if loop is not None and getattr(clock, "loop", None) is loop else None)
        self._time: Callable[[], float] = loop.time if loop is not None else self._now
        self._stamp_at = self._at_of is None and clock is not None   # "at" read from the clock per event

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event so far, as dicts (what was recorded lazily is built now, once)."""
        if self._lazy:
            self._build_lazy()
        return self._events

    @events.setter
    def events(self, events: list[dict[str, Any]]) -> None:
        self._events = events
        self._lazy = sum(1 for e in events if e.__class__ is tuple)

    def _build_lazy(self) -> None:
        events = self._events
        for seq in range(len(events) - 1, -1, -1):   # the tuples are the recent ones, mostly
            entry = events[seq]
            if entry.__class__ is not tuple:
                continue
            t, code, args = entry
            event = self._builders[code](*args)
            event["t"] = t
            event["seq"] = seq
            events[seq] = event
            self._lazy -= 1
            if not self._lazy:
                break

    def record_lazy(self, build: Callable[..., dict[str, Any]], *args: Any) -> None:
        """Record the event ``build(*args)`` (a fresh dict, as for :meth:`record_owned`), stamped
        now, but built only when the events are read: a simulation records every message twice
        (``recv``, ``deliver``), and a campaign or a benchmark reads few of them. ``build`` must be
        a pure function of ``args``. Live listeners, or a business clock that is not derived from
        the loop's time, get the event built at once."""
        if self._listeners or self._stamp_at:
            self.record_owned(build(*args))
            return
        code = self._codes.get(build)
        if code is None:
            code = self._register(build)
        self._events.append((self._time(), code, args))
        self._lazy += 1

    def record_lazy_pair(self, first: Callable[..., dict[str, Any]], second: Callable[..., dict[str, Any]],
                         *args: Any) -> None:
        """:meth:`record_lazy` of ``first``, then of ``second``, with the same arguments at the same
        instant (a link's "recv" and "deliver" of a frame it forwards at once): one call, one
        clock reading and one tuple of arguments for the two events."""
        if self._listeners or self._stamp_at:
            self.record_owned(first(*args))
            self.record_owned(second(*args))
            return
        codes = self._codes
        one, two = codes.get(first), codes.get(second)
        if one is None or two is None:
            one, two = self._register(first), self._register(second)
        t = self._time()
        events = self._events
        events.append((t, one, args))
        events.append((t, two, args))
        self._lazy += 2

    def _register(self, build: Callable[..., dict[str, Any]]) -> int:
        """The index of ``build`` among this trace's lazy event builders (added if new)."""
        code = self._codes.get(build)
        if code is None:
            code = self._codes[build] = len(self._builders)
            self._builders.append(build)
        return code

    def _now(self) -> float:
        loop = self.loop
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return 0.0
        return loop.time()

    def __call__(self, event: dict[str, Any]) -> None:
        """Record ``event`` (a flat dict with at least ``actor`` and ``kind``), stamping ``t``/``seq``."""
        self.record_owned(dict(event))

    record = __call__

    def record_owned(self, event: dict[str, Any]) -> None:
        """Like calling the trace, but ``event`` becomes the stored record (no copy): for producers
        that build a fresh dict per event, such as the fault links on the hot path."""
        if "t" not in event:
            event["t"] = self._time()
            if self._stamp_at and "at" not in event:
                event["at"] = self.clock().isoformat(timespec="milliseconds")  # type: ignore[misc]
        elif self.clock is not None and "at" not in event:
            event["at"] = self.clock().isoformat(timespec="milliseconds")
        events = self._events
        event["seq"] = len(events)
        events.append(event)
        if self._listeners:
            if self._at_of is not None and "at" not in event:
                event = self._with_at(event)
            for listener in self._listeners:
                listener(event)

    def _with_at(self, event: dict[str, Any]) -> dict[str, Any]:
        """``event`` with its business time ``at`` filled in (placed right after ``t``)."""
        out: dict[str, Any] = {}
        for key, value in event.items():
            out[key] = value
            if key == "t":
                out["at"] = self._at_of(value).isoformat(timespec="milliseconds")  # type: ignore[misc]
        return out

    def sink(self, actor: str, **extra: Any) -> Callable[[dict[str, Any]], None]:
        """An ``events`` callable that fills in ``actor`` (and any ``extra`` keys) when missing."""
        def emit(event: dict[str, Any]) -> None:
            self({"actor": actor, **extra, **event})
        return emit

    def subscribe(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call ``listener(event)`` for every new event (live logging, e.g. the proxy's stderr log)."""
        self._listeners.append(listener)

    @property
    def connections(self) -> list[Connection]:
        """Every connection opened so far (see :meth:`open_connection`), in order."""
        conns = self._connections
        for i, conn in enumerate(conns):
            if conn.__class__ is not Connection:
                conns[i] = Connection(*conn)
        return conns

    def open_connection(self, name: str) -> Connection:
        conn = Connection(len(self._connections), name, self._time())
        self._connections.append(conn)
        return conn

    def connection_id(self, name: str) -> int:
        """:meth:`open_connection`'s id, for a caller that needs no more (a fault link per
        simulated sale): the connection is kept as a plain tuple until :attr:`connections` is read."""
        number = len(self._connections)
        self._connections.append((number, name, self._time()))
        return number

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.events)

    def select(self, *, actor: str | None = None, kind: str | None = None,
               **equal: Any) -> list[dict[str, Any]]:
        """Events with the given actor/kind and key values."""
        return [e for e in self.events
                if (actor is None or e.get("actor") == actor) and (kind is None or e.get("kind") == kind)
                and all(e.get(k) == v for k, v in equal.items())]

    # -- export ------------------------------------------------------------------------------------
    def export_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """The masked, JSON-ready form of one event."""
        if self._at_of is not None and "at" not in event:
            event = self._with_at(event)
        out: dict[str, Any] = {}
        for key, value in event.items():
            if key in _BYTES_KEYS:
                continue
            if key == "message" and hasattr(value, "items"):
                out["mti"] = getattr(value, "mti", None)
                out["fields"] = masked_fields(value)
                continue
            out[key] = _jsonable(value)
        frame = event.get("frame")
        if isinstance(frame, (bytes, bytearray)) and "fields" not in out:
            out["size"] = len(frame)
            if self.wire is not None and event.get("decode", True):
                peek = self.wire.peek(bytes(frame))
                if peek.message is not None:
                    out.setdefault("mti", peek.message.mti)
                    out["fields"] = masked_fields(peek.message)
                else:
                    out["decode_error"] = scrub_text(peek.error or "")
        return out

    def jsonl_lines(self, events: Iterable[dict[str, Any]] | None = None) -> list[str]:
        return [json.dumps(self.export_event(e), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
                for e in (self.events if events is None else events)]

    def to_jsonl(self, target: str | Path | IO[str]) -> int:
        """Write the masked trace as JSON Lines; returns the number of events written."""
        lines = self.jsonl_lines()
        text = "".join(line + "\n" for line in lines)
        if isinstance(target, (str, Path)):
            Path(target).write_text(text, encoding="utf-8")
        else:
            target.write(text)
        return len(lines)

    def __repr__(self) -> str:
        return f"<Trace {len(self.events)} events, {len(self._connections)} connections>"
