"""Channels: one async interface over memory pipes, TCP and serial ports (see docs/CONTRACTS.md §2).

``from iso8583.channels import memory, tcp, serial`` for the transports; the base types are
re-exported here. A *connector* is ``Callable[[], Awaitable[Channel]]``: how a terminal opens a
connection to its host (see :mod:`iso8583.channels.reconnect` for one with backoff).
"""

from collections.abc import Awaitable, Callable

from .base import DEFAULT_MAX_FRAME, Channel, ChannelClosed, ChannelError, ChannelReset, ChannelTimeout

Connector = Callable[[], Awaitable[Channel]]

__all__ = [
    "DEFAULT_MAX_FRAME",
    "Channel",
    "ChannelClosed",
    "ChannelError",
    "ChannelReset",
    "ChannelTimeout",
    "Connector",
]
