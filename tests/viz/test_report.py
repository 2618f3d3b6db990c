"""The comparison table splits the step into compute, exposed communication and bubble,
lists strategies fastest first and marks the ones that did not finish."""

import pytest

from simulator.errors import ConfigError
from simulator.hardware.units import time_unit
from simulator.nn.models import MLPConfig
from simulator.parallel import Strategy
from simulator.viz.report import comparison_table
from tests.conftest import run


def _row(table: str, name: str) -> list[str]:
    return next(line.split() for line in table.splitlines() if line.split()[:1] == [name])


def test_the_columns_are_the_three_parts_of_the_step():
    results = [
        run(MLPConfig(4, 32), Strategy("single")).metrics,
        run(MLPConfig(4, 32), Strategy("ddp", dp=4)).metrics,
        run(MLPConfig(4, 32), Strategy("pipe", pp=4, microbatches=4)).metrics,
    ]
    table = comparison_table(results, capacity=4 * 2**30)
    header = table.splitlines()[0]
    for column in ("compute", "exposed comm", "bubble", "analytic"):
        assert column in header
    assert "idle" not in table and "comm_s" not in table
    # ddp's waits are its own group's all-reduce: exposed communication, not bubble
    ddp = next(m for m in results if m["strategy"] == "ddp")
    assert ddp["exposed_comm_fraction"] > 0.05 and abs(ddp["bubble_fraction"]) < 1e-12
    cells = _row(table, "ddp")
    parts = [cells[i] for i in range(len(cells)) if cells[i].endswith("%")][:3]
    fractions = ("compute_fraction", "exposed_comm_fraction", "bubble_fraction")
    assert parts == [f"{100 * ddp[k]:.1f}%" for k in fractions]
    assert table.splitlines()[-1] == "(device memory: 4.00 GiB)"


def test_fastest_first_and_failed_runs_last_and_marked():
    fast = run(MLPConfig(4, 32), Strategy("pipe", pp=4, microbatches=4)).metrics
    slow = run(MLPConfig(4, 32), Strategy("single")).metrics
    oom = {**fast, "strategy": "too-big", "status": "oom", "iteration_time_s": 1e-9}
    diverged = {**fast, "strategy": "nan", "status": "diverged", "loss": [float("nan")]}
    failed = {**fast, "strategy": "broken", "status": "failed"}
    table = comparison_table([oom, slow, failed, fast, diverged])
    names = [line.split()[0] for line in table.splitlines()[2:]]
    assert names[:2] == [
        m["strategy"] for m in sorted([fast, slow], key=lambda m: m["iteration_time_s"])
    ]
    assert set(names[2:]) == {"too-big", "nan", "broken"}
    assert _row(table, "too-big")[-1] == "OOM"
    assert _row(table, "broken")[-1] == "FAILED"
    assert _row(table, "nan")[-1] == "DIVERGED"


def test_rounding_never_prints_minus_zero():
    m = run(MLPConfig(4, 32), Strategy("single")).metrics
    table = comparison_table([{**m, "bubble_fraction": -2e-16}])
    assert "-0.0%" not in table


def test_time_units():
    assert time_unit(2.5) == (1.0, "s")
    assert time_unit(2.5e-3) == (1e-3, "ms")
    assert time_unit(2.5e-6) == (1e-6, "us")
    assert time_unit(2.5e-9) == (1e-6, "us")


def test_fp8_strategies_are_said_to_count_mfu_against_the_bf16_peak():
    results = [
        run(MLPConfig(2, 32), Strategy(name, precision=name)).metrics for name in ("bf16", "fp8")
    ]
    plain = comparison_table(results, capacity=4 * 2**30)
    noted = comparison_table(results, capacity=4 * 2**30, fp8=["fp8"])
    assert noted.startswith(plain)  # the table as before, and one line more
    assert noted.splitlines()[-1].startswith("(MFU is over the model dtype's dense peak")
    assert "also for fp8, whose linear layers run in FP8" in noted


def test_anything_but_a_list_of_metrics_is_refused_in_one_line():
    for bad in (None, 3, [None], ["metrics"]):
        with pytest.raises(ConfigError, match=r"results must be a list of run metrics"):
            comparison_table(bad)
