"""Collectives as algorithms over point-to-point transfers (DESIGN.md, key decision 5).

Each collective takes one array per group rank and returns one array per rank
plus the :class:`~simulator.comm.plan.Plan` of messages it sent; the engine
times the plan on the links.
"""

from . import ring
from .plan import Plan, PlanBuilder, Transfer

ALGORITHMS = {"ring": ring}


def supports(op: str, algorithm: str) -> bool:
    return algorithm in ALGORITHMS and hasattr(ALGORITHMS[algorithm], op)


def collective(op: str, xs: list, algorithm: str = "ring", nodes=None):
    """Run collective ``op`` over ``xs`` with ``algorithm``; returns (results, plan)."""
    return getattr(ALGORITHMS[algorithm], op)(xs)


def all_reduce(xs: list, algorithm: str = "ring"):
    """Sum ``xs`` across ranks with ``algorithm``; returns (results, plan)."""
    return collective("all_reduce", xs, algorithm)


__all__ = ["ALGORITHMS", "Plan", "PlanBuilder", "Transfer", "all_reduce", "collective", "supports"]
