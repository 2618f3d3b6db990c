"""``python -m simulator plan``: table, JSON, files, and one line for bad input."""

import json

import pytest

from simulator.cli import main
from tests.conftest import scenario_file

SCENARIO = """
name = "tiny"
[cluster]
preset = "toy"
[model]
kind = "gpt"
layers = 2
hidden = 16
heads = 4
seq_len = 8
vocab = 32
[training]
numerics = false
global_batch = 8
steps = 1
[plan]
top = 3
recompute = ["none"]
zero = [0]
orders = ["tp-cp-dp-pp"]
sequence_parallel = [false]
schedules = ["1f1b"]
"""
FAST = ["--workers", "1", "--quiet"]


def scenario(tmp_path, text=SCENARIO):
    return scenario_file(tmp_path, text, "plan.toml")


def test_prints_counts_and_the_top_table_and_writes_the_files(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["plan", scenario(tmp_path), "--out", str(out), *FAST]) == 0
    text = capsys.readouterr().out
    assert "distinct layouts; rejected before simulation:" in text
    table = text.split("step (")[1].splitlines()
    assert len([line for line in table if line[:1].isdigit()]) == 3  # top = 3
    for name in ("plan.csv", "plan.json", "pareto.png", "best.toml"):
        assert (out / name).stat().st_size > 0


def test_json_holds_only_the_interface(tmp_path, capsys):
    argv = ["plan", scenario(tmp_path), "--json", "--out", str(tmp_path / "o"), *FAST]
    assert main([*argv, "--max-tp", "2", "--fixed", "pp=1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data) == ["evaluated", "pruned", "layouts"]
    assert {(r["tp"], r["pp"]) for r in data["layouts"]} == {(1, 1), (2, 1)}
    assert data["evaluated"] == len(data["layouts"])


def test_a_named_model_on_a_preset(tmp_path, capsys):
    argv = ["plan", "--model", "gpt3-small", "--preset", "toy", "--nodes", "1"]
    argv += ["--global-batch", "4", "--fixed", "tp=4", "--recompute", "full", "--json"]
    assert main([*argv, "--out", str(tmp_path), *FAST]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["layouts"] and all(r["tp"] == 4 for r in data["layouts"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-tp", "0"], "max_tp must be an integer >= 1, got 0"),
        (["--schedules", "1f1b,zigzag"], "unknown schedule 'zigzag'"),
        (["--recompute", "some"], "recompute[0] must be one of 'none', 'selective', 'full'"),
        (["--fixed", "tp"], "--fixed takes KEY=VALUE"),
        (["--fixed", "bucket_mb=1"], "unknown key 'bucket_mb'"),
        (["--workers", "two"], "--workers must be a positive integer"),
        (["--model", "gpt3-small"], "give a plan scenario file or --model, not both"),
        (["--fixed", "tp=2", "--fixed", "tp=4"], "--fixed tp is given twice"),
        (["--fixed", "tp=3"], "nothing to simulate: no dp x tp x pp layout of 4 devices"),
        (["--microbatch-sizes", "3"], "nothing to simulate: no dp x tp x pp layout"),
        (["--max-chunks", "100000"], "--max-chunks = 100,000 is over the limit"),
        (["--devices", "100000"], "--devices = 100,000 is over the limit max_devices"),
        (["--fixed", "tp=" + "1" * 5000], "digits of a number = 5,000 is over the limit"),
        (["--top", "\u0661"], "top must be an integer >= 1, got '\u0661'"),
    ],
)
def test_bad_flags_exit_2_with_one_line(tmp_path, capsys, argv, message):
    assert main(["plan", scenario(tmp_path), "--out", str(tmp_path / "o"), *FAST, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("top = 3", "top = 0"), "[plan] top must be an integer >= 1, got 0"),
        (("top = 3", "tops = 3"), "unknown key 'tops' in [plan] (did you mean 'top'?)"),
        (("[plan]", '[[strategy]]\nname = "x"\n[plan]'), "remove its [[strategy]] tables"),
        (("zero = [0]", "zero = [5]"), "[plan] zero[0] must be one of 0, 1, 2, 3, got 5"),
    ],
)
def test_bad_plan_tables_exit_2_with_one_line(tmp_path, capsys, change, message):
    path = scenario(tmp_path, SCENARIO.replace(*change))
    assert main(["plan", path, "--out", str(tmp_path / "o"), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err


def test_no_model_at_all_and_unknown_models(capsys):
    assert main(["plan"]) == 2
    assert "give a plan scenario file, or --model NAME" in capsys.readouterr().err
    assert main(["plan", "--model", "gpt5"]) == 2
    assert "unknown model 'gpt5'; choose one of: gpt3-small" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--nodes", "1000000"],
            "--nodes 1000000 x 4 devices = 4,000,000 is over the limit max_devices = 65,536; "
            "if you mean it, raise the limit with --max-devices N",
        ),
        (["--dask", "inproc://x"], "it is not an address a Dask client understands"),
    ],
)
def test_runaways_and_bad_addresses_stop_before_any_work(tmp_path, capsys, argv, message):
    argv = ["plan", "--model", "gpt3-small", "--preset", "toy", "--out", str(tmp_path), *argv]
    assert main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err


def _interrupted(finished: int):
    """run_tasks as Ctrl-C leaves it after ``finished`` tasks."""
    from simulator.planner import executor

    def run_tasks(tasks, fn=executor.simulate, then=None, **kwargs):
        tasks = list(tasks)
        if then is not None:  # the planner's rounds: the first, as ``then`` gives it
            tasks += list(then([]))
        results = [fn(t) for t in tasks[:finished]] + [None] * (len(tasks) - finished)
        return executor.Outcome(results, "SIGINT")

    return run_tasks


def test_interrupted_before_any_layout_finished(tmp_path, capsys, monkeypatch):
    from simulator.planner import search

    monkeypatch.setattr(search, "run_tasks", _interrupted(0))
    out = tmp_path / "o"
    assert main(["plan", scenario(tmp_path), "--out", str(out), *FAST]) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted by SIGINT: 0 of ") and err.count("\n") == 1, err
    assert err.rstrip().endswith("layouts finished; nothing was written")
    assert not out.exists()


def test_interrupted_plans_say_what_they_kept_and_where(tmp_path, capsys, monkeypatch):
    from simulator.planner import search

    monkeypatch.setattr(search, "run_tasks", _interrupted(2))
    out = tmp_path / "o"
    assert main(["plan", scenario(tmp_path), "--out", str(out), *FAST]) == 130
    captured = capsys.readouterr()
    assert "simulated 2: 2 fit, 0 out of memory, 0 failed (interrupted, of up to" in captured.out
    assert captured.err.startswith("interrupted by SIGINT: 2 of ")
    assert f"wrote the 2 that finished to {out}/" in captured.err
    assert len(json.loads((out / "plan.json").read_text())["layouts"]) == 2


def test_no_picture_without_a_step_to_draw(tmp_path, capsys, monkeypatch):
    from simulator.planner import executor, search

    def every_run_fails(tasks, then, **kwargs):
        results, last = [], []
        while batch := list(then(last)):  # the planner's rounds, until it stops
            last = [{"status": "error", "message": "no"} for _ in batch]
            results += last
        return executor.Outcome(results)

    monkeypatch.setattr(search, "run_tasks", every_run_fails)
    out = tmp_path / "o"
    assert main(["plan", scenario(tmp_path), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert "none of the" in err and "simulated layouts finished" in err and err.count("\n") == 1
    assert (out / "plan.json").exists() and not (out / "pareto.png").exists()
