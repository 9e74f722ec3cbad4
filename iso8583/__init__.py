"""iso8583: a pure ISO 8583 codec — specs as data, exact errors, masking, framing, channels, security.

No simulation knowledge lives here; terminal_sim, host_sim and posfault build on it.
"""

from .errors import CodecError, DecodeError, EncodeError, ISO8583Error, SpecError
from .mask import mask_pan, mask_value, scrub_text
from .message import Message

__all__ = [
    "CodecError",
    "DecodeError",
    "EncodeError",
    "ISO8583Error",
    "Message",
    "SpecError",
    "mask_pan",
    "mask_value",
    "scrub_text",
]
