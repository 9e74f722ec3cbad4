"""terminal_sim: a POS terminal simulator — journal, reversals, store-and-forward, receipts, profiles.

Talks to a host only through an `iso8583.channels.Channel`; never imports host_sim or posfault.
"""
