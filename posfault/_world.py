"""The simulation's adapters to the terminal and host packages (CONTRACTS §6, §7).

Everything the simulation needs from ``terminal_sim`` and ``host_sim`` goes through this one module,
so that an interface change on either side is absorbed here and nowhere else. It also turns their
records into the oracle's plain records (times as simulation seconds).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import datetime as _dt
import functools
import itertools
import os
import pathlib
import shutil
import sqlite3
import tempfile
from typing import TYPE_CHECKING, Any

from .oracle import AttemptRecord, LedgerRecord

if TYPE_CHECKING:
    from .simulation import Simulation

@functools.cache
def _test_tmk() -> bytes:
    """The TEST ONLY terminal master key both sides share (the key ceremony, done by the simulation)."""
    from iso8583.security import keys

    return bytes(keys.load_test_keys().tmk)


def _test_tmk_hex() -> str:
    return _test_tmk().hex().upper()


@functools.cache
def _cards() -> dict[str, Any]:
    from terminal_sim import load_cards

    return load_cards()


_TEMPLATES: dict[str, pathlib.Path] = {}


_flash_ids = itertools.count(1)


@functools.cache
def memory_flash_supported() -> bool:
    """Whether an in-memory shared database can be named to ``sqlite3.connect`` without ``uri=True``
    (the host ledger opens its path plainly): true where SQLite is built with USE_URI (Debian,
    Ubuntu, most distributions); elsewhere the simulation keeps its databases in files."""
    conn = sqlite3.connect(":memory:")
    try:
        return any(row[0] == "USE_URI" for row in conn.execute("PRAGMA compile_options"))
    finally:
        conn.close()


def _ledger_template(epoch: _dt.datetime) -> pathlib.Path:
    """A ledger file seeded with the test cards and merchants, built once per process and epoch and
    copied for each simulation (seeding parses TOML and writes hundreds of rows)."""
    from host_sim import fixtures as host_fixtures
    from host_sim.ledger import Ledger

    from .simulation import _ram_dir

    key = epoch.isoformat()   # forked campaign workers reuse their parent's (read-only) template
    path = _TEMPLATES.get(key)
    if path is None or not path.exists():
        directory = pathlib.Path(tempfile.mkdtemp(prefix="posfault-ledger-template-", dir=_ram_dir()))
        path = directory / "host.db"
        ledger = Ledger.open(str(path), synchronous="OFF")
        host_fixtures.seed(ledger, at=epoch)
        ledger.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        ledger.close()
        atexit.register(shutil.rmtree, directory, True)
        _TEMPLATES[key] = path
    return path


@functools.cache
def _merchant_of(tid: str) -> str:
    """The merchant a terminal belongs to, from fixtures/cards/merchants.toml."""
    import tomllib

    from .simulation import MERCHANTS_FILE

    data = tomllib.loads(MERCHANTS_FILE.read_text(encoding="utf-8"))
    for mid, merchant in data.get("merchants", {}).items():
        if tid in merchant.get("terminals", []):
            return mid
    return "100000000000001"


class World:
    """Owns the live terminal, journal, printer, host and ledger of one :class:`Simulation`."""

    def __init__(self, sim: Simulation) -> None:
        from host_sim.config import HostConfig
        from host_sim.ledger import Ledger
        from host_sim.serve import DirectServer
        from terminal_sim import Journal, Printer
        from terminal_sim.errors import PowerCut

        self.sim = sim
        self._PowerCut = PowerCut
        self._DirectServer = DirectServer
        self.cards = _cards()
        self.mid = _merchant_of(sim.tid)
        self._Ledger = Ledger
        self._flash: list[sqlite3.Connection] = []
        template = _ledger_template(sim.epoch)
        if sim.storage == "memory" and not memory_flash_supported():
            sim._fall_back_to_files()
        if sim.storage == "memory":
            tag = f"posfault-sim-{os.getpid()}-{next(_flash_ids)}"
            self.ledger_path = f"file:{tag}-host?mode=memory&cache=shared"
            self.journal_path = f"file:{tag}-terminal?mode=memory&cache=shared"
            # The simulation holds one connection to each database: its "flash" then outlives the
            # device's own connections (power cycles, host restarts), as a file would.
            self._flash = [sqlite3.connect(self.ledger_path, uri=True), sqlite3.connect(self.journal_path, uri=True)]
            source = sqlite3.connect(template)
            try:
                source.backup(self._flash[0])
            finally:
                source.close()
        else:
            self.ledger_path = str(sim.workdir / "host.db")
            self.journal_path = str(sim.workdir / "terminal.db")
            shutil.copyfile(template, self.ledger_path)
        self.ledger = Ledger.open(self.ledger_path, synchronous="OFF")
        switches = {k: v for k, v in sim.host_switches.items() if k in HostConfig.__dataclass_fields__}
        unknown = set(sim.host_switches) - set(switches)
        if unknown:
            raise ValueError(f"unknown host switch(es) {sorted(unknown)}")
        self.host_config = HostConfig(**switches)
        self.host = self._new_host()
        self.journal = Journal.open(self.journal_path)
        self.printer = Printer()
        self.pending_power_off: float | None = None
        self.terminal = self._new_terminal()
        self._signed_on = False

    # -- construction ------------------------------------------------------------------------------
    # Terminal and host build a fresh dict per event and never touch it again: the trace keeps
    # it as is (``record_owned``) rather than copying it (``sim.emit``), eight events per sale.
    def _new_host(self) -> Any:
        from host_sim import Host

        return Host(self.ledger, dialect=self.sim.dialect, config=self.host_config, clock=self.sim.clock,
                    events=self.sim.trace.record_owned, rng=self.sim.rng, keys={self.sim.tid: _test_tmk_hex()})

    def _new_terminal(self) -> Any:
        from terminal_sim import Terminal, TerminalConfig

        kwargs: dict[str, Any] = {"tid": self.sim.tid, "mid": self.mid, "dialect": self.sim.dialect,
                                  "profile": self.sim.profile}
        if self.sim.response_timeout is not None:
            kwargs["response_timeout"] = self.sim.response_timeout
        kwargs["use_mac"] = self.sim.mac
        return Terminal(TerminalConfig(**kwargs), journal=self.journal, connector=self.sim.connect,
                        printer=self.printer, clock=self.sim.clock, rng=self.sim.rng,
                        events=self.sim.trace.record_owned, on_step=self._step_hook(), tmk=_test_tmk())

    def _step_hook(self) -> Any:
        """The terminal's step hook: Simulation.on_step while a power cut is armed, else none — the
        hook does nothing at a step without a cut, and an unhooked step costs the terminal nothing
        (five steps per sale)."""
        return self.sim.on_step if self.sim._armed else None

    def watch_steps(self) -> None:
        """Hook or unhook the terminal's steps, now that a cut was armed or has fired (see _step_hook)."""
        self.terminal.on_step = self._step_hook()

    async def start(self) -> None:
        """Start of day: sign on, so that PIN blocks (and MACs, when on) have working keys."""
        result = await self.terminal.sign_on()
        if not result.approved:
            raise RuntimeError(f"simulated terminal could not sign on: {result.detail}")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.journal.close()
        with contextlib.suppress(Exception):
            self.ledger.close()
        for conn in self._flash:   # the in-memory flash is freed with its last connection
            conn.close()
        self._flash = []

    def power_cut_exception(self, step: str, attempt: Any = None) -> BaseException:
        return self._PowerCut(step, attempt)

    # -- host side -----------------------------------------------------------------------------------
    def serve_direct(self, channel: Any, server: Any = None) -> Any:
        """Serve the host end of a direct in-memory connection with no task (what :meth:`serve`
        does, driven by the link: ``host_sim.serve.DirectServer``); returns its ``start`` (a bound
        method: its ``__self__`` is the server). ``server``: the one that served the previous
        connection on this channel (a reused link), serving again if it can."""
        if server is None or server.host is not self.host or not server.reopen():
            server = self._DirectServer(self.host, channel, on_error=self._connection_error,
                                        on_task=self.sim._host_task)
        return server.start

    def _connection_error(self, exc: BaseException) -> None:
        self.sim.emit({"actor": "host", "kind": "connection_error", "detail": type(exc).__name__})

    async def serve(self, channel: Any) -> None:
        host = self.host
        try:
            await host.serve(channel)
        except asyncio.CancelledError:
            raise
        except Exception as exc:   # the connection dies; the terminal sees a closed channel
            self.sim.emit({"actor": "host", "kind": "connection_error", "detail": type(exc).__name__})
        finally:
            try:   # (not contextlib.suppress: once per connection, and two calls cheaper)
                await channel.close()
            except Exception:
                pass

    async def crash_host(self) -> None:
        self.host.crash()
        for link in list(self.sim._links):
            with contextlib.suppress(Exception):
                await link.host_end.reset()
        await asyncio.sleep(0)

    def restart_host(self) -> None:
        # Durable state only: reopen the ledger file as a restarted process would.
        with contextlib.suppress(Exception):
            self.ledger.close()
        self.ledger = self._Ledger.open(self.ledger_path, synchronous="OFF")
        self.host.restart(self.ledger)

    def fix_merchant(self, mid: str | None) -> None:
        mid = mid or self.mid
        self.ledger.update_merchant(mid, status="active", bank_account_ok=True)
        self.sim.emit({"actor": "ledger", "kind": "merchant_fixed", "detail": f"merchant {mid} account fixed"})

    # -- terminal side ---------------------------------------------------------------------------------
    async def _guard(self, coro: Any) -> Any:
        """Run a terminal operation; on a power cut, re-create the terminal from its journal."""
        try:
            return await coro
        except self._PowerCut:
            await self.power_cycle_terminal(self.pending_power_off or 5.0)
            return None

    async def power_cycle_terminal(self, off_for: float) -> None:
        self.pending_power_off = None
        for link in list(self.sim._links):
            with contextlib.suppress(Exception):
                await link.terminal_end.close()
        self.sim.emit({"actor": "terminal", "kind": "power_off"})
        await asyncio.sleep(off_for)
        self.journal = self.journal.reopen()
        self.terminal = self._new_terminal()
        self.sim.emit({"actor": "terminal", "kind": "power_on"})
        try:
            await self.terminal.power_up()
        except self._PowerCut:   # a cut armed for a recovery step
            await self.power_cycle_terminal(self.pending_power_off or 5.0)

    def sale(self, amount: int, card_name: str) -> Any:
        """The coroutine of a sale with a known test card: what ``transaction("sale", ...)`` awaits,
        without the coroutine around it."""
        return self._guard(self.terminal.sale(amount, card=self.cards[card_name]))

    async def transaction(self, kind: str, amount: int, card_name: str) -> Any:
        try:
            card = self.cards[card_name]
        except KeyError:
            raise ValueError(f"unknown card {card_name!r}; test cards: {sorted(self.cards)}") from None
        term = self.terminal
        if kind == "sale":
            return await self._guard(term.sale(amount, card=card))
        if kind == "offline_sale":
            # The terminal approves offline what a chip card pays at or below its floor limit.
            if card.entry != "chip":
                raise ValueError(f"an offline sale needs a chip card; {card_name!r} is {card.entry}")
            config = term.config
            term.config = config.replace(floor_limit=amount)
            try:
                return await self._guard(term.sale(amount, card=card))
            finally:
                term.config = config
        if kind == "refund":
            return await self._guard(term.refund(amount, card=card))
        raise ValueError(f"unknown transaction {kind!r}")

    async def settle(self) -> Any:
        return await self._guard(self.terminal.settle())

    async def reprint(self) -> Any:
        return await self._guard(self.terminal.reprint())

    def set_printer(self, *, paper: bool, jam: bool) -> None:
        if paper:
            self.printer.load_paper()
        else:
            self.printer.paper_out()
        if jam:
            self.printer.jam()
        else:
            self.printer.clear_jam()
        self.sim.emit({"actor": "printer", "kind": "paper_out" if not paper else "paper_loaded",
                       **({"fault": "paper_out"} if not paper else {})})

    def receipts(self) -> list[Any]:
        return list(self.printer.roll)

    # -- quiescence -------------------------------------------------------------------------------------
    async def quiesce(self, *, settle: bool, payout_days: int) -> None:
        """Run what happens by itself until nothing is left: only the terminal's own recovery (it
        flushes reversals/advices as its profile says, at settlement), the merchant's end-of-day
        settlement, and the host's cut-off, T+1 payouts and payout retries."""
        sim = self.sim
        if settle:
            for _ in range(6):
                if sim._host_down:
                    await asyncio.sleep(60.0)
                    continue
                result = await self._guard(self.terminal.settle())
                if result is not None and getattr(result, "ok", False):
                    break
                await asyncio.sleep(300.0)   # the merchant tries again a little later
        if sim._host_down:
            sim.host.restart()
        await self.host.run_schedule(days=payout_days)

    def _terminal_pending(self) -> bool:
        return bool(self.journal.pending_reversals()) or bool(self.journal.pending_advices())

    # -- records for the oracle ----------------------------------------------------------------------
    def attempt_records(self) -> list[AttemptRecord]:
        out = []
        for a in self.journal.attempts():
            kind = a.kind
            if kind == "sale" and getattr(a, "mode", "online") == "offline":
                kind = "offline_sale"
            out.append(AttemptRecord(
                attempt=a.attempt, kind=kind, amount=a.amount, tid=a.tid, stans=tuple(a.stans),
                outcome=a.outcome or "none", rc=a.rc, card=a.card, started_at=a.created_at,
                shown_at=a.shown_at,
                receipt_at=a.receipt_printed_at if a.receipt_printed and a.receipt_outcome == "approved"
                else None,
                reversal=a.reversal, advice=a.advice))
        return out

    def ledger_records(self) -> list[LedgerRecord]:
        sim = self.sim
        out = []
        for t in self.ledger.transactions():
            if t.kind not in ("sale", "offline_sale", "refund", "completion", "void"):
                continue
            approved = bool(t.approved)
            out.append(LedgerRecord(
                tid=t.key.tid, stan=t.key.stan, ref=t.key.ref, kind=t.kind, mid=t.mid, amount=t.amount,
                net_debit=t.cardholder_debit,
                debited_at=sim.seconds_of(t.created_at) if approved else None,
                reversed_at=sim.seconds_of(t.reversed_at),
                settled_at=None, merchant_credit=t.merchant_credit if t.merchant_credited_at else 0,
                credited_at=sim.seconds_of(t.merchant_credited_at)))
        return out

    def conservation(self) -> str | None:
        try:
            self.ledger.check_conservation()
        except Exception as exc:
            return str(exc)
        return None


__all__ = ["World"]
