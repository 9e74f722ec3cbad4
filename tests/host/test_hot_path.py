"""The host's per-sale fast path keeps exactly what the general path stored and answered.

The sale path was rewritten for speed (key as a tuple, positional ledger calls, memoized
classification, rows without their NULL columns, formatted replay fields). What users rely on: a
fingerprint stored by an older version still matches a retransmission, a ledger file written by the
fast path reads back to the same rows, and classification never differs from ``classify``.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from host_msgs import CARDS, against, make_host, request, run, sale

from host_sim.host import _fingerprint
from host_sim.ledger import _dumps, _extra_json
from iso8583.transactions import TransactionError, TxnType, classify, txn_key


def _old_fingerprint(msg, family: str, pan: str) -> str:
    """The formula fingerprints were first stored with (blake2b of the ``|``-joined parts)."""
    fields = msg.fields
    f60 = fields.get(60)
    code = f60.get("60.1", "") if isinstance(f60, dict) else ""
    parts = [pan, str(fields.get(3, "")), str(fields.get(4, "")), code, str(fields.get(41, "")),
             str(fields.get(42, ""))]
    local = 12 in fields and 13 in fields
    if local:
        parts += [str(fields[12]), str(fields[13])]
    return ("L" if local else "N") + hashlib.blake2b("|".join(parts).encode(), digest_size=12).hexdigest()


@pytest.mark.parametrize("family", ["iso87", "unionpay"])
def test_fingerprint_is_the_stored_formula(family: str) -> None:
    msg = sale(stan=7, amount=12345, family=family)
    assert _fingerprint(msg, family, msg[2]) == _old_fingerprint(msg, family, msg[2])
    assert _fingerprint(msg, family) == _old_fingerprint(msg, family, msg[2])
    if family == "iso87":   # without local date/time: the N form
        del msg.fields[12]
        assert _fingerprint(msg, family).startswith("N")
        assert _fingerprint(msg, family) == _old_fingerprint(msg, family, msg[2])


def test_replay_fields_text_is_what_json_gives() -> None:
    for extra in ({"37": "000000000042", "38": "123456"}, {"37": "000000000042"}, {"37": "x", "38": "y"},
                  {"37": "000000000042", "38": "12345\u00b2"}, {"37": "1", "54": "1002156C000000001000"}):
        assert json.loads(_extra_json(extra)) == extra
        assert _extra_json(extra) == _dumps(extra) == json.dumps(extra)


def test_memoized_classification_agrees_with_classify() -> None:
    host = make_host()
    sale1 = sale(stan=1)
    kinds = [sale1, request(TxnType.PREAUTH, stan=2), request(TxnType.BALANCE, stan=3, amount=None),
             against(TxnType.VOID, sale1, stan=4), against(TxnType.COMPLETION, request(TxnType.PREAUTH, stan=5), stan=6),
             request(TxnType.REFUND, stan=7), request(TxnType.OFFLINE_SALE, stan=8)]
    for _ in range(2):   # the second round is served from the memo
        for msg in kinds:
            assert host._classify(msg) == classify(msg, "iso87")
    odd = sale(stan=9)
    odd[3] = "990000"
    for _ in range(2):   # what classify refuses is refused every time, never memoized
        with pytest.raises(TransactionError):
            host._classify(odd)


def test_fast_path_rows_read_back_identically(tmp_path) -> None:
    path = str(tmp_path / "ledger.db")
    host = make_host(path=path)
    answers = [run(host.handle(sale(stan=n, amount=1000 + n))) for n in range(1, 6)]
    answers.append(run(host.handle(request(TxnType.PREAUTH, stan=6, amount=777))))
    answers.append(run(host.handle(sale(stan=7, amount=10**9, pan=CARDS["insufficient"]))))   # declined 51
    assert [a[39] for a in answers] == ["00"] * 6 + ["51"]
    before = {r.id: r for r in host.ledger.rows()}
    balances = host.ledger.balances()
    host.ledger.close()

    from host_sim import Ledger

    reopened = Ledger.open(path)
    after = {r.id: r for r in reopened.rows()}
    assert after == before
    assert reopened.balances() == {a: v for a, v in balances.items() if v or a in reopened.balances()}
    reopened.check_conservation()
    for msg, answer in zip([sale(stan=n, amount=1000 + n) for n in range(1, 6)], answers):
        row = reopened.find(txn_key(msg, "iso87"))
        assert row is not None and row.status == "approved" and row.original is None and row.dup_of is None
        assert row.extra == {"37": answer[37], "38": answer[38]}
        assert row.cardholder_debit == row.merchant_credit == row.amount
    preauth = reopened.find(txn_key(request(TxnType.PREAUTH, stan=6, amount=777), "iso87"))
    assert preauth is not None and preauth.hold == 777 and preauth.cardholder_debit == 0
    reopened.close()


def test_iso_stamp_is_isoformat_with_microseconds() -> None:
    import datetime as dt

    from host_sim.host import _iso

    moments = [dt.datetime(2026, 3, 2, 9, 0, 0), dt.datetime(2026, 3, 2, 9, 0, 0, 1), dt.datetime(2026, 3, 2, 23, 59, 59, 999999),
               dt.datetime(2026, 4, 2, 0, 0, 0, 500000), dt.datetime(2027, 4, 2, 7, 8, 9, 10), dt.datetime(987, 1, 2, 3, 4, 5, 6),
               dt.datetime(2026, 3, 2, 9, 0, 0, 120, tzinfo=dt.timezone(dt.timedelta(hours=8))),
               dt.datetime(2026, 3, 2, 9, 30, 0, 0, tzinfo=dt.UTC)]
    for _ in range(2):   # cold and warm date prefix, and every change of day, month or year between
        for at in moments + moments[::-1]:
            assert _iso(at) == at.isoformat(timespec="microseconds")
