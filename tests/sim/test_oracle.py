"""The oracle over plain records: each anomaly named, with evidence and cause; the transient figures."""

from __future__ import annotations

from posfault.oracle import (
    CHARGED_NO_RECEIPT,
    DEBITED_NO_RECEIPT,
    DOUBLE_CHARGE,
    NOT_CREDITED,
    RECEIPT_NOT_CHARGED,
    AttemptRecord,
    LedgerRecord,
    Oracle,
)

TID = "10000001"
DAY = 86400.0


def attempt(outcome: str = "approved", receipt_at: float | None = 1.0, stans: tuple[str, ...] = ("000001",),
            kind: str = "sale", amount: int = 10000, shown_at: float | None = 1.0) -> AttemptRecord:
    return AttemptRecord(attempt=1, kind=kind, amount=amount, tid=TID, stans=stans, outcome=outcome,
                         card="621700******0014", started_at=0.0, shown_at=shown_at, receipt_at=receipt_at)


def debit(stan: str = "000001", *, reversed_at: float | None = None, credited: bool = True,
          at: float = 0.5) -> LedgerRecord:
    net = 0 if reversed_at is not None else 10000
    return LedgerRecord(tid=TID, stan=stan, amount=10000, net_debit=net, debited_at=at, reversed_at=reversed_at,
                        merchant_credit=net if credited else 0, credited_at=DAY + 3600 if credited and net else None)


def kinds(verdict) -> list[str]:
    return verdict.anomaly_kinds


def test_clean_sale_is_money_right_and_measures_merchant_wait() -> None:
    v = Oracle().judge([attempt()], [debit()], ended_at=3 * DAY)
    assert v.ok and kinds(v) == []
    t = v.truth(1)
    assert (t.receipt, t.cardholder_debit, t.merchant_credit) == (True, 10000, 10000)
    assert t.debited_without_receipt_s == 0.5        # debited at 0.5 s, receipt at 1.0 s
    assert t.merchant_wait_s == DAY + 3600 - 1.0      # from the sale to the T+1 payout


def test_lost_response_reversed_in_time_is_clean_but_measured() -> None:
    v = Oracle().judge([attempt("failed", None, shown_at=60.0)], [debit(reversed_at=65.0, credited=False)],
                       ended_at=DAY)
    assert kinds(v) == []
    t = v.truth(1)
    assert t.cardholder_debit == 0 and t.expected_debit == 0
    assert t.debited_without_receipt_s == 64.5       # the cardholder was out of pocket 64.5 s
    assert t.overcharged_s == 64.5 and t.max_overcharge == 10000


def test_debited_no_receipt_names_evidence_and_fault() -> None:
    trace = [
        {"t": 0.0, "actor": "terminal", "kind": "send", "mti": "0200", "stan": "000001", "attempt": 1},
        {"t": 0.01, "actor": "net", "kind": "drop", "fault": "drop", "mti": "0210", "stan": "000001", "rule": 1},
        {"t": 0.01, "actor": "terminal", "kind": "send", "mti": "0200", "stan": "000777"},  # another attempt
        {"t": 60.0, "actor": "terminal", "kind": "timeout", "attempt": 1},
    ]
    v = Oracle(trace, {"terminal_profile": "no_reversal_on_timeout"}).judge(
        [attempt("failed", None, shown_at=60.0)], [debit(credited=True)], ended_at=2 * DAY)
    assert kinds(v) == [DEBITED_NO_RECEIPT]
    a = v.anomalies[0]
    assert a.attempt == 1 and "100.00" in a.detail and "failed" in a.detail
    assert "drop 0210 (rule 1)" in a.cause and "no_reversal_on_timeout" in a.cause
    assert any("0200" in line and "000001" in line for line in a.evidence)
    assert not any("000777" in line for line in a.evidence)     # unrelated traffic is not evidence
    assert v.truth(1).debited_without_receipt_s == 2 * DAY - 0.5


def test_receipt_not_charged_when_reversed_after_printing() -> None:
    v = Oracle().judge([attempt("approved", 75.0, shown_at=75.0)], [debit(reversed_at=76.0, credited=False)],
                       ended_at=DAY)
    assert kinds(v) == [RECEIPT_NOT_CHARGED]
    assert "reversed after the approval was printed" in v.anomalies[0].detail


def test_offline_approval_never_uploaded() -> None:
    v = Oracle().judge([attempt(kind="offline_sale")], [], ended_at=DAY)
    assert kinds(v) == [RECEIPT_NOT_CHARGED]
    assert "never uploaded" in v.anomalies[0].detail


def test_double_charge_over_two_stans_and_duplicate_postings() -> None:
    two = Oracle().judge([attempt("approved", 61.0, stans=("000001", "000002"))],
                         [debit("000001"), debit("000002", at=61.0)], ended_at=2 * DAY)
    assert kinds(two) == [DOUBLE_CHARGE]
    assert "000001, 000002" in two.anomalies[0].detail
    dup = LedgerRecord(tid=TID, stan="000001", amount=10000, net_debit=20000, debited_at=0.5,
                       merchant_credit=20000, credited_at=DAY)
    one = Oracle().judge([attempt()], [dup], ended_at=2 * DAY)
    assert kinds(one) == [DOUBLE_CHARGE]
    assert one.truth(1).max_overcharge == 10000


def test_not_credited_and_charged_no_receipt() -> None:
    v = Oracle().judge([attempt()], [debit(credited=False)], ended_at=5 * DAY)
    assert kinds(v) == [NOT_CREDITED]
    assert v.truth(1).merchant_wait_s is None
    v2 = Oracle().judge([attempt("approved", None)], [debit()], ended_at=2 * DAY)
    assert kinds(v2) == [CHARGED_NO_RECEIPT]


def test_declined_without_debit_is_clean_and_refunds_are_not_flagged() -> None:
    declined = attempt("declined", None)
    assert Oracle().judge([declined], [], ended_at=10.0).ok
    refund = AttemptRecord(attempt=2, kind="refund", amount=500, tid=TID, stans=("000009",), outcome="approved",
                           receipt_at=1.0)
    credit = LedgerRecord(tid=TID, stan="000009", amount=500, net_debit=-500, kind="refund", debited_at=0.5)
    v = Oracle().judge([refund], [credit], ended_at=10.0)
    assert v.ok and v.truth(2).expected_debit == -500 and v.truth(2).money_right


def test_power_cut_is_the_cause_when_no_message_was_faulted() -> None:
    trace = [{"t": 0.2, "actor": "sim", "target": "terminal", "kind": "power_cut", "step": "after-send"}]
    v = Oracle(trace).judge([attempt("failed", None, shown_at=None)], [debit()], ended_at=DAY)
    assert kinds(v) == [DEBITED_NO_RECEIPT]
    assert "power_cut" in v.anomalies[0].cause


def test_summary_and_dict_are_readable() -> None:
    v = Oracle().judge([attempt("failed", None)], [debit()], ended_at=DAY, conservation=None)
    text = v.summary()
    assert "debited-no-receipt" in text and "100.00" in text
    d = v.to_dict()
    assert d["ok"] is False and d["anomalies"][0]["kind"] == DEBITED_NO_RECEIPT
    assert Oracle().judge([attempt()], [debit()], ended_at=2 * DAY).summary().endswith(
        "every debit a receipt and a merchant credit.")
