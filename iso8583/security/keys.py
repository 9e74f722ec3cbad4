"""Keys: check values, parity, key wrapping under a master key, and sign-on working keys.

A POS terminal is loaded with a terminal master key (TMK) once, in a secure room. At every sign-on
the host sends fresh *working keys* — a PIN key (PIK) and a MAC key (MAK), sometimes a data key
(TDK) — each encrypted under the TMK and followed by its key check value (KCV), so the terminal can
tell a corrupted or wrongly-keyed field 62 from a good one before it uses the keys. That is what
:class:`WorkingKeys` packs and unpacks.

Key material is wrapped in :class:`Key`, whose ``repr``/``str`` show only the algorithm, length and
KCV: a key can be put in a dataclass, an event or an assertion message without leaking.
"""

from __future__ import annotations

import hmac
import random
import secrets
from dataclasses import dataclass
from typing import Literal, Union

from . import _crypto
from .errors import KeyCheckError, SecurityError

Algorithm = Literal["tdes", "aes"]
KeyLike = Union["Key", bytes, bytearray]

__all__ = [
    "Key",
    "KeyLike",
    "WorkingKeys",
    "adjust_parity",
    "decrypt_key",
    "encrypt_key",
    "has_odd_parity",
    "kcv",
    "key_bytes",
    "load_test_keys",
]


class Key:
    """Symmetric key material whose text form is only ``Key(tdes-128, kcv=08D7B4)``.

    ``bytes(key)`` gives the raw key; ``==`` compares in constant time. Pass ``algorithm="aes"``
    for AES keys (a 16-byte key is otherwise taken as double-length TDES).
    """

    __slots__ = ("_material", "algorithm")

    def __init__(self, material: bytes | bytearray | str, algorithm: Algorithm = "tdes") -> None:
        if isinstance(material, str):   # a host builds its PIN key from hex for every PIN sale
            try:
                material = bytes.fromhex(material)
            except ValueError:
                raise SecurityError("key hex text is not valid hexadecimal") from None
        elif material.__class__ is not bytes:
            material = bytes(material)
        size = len(material)
        if algorithm == "tdes":
            if size != 16 and size != 8 and size != 24:
                raise SecurityError(f"TDES key must be 8, 16 or 24 bytes, got {size}")
        elif algorithm == "aes":
            if size not in (16, 24, 32):
                raise SecurityError(f"AES key must be 16, 24 or 32 bytes, got {size}")
        else:
            raise SecurityError(f"unknown key algorithm {algorithm!r} (expected 'tdes' or 'aes')")
        self._material = material
        self.algorithm: Algorithm = algorithm

    @classmethod
    def from_hex(cls, text: str, algorithm: Algorithm = "tdes") -> Key:
        return cls(text.replace(" ", ""), algorithm)

    @classmethod
    def generate(cls, length: int = 16, algorithm: Algorithm = "tdes",
                 rng: random.Random | None = None) -> Key:
        """A fresh random key (odd parity for TDES). ``rng`` is for reproducible simulations only."""
        raw = rng.randbytes(length) if rng is not None else secrets.token_bytes(length)
        return cls(adjust_parity(raw) if algorithm == "tdes" else raw, algorithm)

    def __bytes__(self) -> bytes:
        return self._material

    def __len__(self) -> int:
        return len(self._material)

    @property
    def kcv(self) -> bytes:
        """Check value by the usual method for the algorithm (see :func:`kcv`)."""
        return kcv(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Key):
            return self.algorithm == other.algorithm and hmac.compare_digest(self._material, other._material)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.algorithm, kcv(self)))

    def __repr__(self) -> str:
        return f"Key({self.algorithm}-{len(self._material) * 8}, kcv={kcv(self).hex().upper()})"

    __str__ = __repr__

    def __reduce__(self) -> tuple:  # pickling keeps working; text forms stay masked
        return (Key, (self._material, self.algorithm))


def key_bytes(key: KeyLike) -> bytes:
    """Raw bytes of a :class:`Key` or bytes-like key."""
    if isinstance(key, Key):
        return bytes(key)
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    raise SecurityError(f"expected a Key or bytes, got {type(key).__name__}")


def _algorithm(key: KeyLike, algorithm: Algorithm | None) -> Algorithm:
    if algorithm is not None:
        return algorithm
    return key.algorithm if isinstance(key, Key) else "tdes"


