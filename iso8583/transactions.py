"""The shared transaction vocabulary: which MTI, processing code and private fields make each
transaction, how a response echoes its request, how reversals name their original.

Terminal and host are written independently and meet only on the wire; both build and read
messages through this one module so that they agree by construction (docs/CONTRACTS.md §3).

Two *families* of dialect exist: ``"iso87"`` (iso87ascii, iso87binary, iso93ascii) and
``"unionpay"`` (unionpay_pos, the China UnionPay POS terminal dialect, which carries the
transaction type in field 60.1, the batch number in 60.2 and network management codes in 60.3).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from .errors import ISO8583Error
from .message import Message

Family = Literal["iso87", "unionpay"]


class TransactionError(ISO8583Error, ValueError):
    """A message does not fit the transaction vocabulary (unknown MTI/processing code, bad field 90...)."""


class TxnType(StrEnum):
    SIGN_ON = "sign_on"
    ECHO = "echo"
    BALANCE = "balance"
    SALE = "sale"
    VOID = "void"
    REFUND = "refund"
    OFFLINE_SALE = "offline_sale"
    PREAUTH = "preauth"
    COMPLETION = "completion"
    REVERSAL = "reversal"
    SETTLEMENT = "settlement"
    BATCH_UPLOAD = "batch_upload"
    SETTLEMENT_FINAL = "settlement_final"


#: Transactions that move money from the cardholder to the merchant (debits) or back (credits);
#: these are what settlement totals count.
DEBIT_TYPES = frozenset({TxnType.SALE, TxnType.OFFLINE_SALE, TxnType.COMPLETION})
CREDIT_TYPES = frozenset({TxnType.REFUND})
#: Requests the terminal must reverse when it does not get a trustworthy answer.
REVERSIBLE_TYPES = frozenset({TxnType.SALE, TxnType.VOID, TxnType.PREAUTH, TxnType.COMPLETION})
#: Requests sent store-and-forward (0220, repeated as 0221 until a 0230 arrives).
ADVICE_TYPES = frozenset({TxnType.REFUND, TxnType.OFFLINE_SALE})

# -- processing codes (field 3) and UnionPay type codes (field 60.1) -------------------------
PROC_PURCHASE = "000000"
PROC_VOID = {"iso87": "020000", "unionpay": "200000"}
PROC_REFUND = "200000"
PROC_BALANCE = "310000"
PROC_PREAUTH = "030000"
PROC_SETTLEMENT = "920000"
PROC_SETTLEMENT_FINAL = "960000"

#: UnionPay field 60.1 transaction type codes.
UP_TYPE = {
    TxnType.SIGN_ON: "00", TxnType.ECHO: "00", TxnType.BALANCE: "01", TxnType.PREAUTH: "10",
    TxnType.COMPLETION: "20", TxnType.SALE: "22", TxnType.VOID: "23", TxnType.REFUND: "25",
    TxnType.OFFLINE_SALE: "36", TxnType.SETTLEMENT: "00", TxnType.BATCH_UPLOAD: "00",
    TxnType.SETTLEMENT_FINAL: "00",
}
_UP_TYPE_REVERSE = {"01": TxnType.BALANCE, "10": TxnType.PREAUTH, "20": TxnType.COMPLETION,
                    "22": TxnType.SALE, "23": TxnType.VOID, "25": TxnType.REFUND, "36": TxnType.OFFLINE_SALE}
#: UnionPay field 60.3 network management information codes.
UP_NMI_SIGN_ON = "003"     # sign-on, double-length working keys
UP_NMI_ECHO = "301"
UP_NMI_SETTLEMENT = "201"
UP_NMI_BATCH_UPLOAD = "201"
UP_NMI_SETTLEMENT_FINAL = "207"
#: ISO 1987 field 70 network management codes.
NMI_SIGN_ON = "001"
NMI_ECHO = "301"

#: POS entry mode (field 22): PAN entry + PIN capability ("1" = PIN can be entered).
ENTRY_MODE = {"magstripe": "021", "chip": "051", "contactless": "071", "manual": "011", "fallback": "801"}
POS_CONDITION_NORMAL = "00"
POS_CONDITION_PREAUTH_COMPLETION = "06"

# -- response codes (field 39) ----------------------------------------------------------------
RESPONSE_CODES: dict[str, str] = {
    "00": "approved",
    "03": "invalid merchant",
    "05": "do not honour",
    "06": "error",
    "12": "invalid transaction",
    "13": "invalid amount",
    "14": "invalid card number",
    "25": "unable to locate original",
    "30": "format error",
    "41": "lost card",
    "43": "stolen card",
    "51": "insufficient funds",
    "54": "expired card",
    "55": "incorrect PIN",
    "58": "transaction not permitted to terminal",
    "61": "exceeds withdrawal amount limit",
    "62": "restricted card",
    "64": "original amount incorrect",
    "75": "allowable PIN tries exceeded",
    "77": "batch number mismatch, re-sign-on",
    "91": "issuer unavailable",
    "94": "duplicate transmission",
    "95": "reconciliation error",
    "96": "system malfunction",
    "98": "no response (reversal reason)",
    "A0": "MAC verification failed",
}
APPROVED_CODES = frozenset({"00", "10", "11"})
#: Reasons a terminal puts in field 39 of its reversal request.
REVERSAL_REASON_TIMEOUT = "98"
REVERSAL_REASON_MAC = "A0"
REVERSAL_REASON_MALFORMED = "96"
REVERSAL_REASON_TERMINAL = "06"


def rc_text(rc: str | None) -> str:
    """Human text for a response code: ``"51 insufficient funds"``."""
    if rc is None:
        return "no response"
    return f"{rc} {RESPONSE_CODES.get(rc, 'unknown response code')}"


def is_approved(rc: str | None) -> bool:
    return rc in APPROVED_CODES


# -- dialect families ---------------------------------------------------------------------------
_FAMILIES: dict[str, Family] = {
    "iso87ascii": "iso87", "iso87binary": "iso87", "iso93ascii": "iso87", "unionpay_pos": "unionpay",
}


def family_of(dialect: Any) -> Family:
    """``"iso87"`` or ``"unionpay"`` for a dialect name or a Spec (anything with ``.name``).

    A user dialect can declare its family in its spec (``family = "unionpay"``); otherwise the
    name decides, and names containing "unionpay"/"cup" are UnionPay.
    """
    declared = getattr(dialect, "family", None)
    if declared in ("iso87", "unionpay"):
        return declared
    name = dialect if isinstance(dialect, str) else str(getattr(dialect, "name", ""))
    if name in _FAMILIES:
        return _FAMILIES[name]
    lowered = name.lower()
    return "unionpay" if ("unionpay" in lowered or "cup" in lowered) else "iso87"


# -- formatting helpers -------------------------------------------------------------------------
def format_amount(minor: int, digits: int = 12) -> str:
    """Integer minor units to the fixed-width field 4 form: 10000 -> ``"000000010000"``."""
    if not isinstance(minor, int) or minor < 0 or len(str(minor)) > digits:
        raise TransactionError(f"amount must be a non-negative integer of at most {digits} digits, got {minor!r}")
    return str(minor).zfill(digits)


def parse_amount(text: str) -> int:
    if not (isinstance(text, str) and text.isdigit()):
        raise TransactionError(f"amount field must be digits, found {text!r}")
    return int(text)


def amount_from_display(text: str | int) -> int:
    """``"12.34"`` / ``"12"`` / ``1234`` (already minor units if int) -> minor units, exactly."""
    if isinstance(text, int):
        return text
    whole, _, frac = text.strip().partition(".")
    if not whole.isdigit() or (frac and (not frac.isdigit() or len(frac) > 2)):
        raise TransactionError(f"amount must look like 12.34, got {text!r}")
    return int(whole) * 100 + int((frac or "0").ljust(2, "0"))


def transmission_time(now: _dt.datetime) -> str:
    """Field 7, MMDDhhmmss (UTC by convention)."""
    return now.strftime("%m%d%H%M%S")


def local_time(now: _dt.datetime) -> str:
    """Field 12, hhmmss."""
    return now.strftime("%H%M%S")


def local_date(now: _dt.datetime) -> str:
    """Field 13, MMDD."""
    return now.strftime("%m%d")


def format_stan(stan: int) -> str:
    if not 0 < stan <= 999999:
        raise TransactionError(f"STAN must be 1..999999, got {stan}")
    return f"{stan:06d}"


def next_stan(stan: int) -> int:
    """STANs run 000001..999999 and wrap to 000001 (000000 is not used)."""
    return 1 if stan >= 999999 else stan + 1


# -- request templates --------------------------------------------------------------------------
def request_base(txn: TxnType, family: Family, *, batch: str = "000001") -> tuple[str, dict[int, Any]]:
    """The MTI and the fields that *identify* a transaction type in a family.

    The caller adds the data fields (2, 4, 11, 14, 22, 35, 41, 42, 52, 55, ...). For the UnionPay
    family field 60 is returned as a dict with 60.1 (type), 60.2 (batch) and 60.3 (network code).
    """
    if family == "unionpay":
        return _unionpay_base(txn, batch)
    table: dict[TxnType, tuple[str, dict[int, Any]]] = {
        TxnType.SIGN_ON: ("0800", {70: NMI_SIGN_ON}),
        TxnType.ECHO: ("0800", {70: NMI_ECHO}),
        TxnType.BALANCE: ("0200", {3: PROC_BALANCE, 25: POS_CONDITION_NORMAL}),
        TxnType.SALE: ("0200", {3: PROC_PURCHASE, 25: POS_CONDITION_NORMAL}),
        TxnType.VOID: ("0200", {3: PROC_VOID["iso87"], 25: POS_CONDITION_NORMAL}),
        TxnType.REFUND: ("0220", {3: PROC_REFUND, 25: POS_CONDITION_NORMAL}),
        TxnType.OFFLINE_SALE: ("0220", {3: PROC_PURCHASE, 25: POS_CONDITION_NORMAL}),
        TxnType.PREAUTH: ("0100", {3: PROC_PREAUTH, 25: POS_CONDITION_NORMAL}),
        TxnType.COMPLETION: ("0200", {3: PROC_PURCHASE, 25: POS_CONDITION_PREAUTH_COMPLETION}),
        TxnType.SETTLEMENT: ("0500", {3: PROC_SETTLEMENT, 60: batch}),
        TxnType.BATCH_UPLOAD: ("0320", {60: batch}),
        TxnType.SETTLEMENT_FINAL: ("0500", {3: PROC_SETTLEMENT_FINAL, 60: batch}),
    }
    if txn not in table:
        raise TransactionError(f"{txn} has no request template (reversals are built by make_reversal)")
    mti, fields = table[txn]
    return mti, dict(fields)


def _unionpay_base(txn: TxnType, batch: str) -> tuple[str, dict[int, Any]]:
    def f60(code: str, nmi: str = "000") -> dict[str, str]:
        return {"60.1": code, "60.2": batch, "60.3": nmi}

    table: dict[TxnType, tuple[str, dict[int, Any]]] = {
        TxnType.SIGN_ON: ("0800", {60: f60("00", UP_NMI_SIGN_ON)}),
        TxnType.ECHO: ("0820", {60: f60("00", UP_NMI_ECHO)}),
        TxnType.BALANCE: ("0200", {3: PROC_BALANCE, 25: POS_CONDITION_NORMAL, 60: f60("01")}),
        TxnType.SALE: ("0200", {3: PROC_PURCHASE, 25: POS_CONDITION_NORMAL, 60: f60("22")}),
        TxnType.VOID: ("0200", {3: PROC_VOID["unionpay"], 25: POS_CONDITION_NORMAL, 60: f60("23")}),
        TxnType.REFUND: ("0220", {3: PROC_REFUND, 25: POS_CONDITION_NORMAL, 60: f60("25")}),
        TxnType.OFFLINE_SALE: ("0220", {3: PROC_PURCHASE, 25: POS_CONDITION_NORMAL, 60: f60("36")}),
        TxnType.PREAUTH: ("0100", {3: PROC_PREAUTH, 25: POS_CONDITION_NORMAL, 60: f60("10")}),
        TxnType.COMPLETION: ("0200", {3: PROC_PURCHASE, 25: POS_CONDITION_PREAUTH_COMPLETION, 60: f60("20")}),
        TxnType.SETTLEMENT: ("0500", {60: f60("00", UP_NMI_SETTLEMENT)}),
        TxnType.BATCH_UPLOAD: ("0320", {60: f60("00", UP_NMI_BATCH_UPLOAD)}),
        TxnType.SETTLEMENT_FINAL: ("0320", {60: f60("00", UP_NMI_SETTLEMENT_FINAL)}),
    }
    if txn not in table:
        raise TransactionError(f"{txn} has no request template (reversals are built by make_reversal)")
    mti, fields = table[txn]
    return mti, dict(fields)


def _f60(msg: Message) -> dict[str, str]:
    value = msg.get(60)
    return value if isinstance(value, dict) else {}


def classify(msg: Message, family: Family) -> TxnType:
    """The transaction type of a request *or* response (responses classify like their request)."""
    mti = msg.mti
    cls, fn = mti[1], mti[2]
    proc = msg.get(3, "")
    if cls == "4":
        return TxnType.REVERSAL
    if family == "unionpay":
        f60 = _f60(msg)
        code, nmi = f60.get("60.1", ""), f60.get("60.3", "")
        if cls == "8":
            return TxnType.ECHO if (nmi == UP_NMI_ECHO or fn in "23") else TxnType.SIGN_ON
        if cls == "5":
            return TxnType.SETTLEMENT
        if cls == "3":
            return TxnType.SETTLEMENT_FINAL if nmi == UP_NMI_SETTLEMENT_FINAL else TxnType.BATCH_UPLOAD
        if code in _UP_TYPE_REVERSE:
            return _UP_TYPE_REVERSE[code]
        raise TransactionError(f"field 60.1: unknown UnionPay transaction type code {code!r} for MTI {mti}")
    if cls == "8":
        code = msg.get(70, "")
        if code == NMI_ECHO:
            return TxnType.ECHO
        if code == NMI_SIGN_ON:
            return TxnType.SIGN_ON
        raise TransactionError(f"field 70: unknown network management code {code!r}")
    if cls == "5":
        return TxnType.SETTLEMENT_FINAL if proc == PROC_SETTLEMENT_FINAL else TxnType.SETTLEMENT
    if cls == "3":
        return TxnType.BATCH_UPLOAD
    if cls == "1":
        if proc.startswith("03"):
            return TxnType.PREAUTH
        if proc.startswith("31"):
            return TxnType.BALANCE
    if cls == "2":
        if fn in "23":  # advices
            if proc.startswith("20"):
                return TxnType.REFUND
            if proc.startswith("00"):
                return TxnType.OFFLINE_SALE
        elif proc.startswith("31"):
            return TxnType.BALANCE
        elif proc.startswith("02"):
            return TxnType.VOID
        elif proc.startswith("00"):
            return TxnType.COMPLETION if msg.get(25) == POS_CONDITION_PREAUTH_COMPLETION else TxnType.SALE
    raise TransactionError(f"field 3: no transaction type for MTI {mti} with processing code {proc!r}")


# -- keys linking requests, responses, reversals and the ledger ---------------------------------
@dataclass(frozen=True, slots=True)
class TxnKey:
    """Identifies one request across terminal journal, wire and host ledger.

    ``ref`` is field 7 (transmission date-time) in the ISO family and the batch number (60.2) in
    the UnionPay family, whose POS messages carry no field 7.
    """

    tid: str
    stan: str
    ref: str

    def __str__(self) -> str:
        return f"{self.tid}/{self.stan}/{self.ref}"


def txn_key(msg: Message, family: Family) -> TxnKey:
    """The key of a request (or of the request a response answers)."""
    ref = _f60(msg).get("60.2", "") if family == "unionpay" else msg.get(7, "")
    return TxnKey(str(msg.get(41, "")), str(msg.get(11, "")), str(ref))


@dataclass(frozen=True, slots=True)
class OriginalData:
    """Field 90 (ISO 8583:1987, n42): the original of a reversal, void or completion."""

    mti: str
    stan: str
    transmission: str
    acquirer: str = "00000000000"
    forwarding: str = "00000000000"

    def pack(self) -> str:
        return f"{self.mti}{self.stan}{self.transmission}{self.acquirer:0>11}{self.forwarding:0>11}"

    @classmethod
    def parse(cls, value: str) -> OriginalData:
        if not (isinstance(value, str) and len(value) == 42 and value.isdigit()):
            shown = value if isinstance(value, str) else type(value).__name__
            raise TransactionError(f"field 90: expected 42 digits, found {shown[:42]!r} ({len(shown)} chars)")
        return cls(value[0:4], value[4:10], value[10:20], value[20:31], value[31:42])


@dataclass(frozen=True, slots=True)
class UnionPayOriginal:
    """UnionPay field 61 for voids, refunds and reversals: original batch, STAN and date (MMDD)."""

    batch: str
    stan: str
    date: str = "0000"

    def pack(self) -> str:
        return f"{self.batch}{self.stan}{self.date}"

    @classmethod
    def parse(cls, value: str) -> UnionPayOriginal:
        if not (isinstance(value, str) and len(value) >= 12 and value[:16].isdigit()):
            raise TransactionError(f"field 61: expected batch(6)+STAN(6)[+MMDD(4)] digits, found {value!r}")
        return cls(value[0:6], value[6:12], value[12:16] or "0000")


def original_reference(original: Message, family: Family, *, date: str = "0000") -> dict[int, Any]:
    """The field(s) a void, completion or reversal uses to name ``original``."""
    if family == "unionpay":
        batch = _f60(original).get("60.2", "000000")
        return {61: UnionPayOriginal(batch, str(original.get(11, "")), date).pack()}
    return {90: OriginalData(original.mti, str(original.get(11, "")), str(original.get(7, ""))).pack()}


def original_key(msg: Message, family: Family) -> TxnKey | None:
    """The key of the request that ``msg`` (a reversal, void or completion) refers to."""
    tid = str(msg.get(41, ""))
    if family == "unionpay":
        if 61 in msg:
            ref = UnionPayOriginal.parse(msg[61])
            return TxnKey(tid, ref.stan, ref.batch)
        return None
    if 90 in msg:
        data = OriginalData.parse(msg[90])
        return TxnKey(tid, data.stan, data.transmission)
    return None


#: Fields a reversal copies from its original request, per family.
_REVERSAL_COPY = {
    "iso87": (2, 3, 4, 7, 11, 12, 13, 14, 22, 23, 25, 41, 42, 49),
    "unionpay": (2, 3, 4, 11, 14, 22, 23, 25, 38, 41, 42, 49, 55, 60),
}


def make_reversal(original: Message, reason: str, family: Family, *, repeat: bool = False,
                  transmission: str | None = None) -> Message:
    """The 0400 (or repeat 0401) that reverses ``original``.

    Field 11 keeps the original STAN (so the host and the terminal's journal pair them), field 39
    carries the reversal reason, and 90 (ISO) / 61 (UnionPay) names the original. In the ISO family
    field 7 is the reversal's own transmission time when given, the original's otherwise.
    """
    fields: dict[int, Any] = {n: original[n] for n in _REVERSAL_COPY[family] if n in original}
    if isinstance(fields.get(60), dict):
        fields[60] = dict(fields[60])
    fields[39] = reason
    fields.update(original_reference(original, family))
    if transmission is not None and family == "iso87":
        fields[7] = transmission
    return Message("0401" if repeat else "0400", fields)


#: Fields a response echoes from its request.
_ECHO = {
    "iso87": (2, 3, 4, 7, 11, 12, 13, 22, 25, 41, 42, 49, 60, 70, 90),
    "unionpay": (2, 3, 4, 11, 14, 22, 23, 25, 41, 42, 49, 60, 61),
}


def make_response(request: Message, rc: str, family: Family, **extra: Any) -> Message:
    """A response to ``request`` with response code ``rc`` and the echoed fields.

    ``extra`` adds fields by number as ``f37="..."``, ``f38="..."`` (keyword names ``fNN``).
    """
    fields: dict[int, Any] = {n: request[n] for n in _ECHO[family] if n in request}
    if isinstance(fields.get(60), dict):
        fields[60] = dict(fields[60])
    fields[39] = rc
    for name, value in extra.items():
        if not (name.startswith("f") and name[1:].isdigit()):
            raise TypeError(f"extra fields are given as fNN=value, got {name!r}")
        if value is not None:
            fields[int(name[1:])] = value
    return Message(request.response_mti(), fields)


def matches(request: Message, response: Message) -> bool:
    """Whether ``response`` answers ``request``: right MTI and the same (TID, STAN)."""
    try:
        expected = request.response_mti()
    except ValueError:
        return False
    return (response.mti == expected and response.get(11) == request.get(11)
            and response.get(41) == request.get(41))


# -- settlement totals --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SettlementTotals:
    """Batch totals a terminal reports at settlement and the host checks against its own."""

    debit_count: int = 0
    debit_amount: int = 0
    credit_count: int = 0
    credit_amount: int = 0

    def add(self, txn: TxnType, amount: int) -> SettlementTotals:
        if txn in DEBIT_TYPES:
            return SettlementTotals(self.debit_count + 1, self.debit_amount + amount,
                                    self.credit_count, self.credit_amount)
        if txn in CREDIT_TYPES:
            return SettlementTotals(self.debit_count, self.debit_amount,
                                    self.credit_count + 1, self.credit_amount + amount)
        return self

    def to_fields(self, family: Family) -> dict[int, Any]:
        if family == "unionpay":
            # Field 48: debit amount n12, debit count n3, credit amount n12, credit count n3,
            # settlement code n1 — domestic cards, then the same 31 digits for foreign cards.
            if self.debit_count > 999 or self.credit_count > 999:
                raise TransactionError("field 48: UnionPay totals hold at most 999 transactions per side")
            domestic = (f"{self.debit_amount:012d}{self.debit_count:03d}"
                        f"{self.credit_amount:012d}{self.credit_count:03d}0")
            return {48: domestic + "0" * 31}
        return {74: f"{self.credit_count:010d}", 76: f"{self.debit_count:010d}",
                86: f"{self.credit_amount:016d}", 88: f"{self.debit_amount:016d}"}

    @classmethod
    def from_message(cls, msg: Message, family: Family) -> SettlementTotals:
        try:
            if family == "unionpay":
                text = msg[48]
                if len(text) < 31 or not text[:31].isdigit():
                    raise TransactionError(f"field 48: expected at least 31 digits of totals, found {len(text)}")
                return cls(int(text[12:15]), int(text[0:12]), int(text[27:30]), int(text[15:27]))
            return cls(int(msg[76]), int(msg[88]), int(msg[74]), int(msg[86]))
        except KeyError as exc:
            raise TransactionError(f"settlement request lacks totals field {exc.args[0]}") from None
        except ValueError as exc:
            raise TransactionError(f"settlement totals are not numeric: {exc}") from None


def batch_number(msg: Message, family: Family) -> str:
    """The batch a settlement/upload message refers to (ISO field 60 text, UnionPay 60.2)."""
    if family == "unionpay":
        return _f60(msg).get("60.2", "")
    value = msg.get(60, "")
    return value if isinstance(value, str) else ""
