"""A hostile user types ``plan`` and ``sweep`` command lines: every one ends in a result
or in one ``error:`` line, and the same arguments given in Python raise a SimulatorError.

Hypothesis draws flags and values from what a careful user writes (sizes that divide,
registered schedules, keys of the scenario) and from what a fuzzer writes (zero,
negative and huge numbers, floats for sizes, NaN, text, lists and tables where a
number goes, digits that are not ASCII, keys given twice). ``python -m simulator``
runs in-process and must exit with 0 or 2, print at most one ``error:`` line and
never raise.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import simulator
from simulator.cli import main
from simulator.errors import SimulatorError

pytestmark = pytest.mark.fuzz

PLAN = """
name = "fuzzplan"
[cluster]
preset = "toy"
[model]
kind = "gpt"
layers = 2
hidden = 8
heads = 2
seq_len = 4
vocab = 16
[training]
numerics = false
global_batch = 2
steps = 1
[plan]
top = 2
zero = [0]
recompute = ["none"]
sequence_parallel = [false]
orders = ["tp-cp-dp-pp"]
"""

SWEEP = """
name = "fuzzsweep"
[cluster]
preset = "toy"
[model]
kind = "mlp"
layers = 2
width = 4
[training]
global_batch = 4
steps = 1
[[strategy]]
name = "one"
[[strategy]]
name = "pipe"
pp = 2
microbatches = 2
"""

HOSTILE_TEXT = st.sampled_from(
    [
        "0",
        "-1",
        "2.5",
        "2.0",
        "nan",
        "inf",
        "-inf",
        "1e400",
        "x",
        "",
        " ",
        "1" * 200,
        "1_0",
        "[1, 2]",
        "{a = 1}",
        "1979-05-27",
        "\u0661",
        "true",
        "true,false",
        ",,",
        "0x10",
        "'4'",
        '"4"',
        "[" * 40 + "]" * 40,
    ]
)


def values(*plausible: str) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(plausible), st.sampled_from(plausible), HOSTILE_TEXT)


PLAN_FLAGS = {
    "--devices": values("1", "2", "4"),
    "--max-tp": values("1", "2", "4"),
    "--max-pp": values("1", "2", "4"),
    "--max-chunks": values("2", "3"),
    "--schedules": values("1f1b", "gpipe", "interleaved", "zb-h1", "1f1b,gpipe", "zigzag"),
    "--microbatch-sizes": values("1", "2", "1,2", "4"),
    "--recompute": values("none", "full", "selective", "none,full"),
    "--sequence-parallel": values("false", "true", "false,true"),
    "--zero": values("0", "1", "0,1"),
    "--orders": values("tp-cp-dp-pp", "tp-dp-pp", "pp-dp-tp"),
    "--top": values("1", "3"),
    "--fixed": values("tp=2", "pp=2", "dp=1", "micro_batch_size=1", "schedule=1f1b", "x=1"),
    "--max-devices": values("1", "4", "100"),
    "--max-chunks-per-rank": values("1", "8"),
    "--max-integer-digits": values("1", "5"),
    "--max-toml-depth": values("1", "3"),
    "--workers": st.sampled_from(["1", "1", "1", "0", "-2", "2.5", "x"]),
}
KEYS = [
    "cluster.nodes",
    "cluster.intra_node.bandwidth_gbs",
    "training.global_batch",
    "training.lr",
    "training.optimizer",
    "model.width",
    "model.layers",
    "strategy.microbatches",
    "strategy.schedule",
    "seed",
    "cluster",
    "strategy",
    "nosuch.key",
    "model..width",
    ".",
]
SWEEP_FLAGS = {
    "--vary": st.tuples(
        st.sampled_from(KEYS), values("1", "2", "1,2", "4,8", "0.5,1", "adam,sgd", "gpipe")
    ).map(lambda kv: f"{kv[0]}={kv[1]}"),
    "--zip": st.just(None),
    "--metric": values("iteration_time_s", "mfu", "peak_memory_bytes", "speed"),
    "--max-sweep-points": values("1", "4"),
    "--max-steps": values("1", "10"),
    "--workers": st.sampled_from(["1", "1", "1", "0", "2.5"]),
}


def command_lines(flags: dict) -> st.SearchStrategy[list[str]]:
    """Up to four flags; --fixed and --vary may repeat (even with one key twice)."""
    pair = st.sampled_from(sorted(flags)).flatmap(
        lambda f: flags[f].map(lambda v: [f] if v is None else [f, v])
    )
    return st.lists(pair, max_size=4).map(lambda pairs: [x for p in pairs for x in p])


def run_cli(capsys, argv: list[str]) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    event(f"exit {code}")
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        assert err.startswith("error: ") and err.count("\n") == 1, (argv, err)
    assert "Traceback" not in err


FUZZ = settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@settings(FUZZ, max_examples=12)  # a plan that runs draws its picture: a second each
@given(command_lines(PLAN_FLAGS))
def test_plan_command_lines_never_raise(capsys, flags) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plan.toml"
        path.write_text(PLAN)
        run_cli(capsys, ["plan", str(path), "--quiet", "--out", f"{tmp}/out", *flags])


@settings(FUZZ, max_examples=15)
@given(command_lines(SWEEP_FLAGS))
def test_sweep_command_lines_never_raise(capsys, flags) -> None:
    if "--vary" not in flags:
        flags = [*flags, "--vary", "seed=1"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sweep.toml"
        path.write_text(SWEEP)
        run_cli(capsys, ["sweep", str(path), "--quiet", "--out", f"{tmp}/out", *flags])


HOSTILE = st.sampled_from(
    [
        None,
        0,
        -1,
        2.5,
        2.0,
        math.nan,
        math.inf,
        True,
        "",
        "x",
        "2",
        [],
        [1],
        {},
        {"a": 1},
        10**30,
        -(10**30),
        object(),
        b"1",
        (1,),
    ]
)
PLAN_ARGUMENTS = {
    "top": st.one_of(st.sampled_from([1, 2]), HOSTILE),
    "workers": st.one_of(st.just(1), HOSTILE),
    "name": st.one_of(st.just("p"), HOSTILE),
    "progress": st.one_of(st.just(False), HOSTILE),
    "exhaustive": st.one_of(st.just(False), HOSTILE),
    "limits": st.one_of(st.just({"max_devices": 1}), st.just({"nosuch": 1}), HOSTILE),
    "max_tp": st.one_of(st.just(2), HOSTILE),
    "schedules": st.one_of(st.just(("1f1b",)), st.just(["gpipe"]), HOSTILE),
    "microbatch_sizes": st.one_of(st.just((1,)), HOSTILE),
    "fixed": st.one_of(st.just({"tp": 2}), st.just({"tp": 2.0}), st.just({"nope": 1}), HOSTILE),
    "max_chunks": st.one_of(st.just(2), HOSTILE),
    "unknown_option": HOSTILE,
}


@settings(FUZZ, max_examples=15)
@given(st.dictionaries(st.sampled_from(sorted(PLAN_ARGUMENTS)), st.none(), max_size=3).flatmap(
    lambda keys: st.fixed_dictionaries({k: PLAN_ARGUMENTS[k] for k in keys})
))  # fmt: skip
def test_plan_arguments_in_python_raise_only_simulator_errors(kwargs) -> None:
    cluster = simulator.preset("toy")
    model = simulator.GPTConfig(layers=2, hidden=8, heads=2, seq_len=4, vocab=16)
    training = simulator.TrainingConfig(numerics=False, global_batch=2, steps=1)
    base = {
        "zero": (0,),
        "orders": ("tp-cp-dp-pp",),
        "recompute": ("none",),
        "sequence_parallel": (False,),
        "max_chunks": 2,
        "workers": 1,
    }
    try:
        result = simulator.plan(cluster, model, training, **{**base, **kwargs})
    except SimulatorError:
        event("error")
        return
    event("ran")
    assert result.evaluated >= 0


VARY = st.one_of(
    st.just({"seed": [1, 2]}),
    st.just({"seed": [1, 2]}),
    st.just({"training.lr": [0.1]}),
    st.just({"training.lr": [0.1]}),
    st.just({"cluster": [{"nodes": 2}]}),
    st.just({"seed": []}),
    st.just({"": [1]}),
    st.just({1: [1]}),
    st.just({"seed": 3}),
    HOSTILE,
)


@FUZZ
@given(
    VARY,
    st.fixed_dictionaries(
        {},
        optional={
            "zip": st.one_of(st.booleans(), st.booleans(), HOSTILE),
            "metric": st.one_of(st.just("mfu"), st.just("mfu"), HOSTILE),
            "workers": st.one_of(st.just(1), st.just(1), HOSTILE),
            "limits": st.one_of(st.just({"max_sweep_points": 1}), st.just({}), HOSTILE),
            "base_dir": st.one_of(st.just("."), HOSTILE),
        },
    ),
)
def test_sweep_arguments_in_python_raise_only_simulator_errors(vary, kwargs) -> None:
    import tomllib

    data = tomllib.loads(SWEEP)
    kwargs.setdefault("workers", 1)
    try:
        result = simulator.sweep(data, vary, **kwargs)
    except SimulatorError:
        event("error")
        return
    event("ran")
    assert result.runs == 2 * len(result.points) and result.count("ok") == result.runs
