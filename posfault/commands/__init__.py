"""CLI subcommands, one module each; every module defines ``register(subparsers)``.

Discovered by :mod:`posfault.cli`, so a new command never edits a shared file.
"""
