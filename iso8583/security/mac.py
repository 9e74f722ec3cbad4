"""Message authentication codes for ISO 8583 field 64/128, and stamping/verifying whole messages.

Algorithms (all block cipher work done by `cryptography`):

* :func:`cbc_mac` — ISO/IEC 9797-1 MAC algorithm 1 (CBC-MAC, ANSI X9.9 with a single DES key),
  padding method 1, 2 or 3, with a single (DES) or double/triple-length (TDES) key.
* :func:`retail_mac` — ISO/IEC 9797-1 MAC algorithm 3 = ANSI X9.19 "retail MAC": single-DES
  CBC-MAC under the left key half, the last block finished with decrypt-under-right, encrypt-under-left.
* :func:`unionpay_ecb_mac` — the China UnionPay POS terminal "ECB" MAC: XOR all 8-byte blocks,
  expand to 16 hex characters, DES-encrypt the first 8, XOR with the last 8, encrypt again, keep the
  first 8 hex characters of the result (ASCII) as the 8-byte field 64.
* :func:`aes_cmac` — NIST SP 800-38B / RFC 4493.

Which bytes are MACed is the dialect's business: everything from the MTI up to, not including, the
MAC field (64, or 128 when a secondary bitmap is present); length headers, TPDU and application
headers are outside. :func:`stamp` and :func:`verify` do that for a spec. The default algorithm per
dialect is in :data:`DEFAULT_ALGORITHMS` (a spec may name its own in a ``[security]`` table with
``mac_algorithm = "..."``).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from . import _crypto
from .errors import MacError, SecurityError
from .keys import KeyLike, key_bytes

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGORITHMS",
    "MacError",
    "aes_cmac",
    "algorithm_for",
    "cbc_mac",
    "compute",
    "mac_input",
    "pad",
    "retail_mac",
    "stamp",
    "unionpay_ecb_mac",
    "verify",
]


# -- padding (ISO/IEC 9797-1 section 6.3) ------------------------------------------------------------

def pad(data: bytes, method: int = 1, block: int = 8) -> bytes:
    """ISO/IEC 9797-1 padding.

    1: append zero bytes to a whole block (empty data becomes one zero block);
    2: append ``80`` then zeros (always adds at least one byte);
    3: prepend a block holding the data length in bits, then pad with method 1.
    """
    data = bytes(data)
    if method == 1:
        if not data:
            return bytes(block)
        return data + bytes(-len(data) % block)
    if method == 2:
        data += b"\x80"
        return data + bytes(-len(data) % block)
    if method == 3:
        length = (len(data) * 8).to_bytes(block, "big")
        return length + data + bytes(-len(data) % block)
    raise SecurityError(f"unknown ISO 9797-1 padding method {method!r} (1, 2 or 3)")


def _truncate(mac: bytes, length: int) -> bytes:
    if not 1 <= length <= len(mac):
        raise SecurityError(f"MAC length must be 1..{len(mac)} bytes, got {length}")
    return mac[:length]


# -- algorithms ---------------------------------------------------------------------------------------

def cbc_mac(key: KeyLike, data: bytes, *, padding: int = 1, length: int = 8) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 1: the last block of a zero-IV CBC encryption.

    An 8-byte key gives DES CBC-MAC (ANSI X9.9 / FIPS 113); a 16- or 24-byte key TDES CBC-MAC.
    """
    padded = pad(data, padding)
    return _truncate(_crypto.tdes_cbc_encrypt(key_bytes(key), padded)[-8:], length)


