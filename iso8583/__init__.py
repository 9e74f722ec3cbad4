"""iso8583: a pure ISO 8583 codec — specs as data, exact errors, masking, framing, channels, security.

No simulation knowledge lives here; terminal_sim, host_sim and posfault build on it.

>>> from iso8583 import Message, load_spec, encode, decode
>>> spec = load_spec("iso87ascii")
>>> data = encode(Message("0800", {7: "1123091500", 11: "000001", 70: "301"}), spec)
>>> decode(data, spec)[70]
'301'
"""

from .codec import decode, encode
from .describe import describe
from .errors import CodecError, DecodeError, EncodeError, ISO8583Error, SpecError
from .fields import FieldSpec
from .mask import mask_pan, mask_value, scrub_text
from .message import Message
from .spec import BUILTIN as BUILTIN_SPECS
from .spec import Spec, from_pyiso8583, load_spec

__all__ = [
    "BUILTIN_SPECS",
    "CodecError",
    "DecodeError",
    "EncodeError",
    "FieldSpec",
    "ISO8583Error",
    "Message",
    "Spec",
    "SpecError",
    "decode",
    "describe",
    "encode",
    "from_pyiso8583",
    "load_spec",
    "mask_pan",
    "mask_value",
    "scrub_text",
]
