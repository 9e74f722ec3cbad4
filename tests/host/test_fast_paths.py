"""Every shortcut on the host's per-sale path gives what the general path gives.

Shortcuts under test: the PIN verification memo (security_glue), the one-statement commit of an
approval and its entry (ledger), the events built in one dict (host). Each is checked against the
general computation it replaces, including after the state it depends on changes (new working
keys, a card's PIN changed, a crash and restart, a failed commit).
"""

from __future__ import annotations

import pytest
from host_msgs import NOW, PAN, TID, make_host, run, sale

from host_sim import security_glue as sec
from host_sim.ledger import pin_hash
from iso8583.security import pin
from iso8583.security.keys import Key

KEY_A = "0123456789ABCDEFFEDCBA9876543210"
KEY_B = "89ABCDEF0123456776543210FEDCBA98"


def _reference(block, pan: str, key_hex: str, pvv: str) -> str:
    """What verify_pin computed before the memo: decrypt, hash, compare."""
    if isinstance(block, str):
        try:
            block = bytes.fromhex(block)
        except ValueError:
            return "wrong"
    try:
        clear = pin.decrypt(bytes(block), pan, Key(key_hex))
    except Exception:
        return "wrong"
    return "ok" if pin_hash(pan, clear) == pvv else "wrong"


def _keys(pin_key: str) -> dict[str, str]:
    return {"pin_key": pin_key, "mac_key": KEY_B}


def test_pin_memo_agrees_with_decryption_cold_and_warm() -> None:
    host = make_host()
    card = host.ledger.card(PAN)
    assert card is not None
    good = pin.encrypt("1234", PAN, Key(KEY_A))
    blocks = [good, good.hex().upper(), pin.encrypt("4321", PAN, Key(KEY_A)), pin.encrypt("1234", PAN, Key(KEY_B)),
              b"\x00" * 8, b"\x01\x02", "not hex", None]
    for key in (KEY_A, KEY_B):
        sec._PVV_MEMO.clear()
        for _ in range(2):   # cold (decrypted), then warm (from the memo)
            for block in blocks:
                msg = sale(stan=1, f52=block)
                expected = _reference(block, PAN, key, card.pin_hash) if block is not None else "wrong"
                assert sec.verify_pin(host, msg, PAN, card, _keys(key)) == expected
    assert sec.verify_pin(host, sale(stan=1, f52=good), PAN, card, None) == "no_keys"


def test_pin_memo_follows_new_keys_and_a_changed_pin() -> None:
    host = make_host()
    card = host.ledger.card(PAN)
    assert card is not None
    block = pin.encrypt("1234", PAN, Key(KEY_A))
    msg = sale(stan=1, f52=block)
    assert sec.verify_pin(host, msg, PAN, card, _keys(KEY_A)) == "ok"
    # a new sign-on: the same block under the new key is no longer the PIN
    assert sec.verify_pin(host, msg, PAN, card, _keys(KEY_B)) == "wrong"
    assert sec.verify_pin(host, msg, PAN, card, _keys(KEY_A)) == "ok"
    # the cardholder changed the PIN: the memoized block now fails, the new one passes
    changed = host.ledger.update_card(PAN, pin_hash=pin_hash(PAN, "9999"))
    assert sec.verify_pin(host, msg, PAN, changed, _keys(KEY_A)) == "wrong"
    assert sec.verify_pin(host, sale(stan=2, f52=pin.encrypt("9999", PAN, Key(KEY_A))), PAN, changed,
                          _keys(KEY_A)) == "ok"


def test_pin_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    host = make_host()
    card = host.ledger.card(PAN)
    assert card is not None
    monkeypatch.setattr(sec, "PVV_MEMO_SIZE", 4)
    sec._PVV_MEMO.clear()
    for n in range(10):
        block = pin.encrypt(f"{1230 + n}", PAN, Key(KEY_A))
        assert sec.verify_pin(host, sale(stan=1, f52=block), PAN, card, _keys(KEY_A)) == \
            ("ok" if n == 4 else "wrong")
        assert len(sec._PVV_MEMO) <= 4


def test_pin_tries_count_the_same_with_the_memo_warm() -> None:
    """Wrong, wrong, right: the tries counter and verdicts do not depend on whether a block was seen."""
    verdicts = []
    for _ in range(2):
        sec._PVV_MEMO.clear()
        host = make_host()
        host.ledger.set_terminal_keys(TID, _keys(KEY_A), NOW)
        wrong = pin.encrypt("0000", PAN, Key(KEY_A))
        right = pin.encrypt("1234", PAN, Key(KEY_A))
        answers = [run(host.handle(sale(stan=n, amount=100 + n, when=f"11231000{n:02d}", f52=block)))[39]
                   for n, block in enumerate([wrong, wrong, right, right], start=1)]
        verdicts.append((answers, host.ledger.card(PAN).pin_tries))
    assert verdicts[0] == verdicts[1] == (["55", "55", "00", "00"], 0)