def retail_mac(key: KeyLike, data: bytes, *, padding: int = 1, length: int = 8) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 3 (ANSI X9.19 retail MAC) with a double-length key K || K'.

    CBC with single DES under K over all blocks, then the final output is decrypted under K' and
    encrypted under K — which equals one two-key TDES encryption of the final CBC input.
    """
    raw = key_bytes(key)
    if len(raw) != 16:
        raise SecurityError(f"retail MAC (X9.19) needs a double-length 16-byte key, got {len(raw)}")
    padded = pad(data, padding)
    left = raw[:8]
    chain = _crypto.tdes_cbc_encrypt(left, padded[:-8])[-8:] if len(padded) > 8 else _crypto.ZERO8
    final = _crypto.tdes_ecb_encrypt(raw, _crypto.xor(chain, padded[-8:]))
    return _truncate(final, length)


def unionpay_ecb_mac(key: KeyLike, data: bytes) -> bytes:
    """China UnionPay POS terminal MAC ("ECB algorithm"), returned as the 8 ASCII bytes of field 64.

    MAB = data zero-padded to 8-byte blocks; XOR of all blocks -> 16 hex characters (upper case);
    E(first 8) XOR last 8 -> E(...) -> first 8 hex characters. E is DES for an 8-byte MAK, TDES for a
    double-length one.
    """
    raw = key_bytes(key)
    padded = pad(data, 1) if data else bytes(8)
    acc = 0
    for i in range(0, len(padded), 8):
        acc ^= int.from_bytes(padded[i:i + 8], "big")
    expanded = acc.to_bytes(8, "big").hex().upper().encode("ascii")
    first = _crypto.tdes_ecb_encrypt(raw, expanded[:8])
    second = _crypto.tdes_ecb_encrypt(raw, _crypto.xor(first, expanded[8:]))
    return second.hex().upper()[:8].encode("ascii")


def aes_cmac(key: KeyLike, data: bytes, *, length: int = 16) -> bytes:
    """AES-CMAC (NIST SP 800-38B, RFC 4493), truncated to ``length`` bytes (leftmost)."""
    return _truncate(_crypto.aes_cmac(key_bytes(key), data), length)


#: Algorithm name -> function(key, data) giving the 8 bytes placed in field 64/128.
ALGORITHMS: dict[str, Callable[[KeyLike, bytes], bytes]] = {
    "retail": lambda k, d: retail_mac(k, d),
    "cbc": lambda k, d: cbc_mac(k, d),
    "cbc_pad2": lambda k, d: cbc_mac(k, d, padding=2),
    "unionpay_ecb": unionpay_ecb_mac,
    "aes_cmac": lambda k, d: aes_cmac(k, d, length=8),
}
_ALIASES = {
    "x9.19": "retail", "x919": "retail", "ansi_x9.19": "retail", "iso9797_alg3": "retail", "alg3": "retail",
    "x9.9": "cbc", "iso9797_alg1": "cbc", "alg1": "cbc", "cbc_mac": "cbc",
    "ecb": "unionpay_ecb", "unionpay": "unionpay_ecb", "cup_ecb": "unionpay_ecb",
    "cmac": "aes_cmac",
}

#: Default MAC algorithm per built-in dialect (by spec name).
DEFAULT_ALGORITHMS: dict[str, str] = {
    "unionpay_pos": "unionpay_ecb",
    "iso87ascii": "retail",
    "iso87binary": "retail",
    "iso93ascii": "retail",
}
#: Default per transaction family, for user specs that extend a built-in dialect under a new name.
DEFAULT_FAMILY_ALGORITHMS: dict[str, str] = {"unionpay": "unionpay_ecb", "iso87": "retail", "iso93": "retail"}


def _canonical(name: str) -> str:
    key = name.lower().replace("-", "_").replace(" ", "_")
    key = _ALIASES.get(key, key)
    if key not in ALGORITHMS:
        raise SecurityError(f"unknown MAC algorithm {name!r}; known: {', '.join(sorted(ALGORITHMS))}")
    return key


def compute(algorithm: str, key: KeyLike, data: bytes) -> bytes:
    """The 8-byte field 64/128 value for ``data`` under ``algorithm`` (a name or alias)."""
    function = ALGORITHMS.get(algorithm)   # canonical names (what algorithm_for returns) go straight
    if function is None:
        function = ALGORITHMS[_canonical(algorithm)]
    return function(key, bytes(data))


def _spec_name(spec: Any) -> str | None:
    return getattr(spec, "name", None)


def algorithm_for(spec: Any, algorithm: str | None = None) -> str:
    """The MAC algorithm to use with ``spec``: the explicit one, else the spec's ``[security]`` table
    (``mac_algorithm = "..."``), else :data:`DEFAULT_ALGORITHMS` by spec name, else by the spec's
    family (:data:`DEFAULT_FAMILY_ALGORITHMS`), else the X9.19 retail MAC."""
    if algorithm is not None:
        return _canonical(algorithm)
    spec = _load(spec)
    table = getattr(spec, "security", None)
    if not isinstance(table, dict):
        source = getattr(spec, "source", None)
        table = source.get("security") if isinstance(source, dict) else None
    if isinstance(table, dict) and table.get("mac_algorithm"):
        return _canonical(str(table["mac_algorithm"]))
    name = _spec_name(spec) or ""
    if name in DEFAULT_ALGORITHMS:
        return DEFAULT_ALGORITHMS[name]
    return DEFAULT_FAMILY_ALGORITHMS.get(str(getattr(spec, "family", "")), "retail")


# -- message level ------------------------------------------------------------------------------------

def _load(spec: Any) -> Any:
    """A Spec from a Spec or anything :func:`iso8583.load_spec` takes (a dialect name, a path, a dict)."""
    if isinstance(spec, (str, dict)) or hasattr(spec, "__fspath__"):
        from .. import load_spec

        return load_spec(spec)
    return spec


def _mac_field(msg: Any, spec: Any) -> int:
    """64, or 128 when the message has secondary-bitmap fields (then field 64 is not the last one)."""
    wants_128 = any(65 <= n <= 128 for n in msg.fields if n != 128)
    number = 128 if wants_128 or 128 in msg.fields else 64
    fields = getattr(spec, "fields", None)
    if fields is not None and number not in fields:
        raise MacError(f"dialect {_spec_name(spec)!r} has no field {number} to carry the MAC")
    return number


def _field_size(spec: Any, number: int, value: bytes) -> int | None:
    """Encoded size of ``value`` in field ``number`` via the spec's compiled field codec, if it has one."""
    fields = getattr(spec, "fields", None)
    encoder = getattr(fields.get(number), "encode", None) if isinstance(fields, dict) else None
    return len(encoder(value)) if callable(encoder) else None


