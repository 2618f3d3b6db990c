"""Shared helpers for the tests: clusters, runs and their oracle, scenario files.

The tests mirror the packages (``tests/<package>/test_*.py``); what several of
them need lives here: the ideal cluster of the closed forms, a run with small
defaults and the single-device run it must reproduce, and the tiny scenarios
that the command-line and input tests write to files.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: small matrices, shared cores

import functools
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

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


@functools.cache
def _single_device(model: Any, training: tuple[tuple[str, Any], ...]) -> StrategyResult:
    return run(model, Strategy("single"), **dict(training))


def single_device(model: Any, **training: Any) -> StrategyResult:
    """The oracle: ``model`` trained on one device (``run``'s defaults, ``training``
    overriding them), computed once per process for every test that asks for it."""
    return _single_device(model, tuple(sorted(training.items())))


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


#: A tiny scenario's tables: a 4-layer MLP of width 16 on one toy node, two steps of
#: 8 samples. Tests add a name and strategies, and change what they are about.
TINY_MLP = """\
[cluster]
preset = "toy"
[model]
kind = "mlp"
layers = 4
width = 16
[training]
global_batch = 8
steps = 2
"""


def scenario_file(tmp_path: Path, text: str, name: str = "s.toml") -> str:
    """Write ``text`` as the scenario file ``name`` in ``tmp_path``; returns its path."""
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def assert_run_fails(tmp_path, capsys, text: str, message: str) -> None:
    """``python -m simulator run`` on ``text`` exits with status 2 and one line naming
    the problem (``message`` is part of it), never a traceback."""
    from simulator.cli import main

    path = scenario_file(tmp_path, text, "scenario.toml")
    assert main(["run", path, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err


#: the tests that take seconds each (whole notebooks, whole scenarios, Hypothesis over
#: layouts), longest first: started first, so that ``pytest -n`` shares them out among
#: its workers before the many quick tests, instead of leaving one worker alone with a
#: notebook at the end. That needs ``--maxschedchunk=1`` (``pyproject.toml``): without
#: it pytest-xdist sends each worker a quarter of the suite at once, in order, and the
#: first worker's quarter would hold every long test
LONG_FIRST = (
    "tests/test_notebooks.py::test_notebook_runs_and_draws",
    "tests/test_doc_tables.py",
    "tests/parallel/test_layouts_property.py",
)


def _long_rank(item: pytest.Item) -> int:
    node = item.nodeid
    return next((i for i, p in enumerate(LONG_FIRST) if node.startswith(p)), len(LONG_FIRST))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the long tests first (a stable sort: the rest keep their order)."""
    items.sort(key=_long_rank)
