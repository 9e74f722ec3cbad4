"""encode / decode: MTI, bitmaps, and the per-bitmap plans that drive the field codecs.

Speed comes from doing the spec interpretation once: every field has compiled closures (see
:mod:`iso8583.fields`), and every distinct bitmap seen gets a cached *plan* — the tuple of field
decoders (or encoders) in wire order — so a message costs one dict lookup plus one call per field.
Validation is never skipped: each field closure checks type, character class and length.

``decode`` guarantees that only :class:`DecodeError` escapes, whatever the input; anything
unexpected inside a field codec is reported as a DecodeError naming that field and its offset.
"""

from __future__ import annotations

from typing import Any

from .errors import DecodeError, EncodeError
from .fastpath import compile_fast_decoder, compile_fast_encoder
from .message import Message
from .plans import COMPILE_AFTER, compile_decoder, compile_encoder
from .spec import Spec, load_spec

_PLAN_CACHE_LIMIT = 4096


class _Codec:
    """Per-spec compiled state: MTI/bitmap codecs and the plan caches."""

    __slots__ = ("bitmap_encoding", "bitmap_unit", "dec_plans", "enc_plans", "fast_dec", "fields", "hex_codec",
                 "max_field", "memo", "mti_dec", "mti_enc", "mti_encoding", "mti_size", "spec", "tertiary")

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.fields = spec.fields
        self.tertiary = spec.tertiary
        self.max_field = spec.max_field
        self.mti_encoding = spec.mti_encoding
        self.mti_size = 2 if spec.mti_encoding == "bcd" else 4
        self.mti_enc: dict[str, bytes] = {}
        self.mti_dec: dict[bytes, str] = {}
        self.bitmap_encoding = spec.bitmap_encoding
        self.hex_codec = "cp500" if spec.bitmap_encoding == "hex-ebcdic" else "ascii"
        self.bitmap_unit = 8 if spec.bitmap_encoding == "binary" else 16
        self.enc_plans: dict[tuple[int, ...], list[Any]] = {}  # key -> [bitmap, runner, steps, fast or None]
        self.dec_plans: dict[bytes, list[Any]] = {}  # bitmap -> [steps, runner]
        #: primary bitmap bytes -> whole-message decoder (:mod:`iso8583.fastpath`) of a recurring layout
        self.fast_dec: dict[bytes, Any] = {}
        #: bytes the whole-message encoder just produced -> (MTI, builder, values): builder(values) is
        #: the fields dict decoding those very bytes gives (:func:`iso8583.fastpath.compile_fast_encoder`)
        self.memo: dict[bytes, tuple[str, Any, tuple[Any, ...]]] = {}

    # -- MTI ---------------------------------------------------------------------------------------
    def encode_mti(self, mti: Any) -> bytes:
        raw = self.mti_enc.get(mti)
        if raw is not None:
            return raw
        if not (isinstance(mti, str) and len(mti) == 4 and mti.isdigit() and mti.isascii()):
            raise EncodeError(f"MTI must be 4 digits, got {mti!r}", field=0, expected="4 digits", found=repr(mti))
        if self.mti_encoding == "bcd":
            raw = bytes.fromhex(mti)
        else:
            raw = mti.encode("ascii" if self.mti_encoding == "ascii" else "cp500")
        if len(self.mti_enc) < 1024:
            self.mti_enc[mti] = raw
        return raw

    def decode_mti(self, data: bytes) -> str:
        raw = data[:self.mti_size]
        mti = self.mti_dec.get(raw)
        if mti is not None:
            return mti
        if len(raw) < self.mti_size:
            raise DecodeError(f"expected a {self.mti_size}-byte MTI at offset 0, only {len(raw)} bytes",
                              field=0, offset=0, expected=f"{self.mti_size} bytes", found=f"{len(raw)} bytes")
        if self.mti_encoding == "bcd":
            text = raw.hex()
        else:
            text = raw.decode("latin-1" if self.mti_encoding == "ascii" else "cp500")
        if not (text.isdigit() and text.isascii()):
            raise DecodeError(f"expected a 4-digit {self.mti_encoding} MTI at offset 0, found {raw.hex().upper()}",
                              field=0, offset=0, expected=f"4 digits ({self.mti_encoding})",
                              found=raw.hex().upper())
        if len(self.mti_dec) < 1024:
            self.mti_dec[raw] = text
        return text

    # -- bitmaps -----------------------------------------------------------------------------------
    def encode_plan(self, numbers: tuple[int, ...]) -> list[Any]:
        fields = self.fields
        ordered = sorted(numbers)
        bits = 0
        plan = []
        for number in ordered:
            fs = fields.get(number)
            if fs is None:
                if isinstance(number, int) and 2 <= number <= self.max_field and number not in (65, 129):
                    raise EncodeError(f"not defined in spec {self.spec.name!r}", field=number,
                                      expected="a field of the spec", found=str(number))
                raise EncodeError(f"field number {number!r} is not allowed in spec {self.spec.name!r} "
                                  f"(2..{self.max_field}, 65/129 are bitmaps)", field=number if isinstance(number, int) else None,
                                  expected=f"2..{self.max_field}", found=repr(number))
            plan.append((number, fs.encode))
            bits |= 1 << (192 - number)
        top = max(ordered, default=0)
        if top > 128:
            bits |= (1 << 191) | (1 << (192 - 65))
            size = 24
        elif top > 64:
            bits |= 1 << 191
            size = 16
        else:
            size = 8
        raw = (bits >> ((24 - size) * 8)).to_bytes(size, "big")
        if self.bitmap_encoding != "binary":
            raw = raw.hex().upper().encode(self.hex_codec)
        steps = tuple(plan)
        entry: list[Any] = [raw, None, steps, None]
        entry[1] = self._counting_encoder(entry)
        if len(self.enc_plans) >= _PLAN_CACHE_LIMIT:
            self.enc_plans.clear()
        self.enc_plans[numbers] = entry
        return entry

    def _counting_encoder(self, entry: list[Any]) -> Any:
        """Interpretive runner for a new bitmap; swaps in generated code once the bitmap recurs."""
        steps = entry[2]
        hits = 0

        def run(values: dict[int, Any], out: list[bytes]) -> None:
            nonlocal hits
            hits += 1
            if hits >= COMPILE_AFTER:
                entry[1] = compile_encoder(steps, self.fields)
                entry[3] = compile_fast_encoder(self, entry[0], [number for number, _ in steps])
            append = out.append
            for number, enc in steps:
                append(enc(values[number]))

        return run

    def read_bitmap(self, data: bytes, pos: int) -> tuple[bytes, int]:
        """The raw bitmap bytes (1, 2 or 3 bitmaps) at ``pos`` and the offset after them."""
        unit = 8 if self.bitmap_encoding == "binary" else 16
        first = data[pos:pos + unit]
        if len(first) < unit:
            raise DecodeError(f"expected a {unit}-byte primary bitmap at offset {pos}, only {len(first)} bytes left",
                              field=1, offset=pos, expected=f"{unit} bytes", found=f"{len(first)} bytes")
        count = 1
        if self._first_bit(first, pos):
            count = 2
            second = data[pos + unit:pos + 2 * unit]
            if len(second) < unit:
                raise DecodeError(f"bit 1 announces a secondary bitmap at offset {pos + unit}, only {len(second)} "
                                  f"bytes left", field=1, offset=pos + unit, expected=f"{unit} bytes",
                                  found=f"{len(second)} bytes")
            if self._first_bit(second, pos + unit):
                if not self.tertiary:
                    raise DecodeError(f"bit 65 (tertiary bitmap) is set at offset {pos + unit}, but spec "
                                      f"{self.spec.name!r} has no fields above 128", field=65, offset=pos + unit,
                                      expected="bit 65 clear", found="bit 65 set")
                count = 3
                third = data[pos + 2 * unit:pos + 3 * unit]
                if len(third) < unit:
                    raise DecodeError(f"bit 65 announces a tertiary bitmap at offset {pos + 2 * unit}, only "
                                      f"{len(third)} bytes left", field=65, offset=pos + 2 * unit,
                                      expected=f"{unit} bytes", found=f"{len(third)} bytes")
        return data[pos:pos + count * unit], pos + count * unit

    def _first_bit(self, chunk: bytes, pos: int) -> bool:
        if self.bitmap_encoding == "binary":
            return chunk[0] >= 0x80
        text = chunk[:1].decode(self.hex_codec, "replace")
        if text in "89ABCDEFabcdef" and text:
            return True
        if text in "01234567":
            return False
        raise DecodeError(f"expected a hex bitmap at offset {pos}, found {chunk!r}", field=1, offset=pos,
                          expected="hex digits", found=repr(chunk))

    def decode_plan(self, raw: bytes, offset: int) -> list[Any]:
        if self.bitmap_encoding == "binary":
            bits_bytes = raw
        else:
            text = raw.decode(self.hex_codec, "replace")
            try:
                bits_bytes = bytes.fromhex(text)
            except ValueError:
                bits_bytes = b""
            if len(bits_bytes) * 2 != len(raw) or not text.isascii():
                raise DecodeError(f"expected a hex bitmap at offset {offset}, found {raw!r}", field=1,
                                  offset=offset, expected="hex digits", found=repr(raw))
        nbits = len(bits_bytes) * 8
        bits = int.from_bytes(bits_bytes, "big")
        plan = []
        fields = self.fields
        number = 0
        while bits:
            shift = bits.bit_length() - 1
            number = nbits - shift
            bits ^= 1 << shift
            if number in (1, 65):
                continue
            fs = fields.get(number)
            if fs is None:
                raise DecodeError(f"bit {number} is set in the bitmap at offset {offset} but field {number} is not "
                                  f"defined in spec {self.spec.name!r}", field=number, offset=offset,
                                  expected="a field of the spec", found=f"bit {number}")
            plan.append((number, fs.decode))
        steps = tuple(plan)
        entry: list[Any] = [steps, None]
        entry[1] = self._counting_decoder(entry, raw)
        if len(self.dec_plans) >= _PLAN_CACHE_LIMIT:
            self.dec_plans.clear()
        self.dec_plans[raw] = entry
        return entry

    def _counting_decoder(self, entry: list[Any], raw: bytes) -> Any:
        steps = entry[0]
        hits = 0

        def run(data: bytes, pos: int) -> tuple[dict[int, Any], int]:
            nonlocal hits
            hits += 1
            if hits >= COMPILE_AFTER:
                entry[1] = compile_decoder(steps, self.fields)
                fast = self.fast_dec
                primary = raw[:self.bitmap_unit]
                if primary not in fast:   # one layout per primary bitmap; others take the general path
                    if len(fast) >= _PLAN_CACHE_LIMIT:
                        fast.clear()
                    fast[primary] = compile_fast_decoder(self, raw, [number for number, _ in steps])
            values: dict[int, Any] = {}
            for number, dec in steps:
                values[number], pos = dec(data, pos)
            return values, pos

        return run


