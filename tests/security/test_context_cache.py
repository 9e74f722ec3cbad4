"""The reused cipher contexts of ``iso8583.security._crypto`` give exactly what a fresh context gives.

A cached ECB context is stateless between whole blocks; a cached CBC context carries its chaining
value between calls and ``tdes_cbc_encrypt`` compensates for it. These tests compare every cached
path with a context built from scratch, over random interleavings of keys, IVs and lengths — the
case that would break if the chaining compensation were wrong — and check that the cache never
shows key material and stays bounded.
"""

from __future__ import annotations

import threading

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from iso8583.security import _crypto, mac, pin

_tdes_keys = st.sampled_from([bytes.fromhex("0123456789ABCDEF"),
                              bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"),
                              bytes.fromhex("89ABCDEF0123456776543210FEDCBA98"),
                              bytes.fromhex("0123456789ABCDEFFEDCBA987654321089ABCDEF01234567")])
_blocks = st.integers(0, 24).flatmap(lambda n: st.binary(min_size=8 * n, max_size=8 * n))
_ivs = st.one_of(st.just(bytes(8)), st.binary(min_size=8, max_size=8))


def _fresh(mode: modes.Mode, key: bytes, data: bytes, decrypt: bool = False) -> bytes:
    cipher = Cipher(_crypto.tdes(key), mode)
    ctx = cipher.decryptor() if decrypt else cipher.encryptor()
    return ctx.update(data) + ctx.finalize()


@given(st.lists(st.tuples(_tdes_keys, _blocks, _ivs), min_size=1, max_size=12))
def test_cbc_encrypt_with_a_reused_context_equals_a_fresh_one(calls: list[tuple[bytes, bytes, bytes]]) -> None:
    for key, data, iv in calls:
        assert _crypto.tdes_cbc_encrypt(key, data, iv) == _fresh(modes.CBC(iv), key, data)


@given(st.lists(st.tuples(_tdes_keys, _blocks), min_size=1, max_size=12))
def test_ecb_both_ways_with_reused_contexts_equal_fresh_ones(calls: list[tuple[bytes, bytes]]) -> None:
    for key, data in calls:
        encrypted = _crypto.tdes_ecb_encrypt(key, data)
        assert encrypted == _fresh(modes.ECB(), key, data)
        assert _crypto.tdes_ecb_decrypt(key, encrypted) == data


@given(st.binary(min_size=16, max_size=16), st.integers(0, 4).flatmap(
    lambda n: st.binary(min_size=16 * n, max_size=16 * n)), st.binary(max_size=70))
def test_aes_ecb_and_cmac_with_reused_contexts_equal_fresh_ones(key: bytes, blocks: bytes, data: bytes) -> None:
    fresh = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    assert _crypto.aes_ecb_encrypt(key, blocks) == fresh.update(blocks) + fresh.finalize()
    assert _crypto.aes_ecb_decrypt(key, _crypto.aes_ecb_encrypt(key, blocks)) == blocks
    reference = cmac.CMAC(algorithms.AES(key))
    reference.update(data)
    assert _crypto.aes_cmac(key, data) == reference.finalize()
    assert _crypto.aes_cmac(key, data) == _crypto.aes_cmac(key, data)  # the template is never consumed


def test_published_vectors_hold_cold_and_warm() -> None:
    # FIPS 113 CBC-MAC vector (see test_mac.py), computed with an empty cache, then again with a
    # context whose chain has moved on, then after other keys went through.
    k1 = bytes.fromhex("0123456789ABCDEF")
    for _ in range(3):
        _crypto.clear_cache()
        assert mac.cbc_mac(k1, b"7654321 Now is the time for ").hex().upper() == "F1D30F6849312CA4"
        assert mac.cbc_mac(k1, b"7654321 Now is the time for ").hex().upper() == "F1D30F6849312CA4"
        mac.retail_mac(bytes(range(16)), b"other traffic in between")
        assert mac.cbc_mac(k1, b"7654321 Now is the time for ").hex().upper() == "F1D30F6849312CA4"


def test_cache_is_bounded_and_never_shows_keys() -> None:
    _crypto.clear_cache()
    secret = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    block = pin.encrypt("1234", "6217000000000014", secret)
    text = repr(_crypto._cache)
    assert secret.hex() not in text.lower() and secret.hex().upper() not in text and str(secret) not in text
    assert _crypto.cache_size() >= 1
    for i in range(_crypto.CACHE_SIZE * 2):  # one-time keys (as in DUKPT) pass through
        _crypto.tdes_ecb_encrypt(i.to_bytes(16, "big"), bytes(8))
    assert _crypto.cache_size() <= _crypto.CACHE_SIZE
    assert pin.decrypt(block, "6217000000000014", secret) == "1234"   # evicted keys just rebuild
    _crypto.clear_cache()
    assert _crypto.cache_size() == 0


def test_threads_have_their_own_contexts() -> None:
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    data = bytes(range(64))
    expected = _fresh(modes.CBC(bytes(8)), key, data)
    results: list[bool] = []

    def work() -> None:
        results.append(all(_crypto.tdes_cbc_encrypt(key, data) == expected for _ in range(200)))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 4
