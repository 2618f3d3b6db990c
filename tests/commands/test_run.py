"""The run command: table, JSON, files, and exit status 2 with one line for bad input."""

import json
import subprocess
import sys

import pytest

from simulator.cli import main
from tests import REPO
from tests.conftest import TINY_MLP, assert_run_fails, scenario_file

ROOT = REPO
BASE = f"""
name = "cli"
{TINY_MLP}[[strategy]]
name = "single"
[[strategy]]
name = "pipe"
pp = 2
microbatches = 4
schedule = "1f1b"
"""


def scenario(tmp_path, text=BASE):
    return scenario_file(tmp_path, text)


def test_run_prints_the_table_and_writes_the_files(tmp_path, capsys):
    assert main(["run", scenario(tmp_path), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "single" in out and "pipe" in out and "bubble" in out
    for name in (
        "results.json",
        "single.gantt.png",
        "pipe.trace.json",
        "pipe.memory.png",
        "compare.png",
    ):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_json_contract(tmp_path, capsys):
    assert main(["run", scenario(tmp_path), "--json", "--out", str(tmp_path / "o")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["scenario"] == "cli"
    pipe = data["results"][1]
    for key in (
        "strategy",
        "status",
        "message",
        "dp",
        "tp",
        "pp",
        "schedule",
        "microbatches",
        "iteration_time_s",
        "compute_fraction",
        "exposed_comm_fraction",
        "bubble_fraction",
        "bubble_fraction_analytic",
        "folded_replicas",
        "loss",
        "devices",
        "comm_bytes",
        "exposed_comm_s",
    ):
        assert key in pipe
    assert pipe["status"] == "ok" and len(pipe["loss"]) == 2 and len(pipe["devices"]) == 2
    for key in (
        "device",
        "compute_s",
        "exposed_comm_s",
        "bubble_s",
        "compute_fraction",
        "exposed_comm_fraction",
        "bubble_fraction",
        "peak_memory_bytes",
        "bytes_sent",
    ):
        assert key in pipe["devices"][0]
    assert data["results"][0]["loss"] == pytest.approx(pipe["loss"], rel=1e-9)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("layers = 4", "layers = 1"), "cannot split 1 blocks into 2 pipeline stages"),
        (("pp = 2", "pp = 8"), "needs dp*tp*pp = 1*1*8 = 8 devices but the cluster has 4"),
        (("microbatches = 4", "microbatches = 3"), "does not divide into"),
        (('preset = "toy"', 'preset = "nope"'), "unknown cluster preset"),
        (("width = 16", "width = -16"), "width must be an integer >= 1, got -16"),
        (("steps = 2", "stepz = 2"), "unknown key 'stepz'"),
        (("steps = 2", "steps = 2.5"), "steps must be an integer"),
        (('[[strategy]]\nname = "single"', '[[strategy]\nname = "single"'), "invalid TOML"),
        (('schedule = "1f1b"', 'schedule = "zigzag"'), "unknown schedule 'zigzag'"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, change, message):
    assert_run_fails(tmp_path, capsys, BASE.replace(*change), message)


def test_missing_file_exits_2(capsys):
    assert main(["run", "no/such/file.toml"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_module_entry_point_prints_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "simulator", "run", str(tmp_path / "x.toml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_a_diverging_run_says_when_and_its_json_stays_strict(tmp_path, capsys):
    # a huge learning rate: the loss overflows to inf, then NaN; the run stops there,
    # the other strategy still runs, and results.json holds no NaN or Infinity
    text = BASE.replace("steps = 2", "steps = 5\nlr = 1e30")
    with pytest.warns(RuntimeWarning):  # numpy's overflow, as the math really overflows
        assert main(["run", scenario(tmp_path, text), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "DIVERGED" in out and "the loss is nan at step" in out

    def refuse(constant):
        raise AssertionError(f"not strict JSON: {constant}")

    data = json.loads((tmp_path / "o" / "results.json").read_text(), parse_constant=refuse)
    statuses = {r["strategy"]: r["status"] for r in data["results"]}
    assert statuses == {"single": "diverged", "pipe": "diverged"}
    assert None in data["results"][0]["loss"]  # the NaN loss is written as null
