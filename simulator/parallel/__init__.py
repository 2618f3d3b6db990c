"""Parallel strategies: mesh, data, tensor and pipeline parallelism, and the planner."""

from .mesh import Mesh
from .plan import Plan, Worker, build_plan, gather_params
from .strategy import Strategy

__all__ = ["Mesh", "Plan", "Strategy", "Worker", "build_plan", "gather_params"]
