"""The serving ledger's WAL is zero-filled up front (``Ledger.preallocate_wal``) so FULL commits
overwrite it in place; a power cut (the files as they are on disk, nothing closed) must still
recover exactly the committed steps, and the preallocation must never touch a WAL in use."""

from __future__ import annotations

import datetime as dt
import pathlib
import shutil

from host_sim import Ledger, seed
from host_sim.ledger import card_account, payable_account

AT = dt.datetime(2026, 11, 23, 10, 0, 0)
PAN = "6217000000000014"
MID = "100000000000001"


def test_power_cut_after_preallocation_recovers_every_committed_step(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "host.db"
    ledger = Ledger.open(str(db), checkpoint="background")
    seed(ledger)
    opening = ledger.balance(card_account(PAN))
    payable = ledger.balance(payable_account(MID))
    assert ledger.preallocate_wal(1 << 20)
    assert (tmp_path / "host.db-wal").stat().st_size == 1 << 20
    for amount in (100, 250, 75):
        with ledger.step():
            ledger.post("sale", None, ((card_account(PAN), -amount), (payable_account(MID), amount)), AT)
    ledger.begin_group()   # uncommitted at the cut: must not come back
    ledger.post("sale", None, ((card_account(PAN), -9999), (payable_account(MID), 9999)), AT)

    cut = tmp_path / "after-cut"
    cut.mkdir()
    for name in ("host.db", "host.db-wal"):   # the disk as a power cut leaves it (no -shm: rebuilt)
        shutil.copy(tmp_path / name, cut / name)
    assert (cut / "host.db-wal").stat().st_size == 1 << 20, "commits overwrote the zeros in place"
    recovered = Ledger.open(str(cut / "host.db"))
    assert recovered.balance(card_account(PAN)) == opening - 425
    assert recovered.balance(payable_account(MID)) == payable + 425
    recovered.check_conservation()
    recovered.close()
    ledger.rollback()
    ledger.close()
    reopened = Ledger.open(str(db))
    assert reopened.balance(card_account(PAN)) == opening - 425
    reopened.check_conservation()
    reopened.close()


def test_preallocation_leaves_a_wal_in_use_alone(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "host.db"
    ledger = Ledger.open(str(db))
    seed(ledger)
    reader = Ledger.open(str(db))
    reader.conn.execute("BEGIN")
    reader.conn.execute("SELECT count(*) FROM postings").fetchone()   # holds a WAL snapshot
    with ledger.step():
        ledger.post("sale", None, ((card_account(PAN), -1), (payable_account(MID), 1)), AT)
    before = (tmp_path / "host.db-wal").stat().st_size
    assert not ledger.preallocate_wal(1 << 20)
    assert (tmp_path / "host.db-wal").stat().st_size == before
    reader.conn.execute("COMMIT")
    reader.close()
    assert not Ledger.open(":memory:").preallocate_wal(1 << 20)
    ledger.close()
