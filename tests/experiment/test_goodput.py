"""Goodput under failures: Daly's model against a seeded Monte Carlo of simulated failures."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from simulator.cli import main
from simulator.experiment.goodput import (
    HOUR,
    evaluate,
    goodput,
    job_mtbf,
    optimal_interval,
    young_interval,
)


def simulated_goodput(
    interval: float, checkpoint: float, restart: float, mtbf: float, segments: int, seed: int
) -> float:
    """Run ``segments`` checkpoint intervals through exponential failures, as Daly's model
    describes it: a segment of ``interval + checkpoint`` seconds is repeated until no
    failure hits it, each repeat after a restart that a failure may itself interrupt."""
    rng = np.random.default_rng(seed)
    draws = (x for _ in itertools.count() for x in rng.exponential(mtbf, size=65_536))
    segment = interval + checkpoint
    wall = 0.0
    for _ in range(segments):
        while (x := next(draws)) < segment:  # a failure before the checkpoint is written
            wall += x
            while (y := next(draws)) < restart:  # a failure during the restart
                wall += y
            wall += restart
        wall += segment
    return segments * interval / wall


@pytest.mark.parametrize(
    ("devices", "mtbf_hours", "checkpoint", "restart", "interval"),
    [
        (1000, 10_000, 60, 300, None),  # mostly training: ~93%
        (60, 10, 60, 60, None),  # a failure every 10 minutes: ~50%
        (16_384, 50_000, 120, 900, 600),  # Llama-3 scale, checkpoints too often
        (100, 100, 30, 120, 10_000),  # checkpoints far too rare: ~16 failures each
    ],
)
def test_daly_model_matches_a_monte_carlo_within_2_percent(
    devices, mtbf_hours, checkpoint, restart, interval
) -> None:
    result = evaluate(devices, mtbf_hours * HOUR, checkpoint, restart, interval)
    mtbf = job_mtbf(devices, mtbf_hours * HOUR)
    simulated = simulated_goodput(result.interval_s, checkpoint, restart, mtbf, 20_000, seed=7)
    assert result.goodput == pytest.approx(simulated, rel=0.02)


def test_the_job_fails_n_times_as_often() -> None:
    assert job_mtbf(1000, 1000 * HOUR) == HOUR


def test_daly_reproduces_his_worked_examples() -> None:
    # Daly 2006, figs. 3-5: R = 10 min, delta = 5 min; tau_opt = 117, 57, 9.1 min
    for mtbf_min, expected in ((24 * 60, 117), (6 * 60, 57), (15, 9.1)):
        assert optimal_interval(5, mtbf_min) == pytest.approx(expected, abs=0.5)
    assert optimal_interval(5, 15) == pytest.approx(9.1, abs=0.05)
    # a checkpoint longer than twice the MTBF: checkpoint every MTBF
    assert optimal_interval(30, 10) == 10


def test_daly_refines_young_and_sits_at_the_maximum() -> None:
    # delta << M: Young's sqrt(2 delta M) is the leading term
    assert optimal_interval(1, 1e6) == pytest.approx(young_interval(1, 1e6), rel=1e-3)
    checkpoint, restart, mtbf = 60.0, 300.0, 3600.0
    best = optimal_interval(checkpoint, mtbf)
    grid = np.linspace(10, 5 * mtbf, 5000)
    top = max(goodput(t, checkpoint, restart, mtbf) for t in grid)
    assert goodput(best, checkpoint, restart, mtbf) == pytest.approx(top, rel=1e-3)


def test_hopeless_settings_give_zero_not_an_overflow() -> None:
    assert goodput(1e9, 1e9, 1e9, 1.0) == 0.0
    assert 0 < goodput(1.0, 1e-9, 0, 1e12) <= 1


def test_json_prints_only_the_four_numbers(capsys) -> None:
    argv = ["goodput", "--devices", "1024", "--mtbf-hours", "20000", "--checkpoint-s", "60"]
    assert main([*argv, "--restart-s", "300", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"goodput", "interval_s", "optimal_interval_s", "optimal_goodput"}
    assert data["interval_s"] == data["optimal_interval_s"]
    assert data["goodput"] == data["optimal_goodput"]
    assert main([*argv, "--restart-s", "300", "--interval-s", "100", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["interval_s"] == 100 and data["goodput"] < data["optimal_goodput"]


def test_text_output_names_the_job_and_the_optimum(capsys) -> None:
    argv = ["--devices", "16384", "--mtbf-hours", "50000", "--checkpoint-s", "60"]
    assert main(["goodput", *argv, "--restart-s", "600"]) == 0
    out = capsys.readouterr().out
    assert "one failure every 3.052 h" in out and "optimal interval (Young/Daly): 1109 s" in out


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--devices", "0", "--devices must be an integer in [1, 1e+09], got 0"),
        ("--mtbf-hours", "nan", "--mtbf-hours must be a number in (0, 1e+09], got nan"),
        ("--mtbf-hours", "0", "--mtbf-hours must be a number in (0, 1e+09], got 0.0"),
        ("--checkpoint-s", "inf", "--checkpoint-s must be a number in (0, 1e+09], got inf"),
        ("--restart-s", "-1", "--restart-s must be a number in [0, 1e+09], got -1.0"),
        ("--interval-s", "0", "--interval-s must be a number in (0, 1e+09], got 0.0"),
    ],
)
def test_flags_are_checked_like_scenario_keys(capsys, flag, value, message) -> None:
    values = {"--devices": "8", "--mtbf-hours": "100", "--checkpoint-s": "10", "--restart-s": "5"}
    values[flag] = value
    argv = [a for pair in values.items() for a in pair]
    assert main(["goodput", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert message in err, err
