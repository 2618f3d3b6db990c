"""One rule per key: a value a scenario file may not hold, Python may not pass either.

Every configuration class checks its fields with the rules the scenario reader uses
(:mod:`simulator.keys`). The fuzz test gives each field of each class hostile values
and checks that the two ways in agree: the file's reader refuses a value exactly when
the class refuses it, with a :class:`~simulator.errors.ConfigError` naming the field.
The misuses below are the ones a user reported, each now one documented error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator
from simulator import (
    AbstractConfig,
    ConfigError,
    GPTConfig,
    MLPConfig,
    Strategy,
    TrainingConfig,
    preset,
    run_scenario,
    run_strategy,
)
from simulator.errors import ScenarioError
from simulator.hardware.faults import Fail, SlowLink, Straggler
from simulator.keys import keys_of
from simulator.nn.llama import LlamaConfig
from simulator.planner.space import SearchSpace
from simulator.scenario.limits import Limits
from simulator.scenario.schema import Reader

pytestmark = pytest.mark.fuzz

#: Each class, with the fields it needs to be built at all.
CLASSES = {
    Strategy: {},
    TrainingConfig: {},
    MLPConfig: {},
    GPTConfig: {},
    LlamaConfig: {},
    AbstractConfig: {},
    Straggler: {"device": 0, "factor": 2.0},
    SlowLink: {"factor": 0.5, "device": 0},
    Fail: {"device": 0, "at_ms": 1.0},
    Limits: {},
    SearchSpace: {},
}
FIELDS = [(cls, name) for cls in CLASSES for name in keys_of(cls)]
HOSTILE = st.one_of(
    st.sampled_from(
        [
            None,
            0,
            1,
            2,
            -1,
            2.0,
            2.5,
            math.nan,
            math.inf,
            -math.inf,
            True,
            False,
            "",
            "2",
            "x",
            "1f1b",
            "adam",
            "tp-dp-pp",
            [],
            [1],
            [1.0, math.nan],
            ["1f1b"],
            {},
            {"tp": 2},
            10**30,
            2**63,
            1e-320,
            "a" * 2000,
        ]
    ),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)


STRATEGY_FIELDS = [name for name in keys_of(Strategy) if name != "name"]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.sampled_from(STRATEGY_FIELDS), HOSTILE, st.sampled_from([{}, {"cp": 2}, {"ep": 2}]))
def test_strategy_vary_refuses_what_the_constructor_refuses(name, value, base) -> None:
    """``Strategy.vary`` checks the changed fields alone (the planner's fast replace):
    it refuses exactly what building the strategy refuses, with the same message,
    and otherwise makes the strategy ``dataclasses.replace`` makes."""
    import dataclasses

    try:
        expected = dataclasses.replace(Strategy(**base), **{name: value})
    except ConfigError as err:
        expected = err
    try:
        got = Strategy(**base).vary(**{name: value})
    except ConfigError as err:
        got = err
    if isinstance(expected, ConfigError):
        assert isinstance(got, ConfigError) and str(got) == str(expected)
    else:
        assert got == expected and hash(got) == hash(expected)
        assert got.__dict__ == expected.__dict__


def toml_form(value):
    """``value`` as TOML would hold it (a tuple is a list), or None when TOML cannot."""
    if isinstance(value, list | tuple):
        items = [toml_form(v) for v in value]
        return None if any(i is None for i in items) else items
    if isinstance(value, dict):
        return value
    if isinstance(value, bool | int | float | str):
        return value
    return None


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.sampled_from(FIELDS), HOSTILE)
def test_python_and_the_scenario_reader_agree_on_every_field(field, value) -> None:
    cls, name = field
    try:
        cls(**{**CLASSES[cls], name: value})
        built = None
    except ConfigError as err:
        built = err
    toml = toml_form(value)
    if toml is None:  # None, say: no TOML value; Python must refuse it unless optional
        assert built is not None or keys_of(cls)[name].optional
        return
    try:
        Reader("t.toml").value(toml, name, keys_of(cls)[name])
        read = True
    except ScenarioError:
        read = False
    if not read:
        assert built is not None and built.parameter == name, (cls.__name__, name, value)
    elif built is not None:  # a rule between fields, which one key alone cannot break
        assert f"{name} must be" not in str(built), built


def test_numpy_numbers_are_the_numbers_they_hold() -> None:
    s = Strategy(dp=np.int64(2), tp=np.int32(2), bucket_mb=np.float32(2.5))
    assert s == Strategy(dp=2, tp=2, bucket_mb=2.5)
    assert type(s.dp) is int and type(s.bucket_mb) is float
    assert MLPConfig(width=np.uint16(8)).width == 8
    assert TrainingConfig(numerics=np.bool_(False)).numerics is False


CLUSTER = preset("toy")
MODEL = MLPConfig(layers=2, width=4)
TRAINING = TrainingConfig(global_batch=4, steps=1)


@pytest.mark.parametrize(
    ("call", "parameter"),
    [
        (lambda: run_scenario(None), "scenario"),
        (lambda: run_scenario(42), "scenario"),
        (lambda: run_scenario("s.toml", progress="yes"), None),
        (lambda: Strategy(dp=2.0), "dp"),
        (lambda: Strategy(dp="2"), "dp"),
        (lambda: Strategy(dp=None), "dp"),
        (lambda: Strategy(dp=True), "dp"),
        (lambda: Strategy(sequence_parallel="yes"), "sequence_parallel"),
        (lambda: Strategy(name=None), "name"),
        (lambda: Strategy(schedule="zigzag"), "schedule"),
        (lambda: TrainingConfig(global_batch=0), "global_batch"),
        (lambda: TrainingConfig(steps=0), "steps"),
        (lambda: TrainingConfig(optimizer="lion"), "optimizer"),
        (lambda: TrainingConfig(numerics="false"), "numerics"),
        (lambda: TrainingConfig(lr=-0.1), "lr"),
        (lambda: TrainingConfig(lr=math.nan), "lr"),
        (lambda: MLPConfig(width=2.0), "width"),
        (lambda: GPTConfig(hidden=64.0), "hidden"),
        (lambda: GPTConfig(dropout=1.0), "dropout"),
        (lambda: AbstractConfig(forward_ms=[1, math.inf, 1, 1]), "forward_ms"),
        (lambda: Fail(device=-1, at_ms=0), "device"),
        (lambda: Limits(max_steps=0), "max_steps"),
        (lambda: run_strategy(CLUSTER, MODEL, TRAINING, {"dp": 2}), "strategy"),
        (lambda: run_strategy(CLUSTER, None, TRAINING, Strategy()), "model"),
        (lambda: run_strategy("toy", MODEL, TRAINING, Strategy()), "cluster"),
        (lambda: run_strategy(CLUSTER, MODEL, {"steps": 1}, Strategy()), "training"),
        (lambda: run_strategy(CLUSTER, MODEL, TRAINING, Strategy(), faults=[1]), "faults"),
        (lambda: run_strategy(CLUSTER, MODEL, TRAINING, Strategy(), limits={"x": 1}), "limits"),
        (lambda: simulator.plan(CLUSTER, MODEL, TRAINING, workers=0), "workers"),
        (lambda: simulator.plan(CLUSTER, MODEL, TRAINING, top=2.0), "top"),
        (lambda: simulator.plan(CLUSTER, MODEL, TRAINING, max_tp="8"), "max_tp"),
        (lambda: simulator.plan(CLUSTER, MODEL, TRAINING, fixed={"tp": 2.0}), "tp"),
        (lambda: simulator.plan(CLUSTER, MODEL, TRAINING, nodes=2), "nodes"),
        (lambda: simulator.plan(None), "scenario"),
        (lambda: simulator.sweep(None), "scenario"),
        (lambda: simulator.sweep({}, {"cluster": [{"nodes": 2}]}), "vary"),
        (lambda: simulator.sweep({}, {"seed": [1]}, workers=0), "workers"),
    ],
)
def test_a_misuse_of_the_api_is_one_config_error_naming_the_parameter(call, parameter) -> None:
    with pytest.raises(ConfigError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message
    if parameter is not None:
        assert err.value.parameter == parameter and parameter in message
        assert err.value.allowed


def test_run_scenario_takes_the_path_of_a_scenario_file(tmp_path) -> None:
    with pytest.raises(ScenarioError, match=r"scenario file '/nope\.toml' does not exist"):
        run_scenario("/nope.toml")
    path = tmp_path / "s.toml"
    path.write_text(
        '[cluster]\npreset = "toy"\n[model]\nkind = "mlp"\nlayers = 2\nwidth = 4\n'
        '[training]\nglobal_batch = 4\nsteps = 1\n[[strategy]]\nname = "one"\n'
    )
    assert run_scenario(path).results[0].status == "ok"


def test_the_limits_apply_to_python_callers_too() -> None:
    with pytest.raises(simulator.LimitError, match=r"raise the limit with the argument limits="):
        run_strategy(CLUSTER, MODEL, TrainingConfig(steps=20_000), Strategy())
    result = run_strategy(
        CLUSTER, MODEL, TrainingConfig(global_batch=4, steps=2), Strategy(), limits={"max_steps": 2}
    )
    assert result.status == "ok"
    with pytest.raises(simulator.LimitError, match="max_width"):
        run_strategy(CLUSTER, MLPConfig(width=2**32), TrainingConfig(numerics=False), Strategy())
