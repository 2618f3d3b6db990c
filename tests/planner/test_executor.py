"""The executor: the same bytes from a process pool and from Dask; failures recorded; Ctrl-C."""

import os
import time

import pytest

import simulator
from simulator import GPTConfig, Strategy, TrainingConfig, preset
from simulator.planner.executor import Task, run_tasks, simulate

GPT = GPTConfig(layers=2, hidden=16, heads=4, seq_len=8, vocab=32, dropout=0.1)
TRAINING = TrainingConfig(global_batch=8, steps=1, optimizer="adam")
CLUSTER = preset("toy", nodes=1)
SPACE = {
    "max_tp": 2,
    "schedules": ("1f1b",),
    "recompute": ("none",),
    "zero": (0,),
    "sequence_parallel": (False,),
    "microbatch_sizes": (2,),
}


def test_dask_and_local_processes_give_the_same_bytes(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    local = simulator.plan(CLUSTER, GPT, TRAINING, workers=2, **SPACE)
    local_files = local.write(tmp_path / "local")
    # in-process workers: no external service, and the test's own interpreter; the
    # scheduler's HTTP server on a free port (it binds 8787 otherwise, which another
    # test's cluster on the other pytest worker may hold)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as cluster:
        remote = simulator.plan(CLUSTER, GPT, TRAINING, dask=cluster.scheduler_address, **SPACE)
    remote.write(tmp_path / "dask")
    assert local.evaluated == remote.evaluated > 2
    for path in local_files:
        if path.suffix in (".csv", ".json", ".toml"):
            assert path.read_bytes() == (tmp_path / "dask" / path.name).read_bytes(), path.name


def _where(n):
    """A task's result: its number and the process that ran it."""
    return {"status": "ok", "n": n, "pid": os.getpid()}


@pytest.mark.parametrize("workers", [1, 2])
def test_then_gives_each_round_from_the_results_of_the_one_before(workers):
    """The planner's rounds: ``then`` is asked once the round before has finished,
    with its results, and gives the next round's tasks one by one; the run ends when
    it gives none. With no tasks to start with, the rounds still run on the workers;
    what ``idle`` does while they run changes nothing."""
    asked = []
    idled = []

    def then(results):
        asked.append([r["n"] for r in results])
        if len(asked) <= 3:
            yield from (10 * len(asked) + i for i in range(3))

    outcome = run_tasks([], fn=_where, workers=workers, then=then,
                        idle=lambda: idled.append(1) or len(idled) < 5)  # fmt: skip
    assert asked == [[], [10, 11, 12], [20, 21, 22], [30, 31, 32]]
    assert [r["n"] for r in outcome.results] == [10, 11, 12, 20, 21, 22, 30, 31, 32]
    assert all((r["pid"] != os.getpid()) == (workers > 1) for r in outcome.results)


def _logged(task):
    """Run ``(n, directory, seconds, after)``: note the start in the directory, wait
    until the files ``after`` are there (30 s at most), sleep, note the end."""
    n, directory, seconds, after = task
    with open(os.path.join(directory, f"{n}.started"), "a") as f:
        f.write("x")
    for _ in range(300):
        if all(os.path.exists(os.path.join(directory, name)) for name in after):
            break
        time.sleep(0.1)
    time.sleep(seconds)
    with open(os.path.join(directory, f"{n}.ended"), "a") as f:
        f.write("x")
    return {"status": "ok", "n": n}


def test_a_task_run_ahead_is_taken_by_its_round_and_one_no_round_gives_is_ended(tmp_path):
    """``ahead`` runs a task on a worker the round leaves idle: the round that gives an
    equal task takes its result instead of running it again, and a task no round
    gives is ended when the rounds are over, not waited for. The results are those
    of the rounds alone."""
    directory = str(tmp_path)
    # task 2 ends once task 3 has ended and task 9 has started: on the other worker,
    # ahead of the round that gives 3, and of none
    late = ("3.ended", "9.started")
    rounds = [[(1, directory, 0.0, ()), (2, directory, 0.0, late)], [(3, directory, 0.0, ())]]
    wanted = iter([(3, directory, 0.0, ()), (9, directory, 60.0, ())])
    asked = []
    ahead_of_its_round = []

    def then(results):
        asked.append([r["n"] for r in results])
        if len(asked) == 2:
            ahead_of_its_round.append((tmp_path / "3.ended").exists())
        if len(asked) <= len(rounds):
            yield from rounds[len(asked) - 1]

    outcome = run_tasks([], fn=_logged, workers=2, then=then, ahead=lambda: next(wanted, None))
    assert [r["n"] for r in outcome.results] == [1, 2, 3]
    assert asked == [[], [1, 2], [3]]
    assert ahead_of_its_round == [True]
    started = {name: (tmp_path / name).read_text() for name in os.listdir(tmp_path)}
    assert started["3.started"] == "x"  # run ahead, and not again by its round
    assert "9.started" in started and "9.ended" not in started  # ended, not waited for


def test_a_failing_run_is_recorded_and_the_others_finish():
    tasks = [
        Task(CLUSTER, GPT, TRAINING, Strategy("ok")),
        Task(CLUSTER, GPT, TRAINING, Strategy("too-many", dp=16)),
        Task(CLUSTER, GPT, TRAINING, Strategy("pipe", pp=2, microbatches=2)),
    ]
    outcome = run_tasks(tasks, workers=2)
    statuses = [r["status"] for r in outcome.results]
    assert statuses == ["ok", "error", "ok"]
    assert "needs dp*tp*pp" in outcome.results[1]["message"]
    assert outcome.counts == {"ok": 2, "failed": 1, "oom": 0}


def test_ctrl_c_stops_and_keeps_what_finished():
    calls = []

    def interrupt_third(task):
        calls.append(task.strategy.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return simulate(task)

    tasks = [Task(CLUSTER, GPT, TRAINING, Strategy(f"s{i}")) for i in range(5)]
    outcome = run_tasks(tasks, interrupt_third, workers=1)
    assert outcome.interrupted
    assert [r is not None for r in outcome.results] == [True, True, False, False, False]


def test_a_dask_address_that_does_not_answer_is_one_line(tmp_path, capsys, monkeypatch):
    pytest.importorskip("dask.distributed")
    from simulator.cli import main
    from simulator.planner import executor

    monkeypatch.setattr(executor, "DASK_TIMEOUT", "1s")
    argv = ["plan", "--model", "gpt3-small", "--preset", "toy", "--dask", "tcp://127.0.0.1:9"]
    assert main([*argv, "--fixed", "tp=4", "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach the Dask scheduler") and err.count("\n") == 1


def _slow(seconds):
    import time

    time.sleep(seconds)
    return {"status": "ok"}


def test_sigterm_cancels_the_dask_tasks(monkeypatch):
    distributed = pytest.importorskip("dask.distributed")
    from simulator.planner import executor

    cancelled = []
    cancel = distributed.Client.cancel
    monkeypatch.setattr(
        distributed.Client,
        "cancel",
        lambda self, futures, *a, **k: (cancelled.extend(futures), cancel(self, futures, *a, **k)),
    )
    settle = executor._settle

    def stop_after_the_first(future, i, results, bar):
        settle(future, i, results, bar)
        raise executor.Terminated  # what SIGTERM raises in the main thread

    monkeypatch.setattr(executor, "_settle", stop_after_the_first)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as cluster:
        outcome = run_tasks([0.0, *[0.5] * 5], _slow, dask=cluster.scheduler_address)
    assert outcome.interrupted == "SIGTERM" and outcome.finished == 1
    assert len(cancelled) == 6  # every future of the round, the unfinished ones with them