def _codec_for(spec: Spec) -> _Codec:
    codec = spec._codec
    if codec is None:
        codec = spec._codec = _Codec(spec)
    return codec


def encode(msg: Message, spec: Spec | str) -> bytes:
    """The bytes of ``msg`` under ``spec``, starting at the MTI (no length header, TPDU or app header).

    Raises :class:`EncodeError` naming the field for a value that does not fit its spec.
    """
    if spec.__class__ is not Spec:
        spec = load_spec(spec)
    codec = spec._codec or _codec_for(spec)
    fields = msg.fields
    key = tuple(fields)
    entry = codec.enc_plans.get(key) or codec.encode_plan(key)
    fast = entry[3]
    if fast is not None:  # a recurring layout: whole-message code, or None to take the general path
        mti = codec.mti_enc.get(msg.mti)
        if mti is not None:
            body = fast(fields, mti)
            if body is not None:
                return body
    out = [codec.mti_enc.get(msg.mti) or codec.encode_mti(msg.mti), entry[0]]
    try:
        entry[1](fields, out)
    except EncodeError:
        raise
    except Exception:  # a value of an unexpected kind: find which field, never leak the value
        _blame_encode(entry[2], fields)
        raise
    return b"".join(out)


def _blame_encode(steps: tuple[tuple[int, Any], ...], fields: dict[int, Any]) -> None:
    """Re-run field by field to raise an EncodeError naming the field that cannot be encoded."""
    for number, enc in steps:
        value = fields[number]
        try:
            enc(value)
        except EncodeError:
            raise
        except Exception as exc:
            raise EncodeError(f"cannot encode value of type {type(value).__name__} ({type(exc).__name__})",
                              field=number, expected="a value of the field's type",
                              found=type(value).__name__) from None