def _mac_split(msg: Any, spec: Any) -> tuple[int, bytes, int]:
    """(MAC field number, bytes from the MTI up to the MAC field, encoded size of the MAC field)
    for ``msg`` encoded under ``spec``.

    The MAC field is always the last field, so the bytes before it are the encoding of the message
    (with a placeholder MAC) minus the MAC field's encoded size. For a spec without compiled field
    codecs the size is found by encoding twice with different placeholders (the common prefix).
    """
    from .. import encode  # the codec; imported late so security works without it for primitives

    number = _mac_field(msg, spec)
    work = msg.copy()
    if number == 128:
        work.fields.pop(64, None)
    later = [n for n in work.fields if n > number]
    if later:
        raise MacError(f"field {later[0]} follows MAC field {number}; the MAC must be the last field")
    work[number] = b"\x00" * 8
    low = encode(work, spec)
    size = _field_size(spec, number, work[number])
    if size is not None:
        return number, low[:len(low) - size], size
    work[number] = b"\xff" * 8
    high = encode(work, spec)
    if len(low) != len(high):
        raise MacError(f"field {number} encodes with a variable size; cannot place the MAC")
    cut = 0
    for a, b in zip(low, high):
        if a != b:
            break
        cut += 1
    # Bitmap and any length prefix are equal in both; the first byte that differs is the first byte
    # of the MAC value's encoding (binary 00 vs FF, hex text '0' vs 'F').
    return number, low[:cut], len(low) - cut


def mac_input(msg: Any, spec: Any) -> bytes:
    """The bytes a MAC is computed over for ``msg`` under ``spec`` (MTI up to the MAC field)."""
    return _mac_split(msg, _load(spec))[1]


def stamp(msg: Any, spec: Any, key: KeyLike, algorithm: str | None = None) -> Any:
    """A copy of ``msg`` with field 64 (or 128) set to its MAC under ``key``.

    Any MAC already present is replaced. ``algorithm`` defaults per dialect (:func:`algorithm_for`).
    """
    spec = _load(spec)
    algo = algorithm_for(spec, algorithm)
    number, data, _ = _mac_split(msg, spec)
    out = msg.copy()
    if number == 128:
        out.fields.pop(64, None)
    out[number] = compute(algo, key, data)
    return out


def verify(data: Any, spec: Any, key: KeyLike, algorithm: str | None = None) -> bool:
    """True iff the MAC in ``data`` (encoded bytes starting at the MTI, or a ``Message``) is right.

    For bytes, the MAC is checked over the bytes exactly as received (not a re-encoding). A message
    without a MAC field gives ``False``. Undecodable bytes raise the codec's ``DecodeError``.
    """
    from .. import decode
    from ..message import Message

    spec = _load(spec)
    algo = algorithm_for(spec, algorithm)
    if isinstance(data, Message):
        msg = data
        raw: bytes | None = None
    else:
        raw = bytes(data)
        msg = decode(raw, spec)
    number = 128 if 128 in msg.fields else 64
    received = msg.get(number)
    if not isinstance(received, (bytes, bytearray)):
        return False
    try:
        if _mac_field(msg, spec) != number:
            return False  # a MAC in 64 with secondary-bitmap fields after it: not where it belongs
        size = _field_size(spec, number, bytes(received)) if raw is not None else None
        if size is None:
            _, canonical, size = _mac_split(msg, spec)
            if raw is None:
                raw = canonical + bytes(size)  # only the prefix is used below
    except MacError:
        return False
    # For received bytes, MAC exactly what came over the wire: everything before the MAC field,
    # which is the last field; no re-encoding is involved.
    prefix = raw[:len(raw) - size]
    expected = compute(algo, key, prefix)
    return hmac.compare_digest(expected, bytes(received)[:len(expected)]) and len(received) == len(expected)
