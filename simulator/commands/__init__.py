"""Subcommands of ``python -m simulator``; each module provides ``register(subparsers)``."""
