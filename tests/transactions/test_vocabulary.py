"""The shared vocabulary must round-trip: what one side builds, the other side classifies back."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iso8583 import Message
from iso8583.transactions import (
    OriginalData,
    SettlementTotals,
    TransactionError,
    TxnKey,
    TxnType,
    amount_from_display,
    classify,
    family_of,
    format_amount,
    make_response,
    make_reversal,
    matches,
    next_stan,
    original_key,
    original_reference,
    request_base,
    txn_key,
)

FAMILIES = ("iso87", "unionpay")
TEMPLATED = [t for t in TxnType if t is not TxnType.REVERSAL]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("txn", TEMPLATED)
def test_every_template_classifies_back_to_itself(family: str, txn: TxnType) -> None:
    mti, fields = request_base(txn, family)  # type: ignore[arg-type]
    request = Message(mti, {**fields, 11: "000007", 41: "10000001"})
    assert classify(request, family) is txn  # type: ignore[arg-type]
    response = make_response(request, "00", family)  # type: ignore[arg-type]
    assert classify(response, family) is txn  # type: ignore[arg-type]
    assert matches(request, response)


@pytest.mark.parametrize("family", FAMILIES)
def test_reversal_names_its_original_and_keeps_the_stan(family: str) -> None:
    mti, fields = request_base(TxnType.SALE, family, batch="000042")  # type: ignore[arg-type]
    sale = Message(mti, {**fields, 2: "6217000000000014", 4: format_amount(12345), 7: "1123090501",
                         11: "000123", 41: "10000001", 42: "100000000000001"})
    reversal = make_reversal(sale, "98", family)  # type: ignore[arg-type]
    assert reversal.mti == "0400" and reversal[39] == "98" and reversal[11] == "000123"
    assert classify(reversal, family) is TxnType.REVERSAL  # type: ignore[arg-type]
    assert original_key(reversal, family) == txn_key(sale, family)  # type: ignore[arg-type]
    assert make_reversal(sale, "98", family, repeat=True).mti == "0401"  # type: ignore[arg-type]
    ack = make_response(make_reversal(sale, "98", family, repeat=True), "00", family)  # type: ignore[arg-type]
    assert ack.mti == "0410"


def test_iso_key_uses_transmission_time_and_unionpay_key_uses_batch() -> None:
    iso = Message("0200", {7: "1123090501", 11: "000001", 41: "T1"})
    up = Message("0200", {11: "000001", 41: "T1", 60: {"60.1": "22", "60.2": "000009", "60.3": "000"}})
    assert txn_key(iso, "iso87") == TxnKey("T1", "000001", "1123090501")
    assert txn_key(up, "unionpay") == TxnKey("T1", "000001", "000009")


def test_response_for_other_terminal_or_stan_does_not_match() -> None:
    req = Message("0200", {11: "000001", 41: "T1", 3: "000000"})
    assert not matches(req, Message("0210", {11: "000002", 41: "T1"}))
    assert not matches(req, Message("0210", {11: "000001", 41: "T2"}))
    assert not matches(req, Message("0410", {11: "000001", 41: "T1"}))


@given(st.text(alphabet="0123456789", min_size=4, max_size=4), st.integers(1, 999999),
       st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 1, 1)))
def test_field_90_round_trips(mti: str, stan: int, when: dt.datetime) -> None:
    data = OriginalData(mti, f"{stan:06d}", when.strftime("%m%d%H%M%S"))
    assert OriginalData.parse(data.pack()) == data


@pytest.mark.parametrize("bad", ["", "0200", "0200" + "x" * 38, "0" * 43])
def test_bad_field_90_names_the_field(bad: str) -> None:
    with pytest.raises(TransactionError, match="field 90: expected 42 digits"):
        OriginalData.parse(bad)


@pytest.mark.parametrize("family", FAMILIES)
@given(st.integers(0, 999), st.integers(0, 10**12 - 1), st.integers(0, 999), st.integers(0, 10**12 - 1))
def test_settlement_totals_round_trip(family: str, dc: int, da: int, cc: int, ca: int) -> None:
    totals = SettlementTotals(dc, da, cc, ca)
    msg = Message("0500", totals.to_fields(family))  # type: ignore[arg-type]
    assert SettlementTotals.from_message(msg, family) == totals  # type: ignore[arg-type]


def test_totals_count_debits_and_credits_only() -> None:
    t = SettlementTotals().add(TxnType.SALE, 100).add(TxnType.REFUND, 30).add(TxnType.BALANCE, 0)
    assert t == SettlementTotals(1, 100, 1, 30)


@pytest.mark.parametrize(("text", "minor"), [("12.34", 1234), ("12", 1200), ("0.5", 50), (99, 99)])
def test_display_amounts(text: str | int, minor: int) -> None:
    assert amount_from_display(text) == minor


@pytest.mark.parametrize("text", ["12.345", "-1", "abc", "1,00"])
def test_bad_display_amount(text: str) -> None:
    with pytest.raises(TransactionError):
        amount_from_display(text)


def test_stan_wraps_without_zero() -> None:
    assert next_stan(999999) == 1 and next_stan(1) == 2


def test_family_of_names_and_specs() -> None:
    assert family_of("unionpay_pos") == "unionpay" and family_of("iso87binary") == "iso87"

    class FakeSpec:
        name = "my_cup_variant"
    assert family_of(FakeSpec()) == "unionpay"


def test_unionpay_original_reference_is_field_61() -> None:
    sale = Message("0200", {11: "000005", 41: "T", 60: {"60.1": "22", "60.2": "000003", "60.3": "000"}})
    assert original_reference(sale, "unionpay", date="1123") == {61: "0000030000051123"}
