"""The hot path's shortcuts give exactly what the general code gives (issue #7, round 3).

Each shortcut a sale takes — the per-card request template, the per-instant date texts, the
twin-class construction of results and receipts — is compared here with the general path it
replaces, on every dialect, card and PIN choice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iso8583.message import Message
from iso8583.security import keys as keymod
from iso8583.transactions import TxnType
from posfault.clock import clock_for, run_virtual
from terminal_sim import Journal, Terminal, TerminalConfig, TxnResult, load_cards
from terminal_sim.journal import decode_fields, encode_fields, encode_fields_general
from terminal_sim.printer import Receipt
from terminal_sim.terminal import _emv_plan, _txn_result

DIALECTS = ("iso87ascii", "iso87binary", "unionpay_pos")


def _requests(dialect: str, fast: bool) -> list[tuple[str, list[tuple[int, object]]]]:
    """Requests of every card-only kind, for every card, with and without PIN, over two batches;
    built by ``_build`` (the template path) or ``_build_slow`` from the same seeded state."""
    cards = load_cards()

    async def main() -> list[tuple[str, list[tuple[int, object]]]]:
        journal = Journal.open(":memory:")
        term = Terminal(TerminalConfig(dialect=dialect), journal=journal, connector=None, clock=clock_for(),
                        rng=random.Random(3))
        term._keys = keymod.WorkingKeys.generate(16)
        out = []
        for _batch in range(2):
            for txn in (TxnType.SALE, TxnType.PREAUTH, TxnType.BALANCE):
                for card in cards.values():
                    for pin in (None, "", "1234"):
                        amount = None if txn is TxnType.BALANCE else 1234 + len(out)
                        build = term._build if fast else term._build_slow
                        msg = build(txn, amount=amount, card=card, pin=pin)
                        fields = list(msg.fields.items())
                        # The PIN block is encrypted under a random key per run: compare its presence
                        out.append((msg.mti, [(n, v) for n, v in fields if n != 52], 52 in msg.fields))
                        journal.use_stan(journal.next_stan)
                        await asyncio.sleep(61)   # a new business instant
            journal.close_batch(journal.batch, at=0.0)
        return out

    return run_virtual(main())


@pytest.mark.parametrize("dialect", DIALECTS)
def test_card_template_builds_the_same_requests_as_the_general_builder(dialect: str) -> None:
    fast, slow = _requests(dialect, True), _requests(dialect, False)
    assert len(fast) == 2 * 3 * len(load_cards()) * 3
    assert fast == slow   # same MTI, fields, values and field order (the journal stores that order)


def test_a_template_is_per_card_object_and_batch() -> None:
    cards = load_cards()

    async def main() -> None:
        journal = Journal.open(":memory:")
        term = Terminal(TerminalConfig(), journal=journal, connector=None, clock=clock_for())
        first = term._build(TxnType.SALE, amount=100, card=cards["mag-ok"], pin=None)
        other = term._build(TxnType.SALE, amount=100, card=cards["chip-ok"], pin=None)
        assert first[2] != other[2] and 35 in first and 35 not in other
        journal.close_batch(journal.batch, at=0.0)
        later = term._build(TxnType.SALE, amount=100, card=cards["mag-ok"], pin=None)
        assert later.fields == term._build_slow(TxnType.SALE, amount=100, card=cards["mag-ok"], pin=None).fields \
            | {11: later[11]}

    run_virtual(main())


@pytest.mark.parametrize("when", [dt.datetime(2026, 3, 2, 9, 5, 7), dt.datetime(1, 1, 1),
                                  dt.datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)])
def test_clock_texts_equal_strftime_and_isoformat(when: dt.datetime) -> None:
    term = Terminal(TerminalConfig(), journal=Journal.open(":memory:"), connector=None, clock=lambda: when)
    stamp, text = term._clock_texts(when)
    assert stamp == when.strftime("%m%d%H%M%S")
    assert text == when.isoformat(" ", "seconds")[:19]
    later = when.replace(second=(when.second + 1) % 60)
    assert term._clock_texts(later)[0] == later.strftime("%m%d%H%M%S")   # not a stale instant


def test_twin_built_results_and_receipts_equal_the_public_constructors() -> None:
    args = (7, "approved", "00", "000007", ("x",), "123456", "000000000001", None, "Approved")
    fast, slow = _txn_result(*args), TxnResult(*args)
    assert type(fast) is TxnResult and fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    with pytest.raises(AttributeError):
        fast.rc = "05"   # type: ignore[misc]
    source = ("SHOP", "100000000000001", "10000001", "sale", 1234, "156", "621700******0014", "chip", "000007", 1,
              "00", "123456", "000000000001", "2026-03-02 09:00:00", "approved", False)
    lazy, plain = Receipt.lazy(7, source, "original", 1.5), Receipt(7, None, "original", 1.5, source=source)
    assert type(lazy) is Receipt and lazy == plain and hash(lazy) == hash(plain) and lazy.text == plain.text
    with pytest.raises(AttributeError):
        lazy.at = 2.0   # type: ignore[misc]


# -- journal -----------------------------------------------------------------------------------
_texts = st.text(alphabet=st.characters(min_codepoint=0x1d, max_codepoint=0x7e), max_size=12)
_values = st.one_of(_texts, st.binary(max_size=12), st.dictionaries(st.sampled_from(["60.1", "60.2"]), _texts,
                                                                    max_size=2))


@given(st.dictionaries(st.integers(min_value=2, max_value=128).filter(lambda n: n != 65), _values, max_size=12), st.binary(max_size=40))
def test_layout_cached_request_text_equals_the_general_encoder(fields: dict, icc: bytes) -> None:
    for with_icc in (False, True):
        msg = Message("0200", {**fields, 55: icc} if with_icc else fields)
        text = encode_fields(msg)
        assert text == encode_fields_general(msg)
        stored = {n: v for n, v in msg.fields.items() if n not in (35, 36, 45, 52, 53, 64, 128)}
        assert decode_fields(text).fields == stored


def _rows(journal: Journal) -> list[tuple]:
    return journal._conn.execute("SELECT * FROM attempts ORDER BY id").fetchall()


@pytest.mark.parametrize("tid", ["10000001", "1000'01;"])
def test_statements_with_literals_write_the_rows_of_the_bound_statements(tid: str) -> None:
    """The hot INSERT/UPDATE put repeating values in the statement's text; a value that is not a
    plain token (the quote here) takes the fully bound statement. Both write the same rows."""
    request = Message("0200", {3: "000000", 2: "6217000000000014", 4: "000000001000", 11: "000001", 41: tid})
    fast, bound = Journal.open(":memory:"), Journal.open(":memory:")
    for journal in (fast, bound):
        if journal is bound:   # what the general statements write
            journal._insert_sql = _Never()
            journal._decide_sql = _Never()
        for i, (outcome, rc) in enumerate([("approved", "00"), ("declined", "51"), ("approved", "00")]):
            request.fields[11] = f"{i + 1:06d}"
            attempt = journal.begin_attempt(tid=tid, kind="sale", amount=100 + i, pan="6217000000000014",
                                            entry="chip", request=request, at=1.0 + i, arm_reversal=i != 1)
            journal.decide(attempt, outcome=outcome, at=2.0 + i, rc=rc, auth_code="123456" if rc == "00" else None,
                           rrn=f"{i:012d}", in_batch=rc == "00", receipt="\x1espec" if rc == "00" else None,
                           reversal="cleared" if i != 1 else None)
            journal.receipt_printed(attempt, copy="original", status="printed", outcome=outcome, at=3.0 + i)
    assert _rows(fast) == _rows(bound)
    assert fast.attempts() == bound.attempts()
    assert fast._conn.execute("SELECT * FROM receipts").fetchall() == bound._conn.execute(
        "SELECT * FROM receipts").fetchall()


class _Never(dict):
    """A statement cache that always answers "bind everything"."""

    def get(self, key, default=None):
        return ""


def _spliced(plan: tuple, values: dict) -> bytes:
    """Field 55 as the plan says, the plain way: card bytes and tag values in data order."""
    return b"".join(values[part] if isinstance(part, str) else part for part in plan)


@pytest.mark.parametrize("emv_hex", [
    "9F02060000000000019A031201019F3704000000005F2A020156",     # all three tags
    "9F370400000000",                                            # one tag only
    "5F2A0201569F3704AABBCCDD9F0206000000000001",               # other order
    "9F2501259F3704252525259A03252525",                          # '%' bytes in the card's data
    "5F2A020156",                                                # none
])
def test_field_55_template_splices_like_the_plan(emv_hex: str) -> None:
    emv = bytes.fromhex(emv_hex)
    card = dataclasses.replace(load_cards()["chip-ok"], emv=emv)
    when = dt.datetime(2026, 3, 2, 9, 0, 0)
    term = Terminal(TerminalConfig(), journal=Journal.open(":memory:"), connector=None, clock=lambda: when,
                    rng=random.Random(5))
    got = term._icc_data(card, 1234, when)
    plan = _emv_plan(emv)
    unpredictable = random.Random(5).getrandbits(32).to_bytes(4, "big")
    expected = _spliced(plan, {"9F02": bytes.fromhex("000000001234"), "9A": bytes.fromhex("260302"),
                               "9F37": unpredictable}) if plan else emv
    assert got == expected and len(got) == len(emv)


@pytest.mark.parametrize("fmt", [0, 1, 3])
def test_remembered_pin_blocks_equal_fresh_ones_and_follow_new_keys(fmt: int) -> None:
    """Link.pin_block remembers format 0 blocks only; each equals a fresh encryption under the key
    in use (a new PIN key is never answered from the memo), and formats with random fill draw
    from the terminal's rng every time, as before."""
    from iso8583.security import pin as pinmod
    from terminal_sim.link import Link, terminal_master_key

    link = Link("iso87ascii", tmk=terminal_master_key("tmk"), pin_format=fmt, rng=random.Random(5))
    reference = random.Random(5)
    pans = ("6217000000000014", "4761739001010010", "6217000000000022")
    for keys in (keymod.WorkingKeys.generate(16), keymod.WorkingKeys.generate(16)):
        for _round in range(3):
            for pan in pans:
                for pin in ("1234", "987654"):
                    got = link.pin_block(pin, pan, keys)
                    assert got == pinmod.encrypt(pin, pan, keys.pin_key, fmt=fmt, rng=reference)
                    assert pinmod.decrypt(got, pan, keys.pin_key) == pin