def kcv(key: KeyLike, *, algorithm: Algorithm | None = None, method: Literal["zero", "cmac"] | None = None,
        length: int | None = None) -> bytes:
    """Key check value.

    * TDES/DES, ``method="zero"`` (default): first 3 bytes of the key encrypting a zero block
      (X9.24-1 method 1, what HSMs print as "KCV").
    * ``method="cmac"`` (the default, and the only method X9.24-1:2017 / PCI PIN 15-1 allow, for
      AES): leftmost bytes of the CMAC of one all-zero block under the key with its own block
      cipher; 5 bytes by default.
    * AES with ``method="zero"``: the legacy AES-ECB-of-zeros value (3 bytes) older tools print.

    ``length`` overrides the number of bytes kept (UnionPay field 62 uses 4).
    """
    raw = key_bytes(key)
    algo = _algorithm(key, algorithm)
    if method is None:
        method = "cmac" if algo == "aes" else "zero"
    if method not in ("zero", "cmac"):
        raise SecurityError(f"unknown KCV method {method!r} (expected 'zero' or 'cmac')")
    if algo == "aes" and method == "cmac":
        full = _crypto.aes_cmac(raw, _crypto.ZERO16)
        default = 5
    elif algo == "aes":  # legacy: AES-ECB of a zero block, still printed by many HSMs and tools
        full = _crypto.aes_ecb_encrypt(raw, _crypto.ZERO16)
        default = 3
    elif method == "cmac":
        full = _crypto.tdes_cmac(raw, _crypto.ZERO8)
        default = 5
    else:
        full = _crypto.tdes_ecb_encrypt(raw, _crypto.ZERO8)
        default = 3
    keep = default if length is None else length
    if not 1 <= keep <= len(full):
        raise SecurityError(f"KCV length must be 1..{len(full)} bytes, got {keep}")
    return full[:keep]


def has_odd_parity(key: KeyLike) -> bool:
    """True when every byte has an odd number of 1 bits (the DES parity convention)."""
    return all(bin(b).count("1") % 2 == 1 for b in key_bytes(key))


def adjust_parity(key: KeyLike) -> bytes:
    """Set the low bit of each byte so the byte has odd parity; the 56 key bits are unchanged."""
    out = bytearray(key_bytes(key))
    for i, b in enumerate(out):
        high = b & 0xFE
        out[i] = high | (0 if bin(high).count("1") % 2 else 1)
    return bytes(out)


def encrypt_key(kek: KeyLike, key: KeyLike) -> bytes:
    """Encrypt a TDES key under a key-encrypting key (TMK/ZMK), TDES-ECB as on a sign-on."""
    return _crypto.tdes_ecb_encrypt(key_bytes(kek), key_bytes(key))


def decrypt_key(kek: KeyLike, encrypted: bytes) -> Key:
    """Inverse of :func:`encrypt_key`."""
    return Key(_crypto.tdes_ecb_decrypt(key_bytes(kek), bytes(encrypted)))


#: Bytes of check value that follow each key in UnionPay field 62.
FIELD62_KCV_LENGTH = 4


@dataclass(frozen=True, repr=False)
class WorkingKeys:
    """The working keys a sign-on delivers: PIN key, MAC key and optionally a track/data key.

    Field 62 layout (China UnionPay POS terminal spec, sign-on 0810): for each key in the order
    PIK, MAK[, TDK]: the key encrypted under the TMK (TDES-ECB), then its 4-byte check value (the
    clear key encrypting eight zero bytes). Slots have one size, so the total says which layout it
    is: 24 bytes = single-length PIK+MAK; 40 = double-length PIK+MAK; 60 = double-length
    PIK+MAK+TDK. In a 16-byte slot, a single-length key (the DES MAK of the UnionPay ECB MAC) is
    8 encrypted bytes followed by 8 zero bytes. ISO 8583:1987 dialects carry the same bytes as hex
    text (``pack_hex``).
    """

    pin_key: Key
    mac_key: Key
    data_key: Key | None = None

    def __post_init__(self) -> None:
        for name in ("pin_key", "mac_key", "data_key"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Key):
                object.__setattr__(self, name, Key(key_bytes(value)))
        if any(len(k) not in (8, 16) for k in self._keys()):
            raise SecurityError("working keys must be 8 or 16 bytes long")

    def _keys(self) -> list[Key]:
        return [self.pin_key, self.mac_key] + ([self.data_key] if self.data_key is not None else [])

    @classmethod
    def generate(cls, length: int = 16, *, with_data_key: bool = False,
                 rng: random.Random | None = None) -> WorkingKeys:
        """Fresh random working keys with odd parity (the host does this on each sign-on)."""
        return cls(Key.generate(length, rng=rng), Key.generate(length, rng=rng),
                   Key.generate(length, rng=rng) if with_data_key else None)

    def pack(self, tmk: KeyLike) -> bytes:
        """Field 62 payload: each key encrypted under ``tmk`` followed by its 4-byte check value.

        If any key is double-length every slot is 16 bytes; a single-length key in a 16-byte slot
        (the DES MAC key of UnionPay's "double-length" mode) is sent as 8 encrypted bytes + 8 zeros.
        """
        slot = max(len(k) for k in self._keys())
        out = bytearray()
        for key in self._keys():
            out += encrypt_key(tmk, key).ljust(slot, b"\x00")
            out += kcv(key, length=FIELD62_KCV_LENGTH)
        return bytes(out)

    def pack_hex(self, tmk: KeyLike) -> str:
        """:meth:`pack` as upper-case hex text, for dialects where field 62 is ``ans``."""
        return self.pack(tmk).hex().upper()

    @classmethod
    def unpack(cls, payload: bytes | bytearray | str, tmk: KeyLike) -> WorkingKeys:
        """Decrypt a field 62 payload (bytes, or hex text) under ``tmk`` and check every KCV.

        Raises :class:`KeyCheckError` naming the key whose check value does not match (the usual
        cause: the terminal holds a different TMK than the host), :class:`SecurityError` for a
        length that is no known layout.
        """
        if isinstance(payload, str):
            try:
                payload = bytes.fromhex(payload)
            except ValueError:
                raise SecurityError("field 62 working keys: hex text is not valid hexadecimal") from None
        data = bytes(payload)
        layouts = {24: (8, 2), 40: (16, 2), 60: (16, 3)}
        if len(data) not in layouts:
            raise SecurityError(f"field 62 working keys: expected 24, 40 or 60 bytes, got {len(data)}")
        size, count = layouts[len(data)]
        keys: list[Key] = []
        names = ("PIN key", "MAC key", "data key")
        for i in range(count):
            chunk = data[i * (size + FIELD62_KCV_LENGTH):(i + 1) * (size + FIELD62_KCV_LENGTH)]
            encrypted = chunk[:size]
            if size == 16 and encrypted[8:] == bytes(8):
                encrypted = encrypted[:8]  # single-length key in a double-length slot (see pack)
            key = decrypt_key(tmk, encrypted)
            expected = chunk[size:]
            actual = kcv(key, length=FIELD62_KCV_LENGTH)
            if not hmac.compare_digest(actual, expected):
                raise KeyCheckError(f"field 62 {names[i]}: check value {actual.hex().upper()} after decryption "
                                    f"under the TMK does not match the one sent ({expected.hex().upper()}); "
                                    "wrong terminal master key or corrupted field")
            keys.append(key)
        return cls(*keys)

    def __repr__(self) -> str:
        parts = [f"pin_key={self.pin_key!r}", f"mac_key={self.mac_key!r}"]
        if self.data_key is not None:
            parts.append(f"data_key={self.data_key!r}")
        return f"WorkingKeys({', '.join(parts)})"


