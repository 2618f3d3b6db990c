"""Hostile scenario files: each fuzz family ends in one ``error:`` line, before anything runs.

Every case goes through ``python -m simulator run`` (in-process) and must exit
with status 2 and one line naming the key and what is allowed. The sizes are
far beyond what could be simulated: the tests finish only because the checks
come before anything is built.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest

from simulator.errors import LimitError, ScenarioError
from simulator.experiment.runner import run_scenario
from simulator.scenario.parse import load_scenario, numerics_bytes, parse_scenario
from tests.conftest import assert_run_fails

BASE = """
name = "hostile"
[cluster]
preset = "toy"
nodes = 1
[model]
kind = "mlp"
layers = 4
width = 4
[training]
global_batch = 8
steps = 2
[[strategy]]
name = "pipe"
pp = 2
microbatches = 2
"""

ABSTRACT = """
[cluster]
preset = "toy"
[model]
kind = "abstract"
stages = 2
forward_ms = 1.0
[training]
numerics = false
global_batch = 4
steps = 1
[[strategy]]
name = "pipe"
pp = 2
microbatches = 2
"""

GPT = """
[cluster]
preset = "toy"
[model]
kind = "gpt"
layers = 1
hidden = 8
heads = 2
seq_len = 4
vocab = 64
[training]
global_batch = 4
steps = 1
[[strategy]]
name = "one"
"""


def with_lines(text: str, table: str, *lines: str) -> str:
    """``text`` with ``lines`` added at the end of ``[table]``."""
    head = f"[{table}]\n"
    return text.replace(head, head + "\n".join(lines) + "\n", 1)


# family 2: unbounded time and memory -> a limit, at once
@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            BASE.replace("steps = 2", "steps = 1000000000"),
            "[training] steps = 1,000,000,000 is over the limit max_steps = 10,000; if you mean "
            "it, raise the limit with --max-steps N or max_steps = N in the scenario's [limits]",
        ),
        (
            BASE.replace("global_batch = 8", "global_batch = 100000").replace(
                "microbatches = 2", "microbatches = 100000"
            ),
            "[[strategy]] 'pipe' microbatches = 100,000 is over the limit max_microbatches",
        ),
        (
            with_lines(BASE, "[strategy]", "chunks = 1000000", 'schedule = "interleaved"'),
            "[[strategy]] 'pipe' pp*chunks = 2,000,000 is over the limit max_stages = 4,096",
        ),
        (
            with_lines(BASE, "[strategy]", "dp = 1000", "tp = 1000").replace(
                "nodes = 1", "nodes = 1000000"
            ),
            "dp*tp*pp = 2,000,000 is over the limit max_devices = 65,536",
        ),
        (
            BASE.replace("layers = 4", "layers = 1000000").replace(
                "[training]", "[training]\nnumerics = false"
            ),
            "the model's pipeline blocks = 1,000,000 is over the limit max_blocks = 4,096",
        ),
        (
            BASE.replace("steps = 2", "steps = 5000")
            .replace("global_batch = 8", "global_batch = 4096")
            .replace("microbatches = 2", "microbatches = 4096"),
            "2*steps*pp*chunks*microbatches (fewest events the run needs) = 81,920,000 is over the "
            "limit max_events",
        ),
        (
            BASE.replace("width = 4", "width = 100000"),
            "the estimated host memory of the numerics arrays (bytes) = ",
        ),
        (
            with_lines(BASE, "[strategy]", 'schedule = "file:/dev/zero"'),
            "schedule file '/dev/zero' is not a regular file",
        ),
        (
            BASE + "x = " + "[" * 5000 + "]" * 5000 + "\n",
            "the nesting of lists and tables = 5,000 is over the limit max_toml_depth = 32; if "
            "you mean it, raise the limit with --max-toml-depth N",
        ),
        (
            BASE.replace('name = "hostile"', "seed = " + "7" * 5000),
            "the digits of a number = 5,000 is over the limit max_integer_digits = 100",
        ),
        (
            BASE + "a." * 40 + "b = 1\n",
            "the nesting of tables = 33 is over the limit max_toml_depth = 32",
        ),
        (
            ABSTRACT.replace('name = "pipe"', 'name = "p0"')
            + "".join(f'[[strategy]]\nname = "s{i}"\n' for i in range(1000)),
            "the [[strategy]] tables = 1,001 is over the limit max_strategies = 1,000",
        ),
        (
            with_lines(BASE, "[strategy]", "chunks = 100", 'schedule = "interleaved"'),
            "[[strategy]] 'pipe' chunks = 100 is over the limit max_chunks_per_rank = 64",
        ),
        (
            BASE.replace("width = 4", "width = 4294967296").replace(
                "[training]", "[training]\nnumerics = false"
            ),
            "[model] width = 4,294,967,296 is over the limit max_width = 1,048,576",
        ),
        (
            BASE.replace("width = 4", "width = 18446744073709551616").replace(
                "[training]", "[training]\nnumerics = false"
            ),
            "[model] width = 18,446,744,073,709,551,616 is over the limit max_width",
        ),
        (
            BASE.replace("width = 4", "width = 1048576")
            .replace("global_batch = 8", "global_batch = 1099511627776")
            .replace("[training]", "[training]\nnumerics = false\noptimizer = 'adam'")
            .replace("[limits]", ""),
            "more than the simulator's memory ledgers count (2^62)",
        ),
    ],
    ids=[
        "steps",
        "microbatches",
        "chunks",
        "devices",
        "blocks",
        "events",
        "host-memory",
        "dev-zero",
        "toml-nesting",
        "toml-digits",
        "dotted-keys",
        "strategies",
        "chunks-per-rank",
        "width-2^32",
        "width-2^64",
        "ledger",
    ],
)
def test_sizes_past_a_limit_fail_at_once(tmp_path, capsys, text, message):
    assert_run_fails(tmp_path, capsys, text, message)


def test_a_limits_table_raises_a_limit(tmp_path):
    data = {
        "model": {"kind": "mlp", "layers": 2, "width": 4},
        "training": {"steps": 20_000, "numerics": False},
        "strategy": [{"name": "a"}],
        "limits": {"max_steps": 20_000},
    }
    assert parse_scenario(data).limits.max_steps == 20_000
    with pytest.raises(LimitError, match="max_steps = 19,999"):
        parse_scenario(data, limits={"max_steps": 19_999})  # the command line wins
    data["limits"] = {"max_stepz": 1}
    with pytest.raises(ScenarioError, match="unknown key 'max_stepz' in \\[limits\\]"):
        parse_scenario(data)
    data["limits"] = {"max_steps": 0}
    with pytest.raises(ScenarioError, match="max_steps must be an integer >= 1, got 0"):
        parse_scenario(data)


def test_numerics_memory_counts_every_replica_and_the_stash():
    from simulator.nn.models import MLPConfig
    from simulator.parallel import Strategy
    from simulator.parallel.training import TrainingConfig

    model = MLPConfig(layers=2, width=10)
    params = 2 * (10 * 10 + 10) * 8  # two Linear layers, float64
    one = numerics_bytes(model, TrainingConfig(global_batch=4), [Strategy("a")])
    two = numerics_bytes(
        model, TrainingConfig(global_batch=4), [Strategy("a"), Strategy("b", dp=2)]
    )
    adam = numerics_bytes(model, TrainingConfig(global_batch=4, optimizer="adam"), [Strategy("a")])
    assert two - one == 2 * 2 * params  # two more copies, each with its gradients
    assert adam - one == 2 * params  # Adam's two moments
    assert one > 2 * params  # plus the stashed activations


# family 3: inf and nan never get through; arrays element by element
@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            with_lines(BASE, "cluster", "[cluster.intra_node]", "latency_us = inf"),
            "[cluster.intra_node] latency_us must be a number in [0, 1e+09], got inf",
        ),
        (
            with_lines(BASE, "cluster", "[cluster.inter_node]", "bandwidth_gbs = 1e-300"),
            "[cluster.inter_node] bandwidth_gbs must be a number in [1e-06, 1e+09] or inf, "
            "got 1e-300",
        ),
        (
            with_lines(BASE, "cluster", "[cluster.device]", "peak_tflops = nan"),
            "[cluster.device] peak_tflops must be a number in [1e-06, 1e+09], got nan",
        ),
        (
            BASE.replace("steps = 2", "steps = 2\nlr = inf"),
            "[training] lr must be a number > 0, got inf",
        ),
        (
            ABSTRACT.replace("forward_ms = 1.0", "forward_ms = inf"),
            "[model] forward_ms must be a number in [0, 1e+09], got inf",
        ),
        (
            ABSTRACT.replace("forward_ms = 1.0", "forward_ms = [1, nan]"),
            "[model] forward_ms[1] must be a number in [0, 1e+09], got nan",
        ),
        (
            ABSTRACT.replace("forward_ms = 1.0", "activation_bytes = [1, -1]"),
            "[model] activation_bytes[1] must be an integer in [0, 1e+15], got -1",
        ),
        (
            ABSTRACT.replace("forward_ms = 1.0", 'comm_ms = [1, "x"]'),
            "[model] comm_ms[1] must be a number in [0, 1e+09], got 'x'",
        ),
    ],
    ids=[
        "latency-inf",
        "subnormal-bandwidth",
        "peak-nan",
        "lr-inf",
        "forward-inf",
        "forward-list-nan",
        "stash-negative",
        "list-type",
    ],
)
def test_non_finite_and_out_of_range_numbers_name_the_key(tmp_path, capsys, text, message):
    assert_run_fails(tmp_path, capsys, text, message)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, 2e9])
def test_scalar_and_list_forms_obey_one_rule(bad):
    from simulator.nn.abstract import AbstractConfig

    with pytest.raises(ScenarioError) as scalar:
        AbstractConfig(stages=2, weight_ms=bad)
    with pytest.raises(ScenarioError) as listed:
        AbstractConfig(stages=2, weight_ms=[1.0, bad])
    assert str(scalar.value).replace("weight_ms", "weight_ms[1]") == str(listed.value)


# family 4: what used to be tracebacks
@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            GPT.replace("vocab = 64", "vocab = 64\ninit_std = -1"),
            "[model] init_std must be a number in [0, 1], got -1",
        ),
        (
            GPT.replace("vocab = 64", "vocab = 64\ninit_std = nan"),
            "[model] init_std must be a number in [0, 1], got nan",
        ),
        (
            GPT.replace("vocab = 64", 'vocab = 64\ndata = "text"').replace(
                "seq_len = 4", "seq_len = 100000"
            ),
            "the text 'alice' has 4799 characters, too few for seq_len = 100000",
        ),
        (
            GPT.replace("vocab = 64", 'vocab = 8\ndata = "text"'),
            "has 62 distinct characters but vocab is 8",
        ),
        (
            GPT.replace("vocab = 64", 'vocab = 64\ndata = "poem"'),
            "[model] data must be one of 'synthetic', 'text', got 'poem'",
        ),
    ],
    ids=["init-std-negative", "init-std-nan", "text-too-short", "text-vocab", "unknown-data"],
)
def test_bad_model_settings_are_one_line(tmp_path, capsys, text, message):
    assert_run_fails(tmp_path, capsys, text, message)


def test_files_that_are_not_utf8(tmp_path, capsys):
    from simulator.cli import main

    path = tmp_path / "latin.toml"
    path.write_bytes(BASE.replace("hostile", "h\xe9").encode("latin-1"))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not UTF-8 text (byte 0xe9 at offset 10)" in err
    (tmp_path / "mine.csv").write_bytes(b"0F0,\xff\n1F0\n")
    assert_run_fails(
        tmp_path,
        capsys,
        with_lines(BASE, "[strategy]", 'schedule = "file:mine.csv"'),
        "[[strategy]] 'pipe' schedule: schedule file",
    )


def test_a_scenario_file_has_a_size_limit(tmp_path):
    path = tmp_path / "big.toml"
    path.write_text(BASE + "#" * 1000)
    with pytest.raises(LimitError, match=r"raise the limit with --max-file-bytes N$"):
        load_scenario(path, limits={"max_file_bytes": 1000})
    assert load_scenario(path).name == "hostile"


# family 5: no silent defaults; names that would escape the output folder
def test_zero_nodes_is_an_error_not_the_default(tmp_path, capsys):
    assert_run_fails(
        tmp_path,
        capsys,
        BASE.replace("nodes = 1", "nodes = 0"),
        "[cluster] nodes must be an integer in [1, 1e+09], got 0",
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("x" * 65, "name must be a name of 1 to 64 printable characters"),
        ("a\\nb", "name must be a name of 1 to 64 printable characters"),
        (" a", "without leading or trailing spaces"),
    ],
)
def test_names_are_short_and_printable(tmp_path, capsys, name, message):
    assert_run_fails(tmp_path, capsys, BASE.replace('name = "pipe"', f'name = "{name}"'), message)


def test_names_that_collide_as_files_are_refused(tmp_path, capsys):
    text = BASE + '[[strategy]]\nname = "PIPE"\n'
    assert_run_fails(tmp_path, capsys, text, "names 'pipe' and 'PIPE' differ only in case")


def test_dot_dot_is_a_name_like_any_other():
    data = {"model": {"kind": "mlp", "layers": 2, "width": 4}, "strategy": [{"name": ".."}]}
    assert parse_scenario(data, "x.toml", Path.cwd()).strategies[0].name == ".."


def test_long_strings_are_refused(tmp_path, capsys):
    assert_run_fails(
        tmp_path,
        capsys,
        BASE.replace('preset = "toy"', f'preset = "{"a" * 2000}"'),
        "[cluster] preset is 2,000 characters long; at most 1024 allowed",
    )


def test_a_billion_node_cluster_costs_only_the_devices_used(tmp_path):
    # ledgers and trace lanes exist for the devices a strategy uses, not the cluster's
    data = tomllib.loads(BASE.replace("nodes = 1", "nodes = 1000000000"))
    data["strategy"] = [{"name": "one"}]
    result = run_scenario(parse_scenario(data)).results[0]
    assert result.status == "ok"
    assert [d["device"] for d in result.metrics["devices"]] == [0]


def test_a_schedule_file_reports_its_chunks(tmp_path):
    # two chunks per rank, read from the file: the results say 2, not the strategy's 1
    (tmp_path / "two.csv").write_text(
        "0F0,0F1,2F0,2F1,2B0,2B1,0B0,0B1\n1F0,1F1,3F0,3F1,3B0,3B1,1B0,1B1\n"
    )
    text = BASE.replace("global_batch = 8", "global_batch = 4")
    text = text.replace("microbatches = 2", 'microbatches = 2\nschedule = "file:two.csv"')
    path = tmp_path / "s.toml"
    path.write_text(text)
    result = run_scenario(load_scenario(path)).results[0]
    assert result.status == "ok" and result.metrics["chunks"] == 2


def test_a_byte_order_mark_is_dropped(tmp_path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + BASE.encode())
    assert load_scenario(path).name == "hostile"
