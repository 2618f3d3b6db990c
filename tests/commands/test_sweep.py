"""``python -m simulator sweep``: the grid from flags or a table, JSON, and bad input."""

import json

import pytest

from simulator.cli import main
from tests.conftest import TINY_MLP, scenario_file

SCENARIO = f"""
name = "tiny"
{TINY_MLP.replace("steps = 2", "steps = 1")}[[strategy]]
name = "single"
[[strategy]]
name = "pipe"
pp = 2
microbatches = 2
"""
FAST = ["--workers", "1", "--quiet"]


def scenario(tmp_path, text=SCENARIO):
    return scenario_file(tmp_path, text)


def run(tmp_path, *argv):
    return main(["sweep", scenario(tmp_path), "--out", str(tmp_path / "o"), *FAST, *argv])


def test_product_of_the_values(tmp_path, capsys):
    assert (
        run(
            tmp_path, "--vary", "training.global_batch=4,8", "--vary", "model.width=16,32", "--json"
        )
        == 0
    )
    points = json.loads(capsys.readouterr().out)["points"]
    assert [p["values"] for p in points] == [
        {"training.global_batch": b, "model.width": w} for b in (4, 8) for w in (16, 32)
    ]
    assert all([r["strategy"] for r in p["results"]] == ["single", "pipe"] for p in points)
    assert (tmp_path / "o" / "sweep.png").stat().st_size > 0


def test_zip_and_the_table(tmp_path, capsys):
    assert (
        run(tmp_path, "--vary", "training.global_batch=4,8", "--vary", "model.width=16,32", "--zip")
        == 0
    )
    out = capsys.readouterr().out
    assert "over 2 points" in out
    rows = (tmp_path / "o" / "sweep.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 2


def test_a_sweep_table_in_the_scenario(tmp_path, capsys):
    text = SCENARIO + '[sweep]\nvary = {"cluster.intra_node.latency_us" = [0, 50]}\n'
    path = scenario(tmp_path, text)
    assert main(["sweep", path, "--json", "--out", str(tmp_path / "o"), *FAST]) == 0
    points = json.loads(capsys.readouterr().out)["points"]
    pipe = [p["results"][1]["iteration_time_s"] for p in points]
    assert pipe[0] < pipe[1]  # a slower link, a slower pipeline


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "nothing to sweep"),
        (("--vary", "cluster.nodes"), "--vary takes KEY=VALUE"),
        (("--vary", "cluster.nodes=1,2", "--vary", "model.width=8", "--zip"), "zip needs as many"),
        (("--vary", "cluster.nodez=1"), "unknown key 'nodez' in [cluster]"),
        (("--vary", "cluster.nodes=0"), "nodes must be an integer in [1, 1e+09], got 0"),
        (("--vary", "cluster.nodes=1", "--metric", "speed"), "no finished run has a number"),
        (("--vary", "cluster.nodes=1", "--workers", "0"), "--workers must be a positive"),
        (("--vary", "cluster={nodes=2}"), "vary 'cluster' takes numbers, strings or booleans"),
        (("--vary", "seed=1", "--vary", "seed=2"), "--vary seed is given twice"),
        (
            ("--vary", "seed=" + ",".join(map(str, range(1999)))),
            "the sweep's points (the product of 1999) = 1,999 is over the limit "
            "max_sweep_points = 1,000",
        ),
        (
            tuple(f"--vary={k}=" + ",".join(map(str, range(1000))) for k in ("seed", "a", "b")),
            "(the product of 1000 x 1000 x 1000) = 1,000,000,000 is over the limit",
        ),
        (
            ("--vary", "training.lr=1e300", "--vary", "training.steps=3"),
            "none of its 2 runs finished (single: diverged",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, message):
    assert run(tmp_path, *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err


def test_missing_file(capsys):
    assert main(["sweep", "no/such.toml", "--vary", "seed=1"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_an_interrupted_sweep_marks_what_it_never_ran(tmp_path, capsys, monkeypatch):
    import importlib

    from simulator.planner import executor

    sweep = importlib.import_module("simulator.planner.sweep")

    def interrupted(tasks, fn=executor.simulate, **kwargs):
        return executor.Outcome([fn(tasks[0])] + [None] * (len(tasks) - 1), "SIGTERM")

    monkeypatch.setattr(sweep, "run_tasks", interrupted)
    assert run(tmp_path, "--vary", "seed=1,2") == 143
    captured = capsys.readouterr()
    assert captured.out.count("NOT RUN") == 3
    assert captured.err == (
        f"interrupted by SIGTERM: 1 of 4 runs finished; wrote the 1 that finished to "
        f"{tmp_path / 'o'}/\n"
    )
    rows = (tmp_path / "o" / "sweep.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 and sum("not run" in r for r in rows) == 3