# -- test key fixture ---------------------------------------------------------------------------------

#: Where the repository keeps its TEST ONLY keys.
DEFAULT_TEST_KEYS = "fixtures/keys/test_keys.toml"


@dataclass(frozen=True)
class TestKeys:
    """The TEST ONLY key set of ``fixtures/keys/test_keys.toml`` (see that file's header)."""

    __test__ = False  # not a pytest test class

    tmk: Key
    working_keys: WorkingKeys
    working_keys_single: WorkingKeys
    data_key: Key
    bdk: Key
    ksn: bytes
    ipek: Key
    aes_pin_key: Key
    field62: bytes
    field62_single: bytes


def load_test_keys(path: str | None = None) -> TestKeys:
    """Load the TEST ONLY keys, checking every stored KCV and field 62 against the clear keys.

    ``path`` defaults to ``fixtures/keys/test_keys.toml`` of the source tree (found from this file).
    Refuses a file that does not declare ``[meta] test_only = true``.
    """
    import tomllib
    from pathlib import Path

    file = Path(path) if path is not None else Path(__file__).resolve().parents[2] / DEFAULT_TEST_KEYS
    with open(file, "rb") as fh:
        data = tomllib.load(fh)
    if not data.get("meta", {}).get("test_only"):
        raise SecurityError(f"{file}: refusing to load a key file not marked [meta] test_only = true")

    def checked(table: str, name: str, algorithm: Algorithm = "tdes") -> Key:
        key = Key(data[table][name], algorithm)
        stored = data[table].get(f"{name}_kcv")
        if stored is not None and kcv(key, length=len(stored) // 2).hex().upper() != stored.upper():
            raise KeyCheckError(f"{file}: [{table}] {name} does not match its KCV {stored}")
        return key

    tmk = checked("terminal", "tmk")
    if "tmk" in data and Key(data["tmk"]) != tmk:
        raise KeyCheckError(f"{file}: top-level tmk differs from [terminal] tmk")
    wk = WorkingKeys(checked("working_keys", "pik"), checked("working_keys", "mak"))
    wk1 = WorkingKeys(Key(data["working_keys_single"]["pik"]), Key(data["working_keys_single"]["mak"]))
    field62 = bytes.fromhex(data["working_keys"]["field62"])
    field62_single = bytes.fromhex(data["working_keys_single"]["field62"])
    if WorkingKeys.unpack(field62, tmk) != wk or WorkingKeys.unpack(field62_single, tmk) != wk1:
        raise KeyCheckError(f"{file}: field62 does not decrypt to the listed working keys")
    return TestKeys(
        tmk=tmk, working_keys=wk, working_keys_single=wk1, data_key=checked("data_key", "tdk"),
        bdk=Key(data["dukpt"]["bdk"]), ksn=bytes.fromhex(data["dukpt"]["ksn"]), ipek=Key(data["dukpt"]["ipek"]),
        aes_pin_key=checked("aes", "pin_key", "aes"), field62=field62, field62_single=field62_single,
    )
