"""Shared helpers for the tests."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: small matrices, shared cores

import math
from dataclasses import replace

import numpy as np
import pytest

from simulator.experiment.runner import StrategyResult, run_strategy
from simulator.hardware import ClusterSpec, LinkSpec, preset
from simulator.parallel import Strategy
from simulator.parallel.training import TrainingConfig


def ideal_cluster(nodes: int = 1, devices_per_node: int = 4) -> ClusterSpec:
    """Toy devices whose only cost is GEMM FLOPs, on free links: the ideal case of
    the closed forms (equal stages, free communication)."""
    base = preset("toy")
    free = LinkSpec(math.inf, 0.0)
    device = replace(base.device, memory_bandwidth=math.inf, launch_overhead=0.0)
    return replace(
        base,
        nodes=nodes,
        devices_per_node=devices_per_node,
        device=device,
        intra_node=free,
        inter_node=free,
    )


def run(
    model, strategy: Strategy, cluster: ClusterSpec | None = None, **training
) -> StrategyResult:
    settings = {"global_batch": 16, "steps": 2, **training}
    return run_strategy(
        cluster or preset("toy", nodes=2), model, TrainingConfig(**settings), strategy
    )


def assert_matches_single(
    result: StrategyResult, reference: StrategyResult, rtol: float = 1e-9
) -> None:
    """Losses step by step and final weights equal the single-device run's."""
    np.testing.assert_allclose(result.losses, reference.losses, rtol=rtol, atol=0)
    ref = reference.parameters()
    got = result.parameters()
    assert got.keys() == ref.keys()
    for name, value in ref.items():
        np.testing.assert_allclose(got[name], value, rtol=rtol, atol=1e-12, err_msg=name)


@pytest.fixture
def ideal() -> ClusterSpec:
    return ideal_cluster()


def assert_run_fails(tmp_path, capsys, text: str, message: str) -> None:
    """``python -m simulator run`` on ``text`` exits with status 2 and one line naming
    the problem (``message`` is part of it), never a traceback."""
    from simulator.cli import main

    path = tmp_path / "scenario.toml"
    path.write_text(text)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err
