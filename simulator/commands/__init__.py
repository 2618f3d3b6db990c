"""Subcommands of ``python -m simulator``; each module provides ``register(subparsers)``.

``run`` (a scenario file), ``presets``, ``collective`` (one collective,
nccl-tests style), ``schedule`` (a pipeline schedule's grid and timeline),
``mesh`` (where every group sits), ``goodput`` (checkpointing against
failures), ``plan`` and ``sweep`` (many runs). Bad input is one ``error:``
line and exit status 2 (:mod:`simulator.cli`).
"""
