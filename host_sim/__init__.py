"""host_sim: an acquirer host with its issuer ledger, settlement and merchant payouts.

Serves any `iso8583.channels.Channel`; never imports terminal_sim or posfault.
"""
