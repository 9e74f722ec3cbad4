"""Channels: one async interface over memory pipes, TCP and serial ports (see docs/CONTRACTS.md §2)."""
