"""Payment security primitives: PIN blocks, MACs, key handling, DUKPT (built on `cryptography`).

* :mod:`.pin` — ISO 9564-1 PIN blocks, formats 0, 1, 3 (TDES) and 4 (AES).
* :mod:`.mac` — ISO 9797-1 algorithms 1 and 3 (X9.19 retail MAC), UnionPay POS ECB MAC, AES-CMAC;
  stamping and verifying field 64/128 of a message per dialect.
* :mod:`.keys` — :class:`Key` (repr shows only the KCV), check values, parity, sign-on
  :class:`WorkingKeys` (field 62).
* :mod:`.dukpt` — ANSI X9.24-1 TDES DUKPT.

No function here logs; no exception text or repr contains a key, PIN or clear PIN block.
"""

from . import dukpt, keys, mac, pin
from .errors import DukptError, KeyCheckError, MacError, PinBlockError, SecurityError
from .keys import Key, WorkingKeys, adjust_parity, kcv

__all__ = [
    "DukptError",
    "Key",
    "KeyCheckError",
    "MacError",
    "PinBlockError",
    "SecurityError",
    "WorkingKeys",
    "adjust_parity",
    "dukpt",
    "kcv",
    "keys",
    "mac",
    "pin",
]