def decode(data: bytes, spec: Spec | str) -> Message:
    """The :class:`Message` in ``data`` (starting at the MTI).

    Whatever ``data`` holds, only :class:`DecodeError` escapes (with ``field`` and ``offset``); an
    unknown or malformed ``spec`` raises :class:`SpecError`.
    """
    if spec.__class__ is not Spec:
        spec = load_spec(spec)  # a bad spec is the caller's bug: SpecError, not DecodeError
    codec = spec._codec or _codec_for(spec)
    if data.__class__ is not bytes:
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        else:
            raise DecodeError(f"expected bytes to decode, got {type(data).__name__}", offset=0,
                              expected="bytes", found=type(data).__name__)
    if codec.memo:  # bytes this process encoded a moment ago (a simulation's two ends): no parsing
        hit = codec.memo.pop(data, None)
        if hit is not None:
            values = hit[1](hit[2])
            if values is not None:
                msg = Message.__new__(Message)
                msg.mti = hit[0]
                msg.fields = values
                return msg
    fast = codec.fast_dec.get(data[codec.mti_size:codec.mti_size + codec.bitmap_unit])
    if fast is not None:  # a recurring layout: whole-message code, or None to take the general path
        msg = fast(data)
        if msg is not None:
            return msg
    return _decode_general(codec, data)


