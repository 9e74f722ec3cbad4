"""Rule-based state machine: random requests, retransmissions, lost responses, reversals (before and
after their originals), advices, pre-auth/completion, cut-offs and crash/restarts against the host.

At every step: money is conserved (ledger-wide and per request), no transaction key is ever
debited twice, and every cardholder balance equals the opening balance minus what the answered
history says is debited or held — the exactly-once promise a terminal relies on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import pathlib
import tempfile

from host_msgs import CARDS, Clock, against, request, reversal, sale
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from host_sim import Host, HostConfig, Ledger, seed
from host_sim.ledger import card_account, hold_account
from iso8583.transactions import TxnType, txn_key

OPENING = {"chip-ok": 500000, "mag-ok": 500000, "insufficient": 1000}
CARD_NAMES = sorted(OPENING)


class HostMachine(RuleBasedStateMachine):
    family = "iso87"
    dialect = "iso87ascii"

    sent = Bundle("sent")
    unsent = Bundle("unsent")
    preauths = Bundle("preauths")

    def __init__(self) -> None:
        super().__init__()
        shm = pathlib.Path("/dev/shm")
        self.tmp = tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None)
        self.path = str(pathlib.Path(self.tmp.name) / "host.db")
        self.loop = asyncio.new_event_loop()
        self.clock = Clock(dt.datetime(2026, 11, 23, 9, 0, 0))
        self.config = HostConfig(content_duplicates=False)
        self.host = self._open()
        self.stan = 0
        # key -> (card name, kind, amount) for requests the host approved; reversed keys
        self.approved: dict[object, tuple[str, str, int]] = {}
        self.reversed: set[object] = set()
        self.completed: set[object] = set()
        self.answers: dict[object, str] = {}

    def _open(self) -> Host:
        ledger = Ledger.open(self.path, synchronous="OFF")
        seed(ledger)
        return Host(ledger, self.dialect, self.config, clock=self.clock)

    def teardown(self) -> None:
        self.host.ledger.close()
        self.loop.close()
        self.tmp.cleanup()

    def _handle(self, msg):
        return self.loop.run_until_complete(self.host.handle(msg.copy()))

    def _next(self) -> int:
        self.stan += 1
        self.clock.now += dt.timedelta(seconds=7)
        return self.stan

    def _when(self) -> str:
        return self.clock.now.strftime("%m%d%H%M%S")

    def _learn(self, msg, card: str, kind: str, amount: int, response) -> None:
        key = txn_key(msg, self.family)
        row = self.host.ledger.find(key)
        assert row is not None, f"{key} was answered but not recorded"
        if response is not None:
            assert response[39] == row.rc
        self.answers[key] = row.rc
        if row.rc == "00" and key not in self.reversed:
            self.approved[key] = (card, kind, amount)

    # -- rules -------------------------------------------------------------------------------
    @rule(target=sent, card=st.sampled_from(CARD_NAMES), amount=st.integers(1, 3000),
          lose=st.booleans())
    def new_sale(self, card, amount, lose):
        msg = sale(self._next(), amount, self.family, pan=CARDS[card], when=self._when())
        self.host.config.lose_response_after_commit = lose
        try:
            response = self._handle(msg)
        finally:
            self.host.config.lose_response_after_commit = False
        assert (response is None) == lose
        self._learn(msg, card, "sale", amount, response)
        return (msg, card, amount)

    @rule(item=sent)
    def retransmit(self, item):
        msg, card, _amount = item
        key = txn_key(msg, self.family)
        before = self.host.ledger.balance(card_account(CARDS[card]))
        response = self._handle(msg)
        assert response is not None and response[39] == self.answers[key]
        assert self.host.ledger.balance(card_account(CARDS[card])) == before

    @rule(item=sent, repeat=st.booleans())
    def reverse(self, item, repeat):
        msg, _card, _amount = item
        key = txn_key(msg, self.family)
        row = self.host.ledger.find(key)
        first = self.host.ledger.reversal(key) is None
        settled = row is not None and row.settlement is not None and row.status == "approved"
        response = self._handle(reversal(msg, self.family, repeat=repeat))
        assert response is not None and response.mti == "0410"
        if first and settled and self.family == "unionpay":
            assert response[39] == "12"     # UnionPay: no reversal after settlement; stays debited
            return
        if key in self.approved or first:
            assert response[39] in ("00", "12")
        if response[39] != "00":
            return
        self.reversed.add(key)
        self.approved.pop(key, None)

    @rule(target=unsent, card=st.sampled_from(CARD_NAMES), amount=st.integers(1, 3000))
    def reverse_before_original(self, card, amount):
        msg = sale(self._next(), amount, self.family, pan=CARDS[card], when=self._when())
        response = self._handle(reversal(msg, self.family))
        assert response is not None and response[39] == "00"
        self.reversed.add(txn_key(msg, self.family))
        return (msg, card, amount)

    @rule(item=consumes(unsent))
    def late_original(self, item):
        msg, card, _amount = item
        before = self.host.ledger.balance(card_account(CARDS[card]))
        response = self._handle(msg)
        assert response is not None and response[39] != "00"
        assert self.host.ledger.balance(card_account(CARDS[card])) == before

    @rule(card=st.sampled_from(CARD_NAMES), amount=st.integers(1, 2000), repeats=st.integers(0, 2))
    def refund_advice(self, card, amount, repeats):
        msg = request(TxnType.REFUND, self.family, stan=self._next(), amount=amount, pan=CARDS[card],
                      when=self._when())
        for i in range(repeats + 1):
            if i:
                msg.mti = msg.repeat_mti()
            response = self._handle(msg)
            assert response is not None and response.mti == "0230" and response[39] == "00"
        self.approved[txn_key(msg, self.family)] = (card, "refund", amount)

    @rule(target=preauths, card=st.sampled_from(CARD_NAMES), amount=st.integers(1, 3000))
    def preauth(self, card, amount):
        msg = request(TxnType.PREAUTH, self.family, stan=self._next(), amount=amount, pan=CARDS[card],
                      when=self._when())
        response = self._handle(msg)
        self._learn(msg, card, "preauth", amount, response)
        return (msg, card, amount)

    @rule(item=preauths, fraction=st.floats(0.1, 1.0))
    def complete(self, item, fraction):
        msg, card, amount = item
        key = txn_key(msg, self.family)
        final = max(1, int(amount * fraction))
        comp = against(TxnType.COMPLETION, msg, self.family, stan=self._next(), amount=final, when=self._when())
        response = self._handle(comp)
        ok = key in self.approved and key not in self.completed
        assert (response[39] == "00") == ok
        if ok:
            self.completed.add(key)
            self._learn(comp, card, "completion", final, response)

    @rule()
    def cut_off(self):
        self.host.run_settlement(self.clock.now.date())

    @rule()
    def crash_and_restart(self):
        self.host.crash()
        self.host.ledger.close()
        self.host.restart(Ledger.open(self.path, synchronous="OFF"))

    # -- invariants --------------------------------------------------------------------------------
    @invariant()
    def money_is_conserved(self):
        self.host.ledger.check_conservation()

    @invariant()
    def balances_follow_the_answered_history(self):
        expected = dict(OPENING)
        held = dict.fromkeys(OPENING, 0)
        for key, (card, kind, amount) in self.approved.items():
            if kind == "preauth":
                if key not in self.completed:
                    held[card] += amount
                    expected[card] -= amount
            elif kind == "refund":
                expected[card] += amount
            else:
                expected[card] -= amount
        for card in OPENING:
            assert self.host.ledger.balance(card_account(CARDS[card])) == expected[card], card
            assert self.host.ledger.balance(hold_account(CARDS[card])) == held[card], card

    @invariant()
    def no_key_is_debited_twice(self):
        for txn in self.host.ledger.transactions():
            assert txn.times_posted <= 1
            assert txn.cardholder_debit in (0, txn.amount, -txn.amount)

    @invariant()
    def no_card_below_zero(self):
        for card in OPENING:
            assert self.host.ledger.balance(card_account(CARDS[card])) >= 0


class UnionPayHostMachine(HostMachine):
    family = "unionpay"
    dialect = "unionpay_pos"


SETTINGS = settings(max_examples=40, stateful_step_count=25)
HostMachine.TestCase.settings = SETTINGS
UnionPayHostMachine.TestCase.settings = SETTINGS
TestHostMachine = HostMachine.TestCase
TestUnionPayHostMachine = UnionPayHostMachine.TestCase
