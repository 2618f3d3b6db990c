"""Ranges of numbers and resource limits: one rule for scenario keys and flags."""

from __future__ import annotations

import argparse
import dataclasses
import math

import pytest

from simulator.errors import LimitError, SimulatorError
from simulator.ranges import Range
from simulator.scenario.limits import Limits, add_limit_flags, check_flag, limit_flags, limit_names


def test_documented_defaults() -> None:
    limits = Limits()
    assert dataclasses.asdict(limits) == {
        "max_events": 10_000_000,
        "max_devices": 65_536,
        "max_steps": 10_000,
        "max_microbatches": 4_096,
        "max_stages": 4_096,
        "max_blocks": 4_096,
        "max_file_bytes": 16 * 2**20,
        "max_sweep_points": 1_000,
        "max_numerics_bytes": 4 * 2**30,
        "max_strategies": 1_000,
        "max_chunks_per_rank": 64,
        "max_width": 2**20,
        "max_toml_depth": 32,
        "max_integer_digits": 100,
    }
    assert all(f.metadata["doc"] for f in dataclasses.fields(Limits))


def test_the_message_names_limit_value_key_and_how_to_raise_it() -> None:
    with pytest.raises(LimitError) as err:
        Limits().check("max_steps", 10**9, "[training] steps")
    message = str(err.value)
    assert message == (
        "[training] steps = 1,000,000,000 is over the limit max_steps = 10,000; if you mean it, "
        "raise the limit with --max-steps N or max_steps = N in the scenario's [limits] table"
    )
    assert err.value.limit == "max_steps" and err.value.value == 10**9
    assert isinstance(err.value, SimulatorError)
    with pytest.raises(LimitError, match=r"with --max-stages N$"):
        Limits().check("max_stages", 10**6, "--stages", table=False)
    Limits().check("max_steps", 10_000, "[training] steps")  # at the limit is fine


def test_limits_must_be_positive_integers() -> None:
    with pytest.raises(SimulatorError, match="Limits: max_events must be an integer >= 1, got 0"):
        Limits(max_events=0)
    with pytest.raises(SimulatorError, match="max_steps must be an integer"):
        Limits(max_steps=1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("allowed", "value", "problem"),
    [
        (Range(lo=1, integer=True), 0, "must be an integer >= 1, got 0"),
        (Range(lo=1, integer=True), 2.0, "must be an integer >= 1, got 2.0"),
        (Range(lo=1, integer=True), True, "must be an integer >= 1, got True"),
        (Range(lo=0, hi=1e9), math.inf, "must be a number in [0, 1e+09], got inf"),
        (Range(lo=0, hi=1e9), math.nan, "must be a number in [0, 1e+09], got nan"),
        (Range(lo=1e-6, hi=1e9, inf=True), 1e-300, "must be a number in [1e-06, 1e+09] or inf"),
        (Range(lo=1e-6, hi=1e9, inf=True), -math.inf, "or inf, got -inf"),
        (Range(lo=0, lo_open=True), 0, "must be a number > 0, got 0"),
        (Range(lo=0, lo_open=True), math.inf, "must be a number > 0, got inf"),
        (Range(lo=0, hi=1, lo_open=True), 0.0, "must be a number in (0, 1], got 0.0"),
        (Range(), math.nan, "must be a finite number, got nan"),
        (Range(), "1", "must be a finite number, got '1'"),
    ],
)
def test_ranges_refuse_with_what_is_allowed(allowed: Range, value: object, problem: str) -> None:
    assert problem in (allowed.problem(value) or "")


@pytest.mark.parametrize(
    ("allowed", "value"),
    [
        (Range(lo=1, integer=True), 1),
        (Range(lo=1e-6, hi=1e9, inf=True), math.inf),
        (Range(lo=0, hi=1e9), 0),
        (Range(lo=0, hi=1e9), 3),
        (Range(), -1e300),
    ],
)
def test_ranges_accept(allowed: Range, value: object) -> None:
    assert allowed.problem(value) is None


def test_limit_flags_parse_check_and_override() -> None:
    parser = argparse.ArgumentParser()
    add_limit_flags(parser, *limit_names())
    args = parser.parse_args(["--max-steps", "5", "--max-events", "100"])
    flags = limit_flags(args)
    assert flags == {"max_steps": 5, "max_events": 100}
    limits = dataclasses.replace(Limits(), **flags)
    with pytest.raises(LimitError, match="max_steps = 5"):
        limits.check("max_steps", 6, "[training] steps")
    with pytest.raises(SimulatorError, match="--max-steps must be an integer >= 1, got -1"):
        limit_flags(parser.parse_args(["--max-steps", "-1"]))


def test_check_flag_is_one_line() -> None:
    with pytest.raises(SimulatorError) as err:
        check_flag(float("nan"), "--times T_F", Range(lo=0.001, hi=1000))
    assert str(err.value) == "--times T_F must be a number in [0.001, 1000], got nan"