def _decode_general(codec: _Codec, data: bytes) -> Message:
    """:func:`decode` by the per-bitmap plans and field closures: decides every error."""
    pos = 0
    entry = None
    try:
        mti = codec.mti_dec.get(data[:codec.mti_size]) or codec.decode_mti(data)
        raw, pos = codec.read_bitmap(data, codec.mti_size)
        entry = codec.dec_plans.get(raw) or codec.decode_plan(raw, codec.mti_size)
        values, pos = entry[1](data, pos)
    except DecodeError:
        raise
    except Exception as exc:  # defensive: a codec bug must still surface as a DecodeError
        _blame_decode(entry, data, pos)
        raise DecodeError(f"cannot decode at offset {pos}: {type(exc).__name__}", offset=pos,
                          expected="a valid message", found=type(exc).__name__) from None
    if pos != len(data):
        raise DecodeError(f"{len(data) - pos} unexpected bytes after the last field, at offset {pos}",
                          offset=pos, expected="end of message", found=f"{len(data) - pos} bytes")
    msg = Message.__new__(Message)
    msg.mti = mti
    msg.fields = values
    return msg


def _blame_decode(entry: list[Any] | None, data: bytes, pos: int) -> None:
    """Re-run field by field to raise a DecodeError naming the field where decoding broke."""
    if entry is None:
        return
    for number, dec in entry[0]:
        start = pos
        try:
            _, pos = dec(data, pos)
        except DecodeError:
            raise
        except Exception as exc:
            raise DecodeError(f"cannot decode at offset {start}: {type(exc).__name__}", field=number,
                              offset=start, expected="a valid field", found=type(exc).__name__) from None
