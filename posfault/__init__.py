"""posfault: reproduce card-payment incidents end to end — virtual clock, faults, oracle, scenarios."""

__version__ = "0.1.0"
