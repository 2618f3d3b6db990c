"""Run many simulations at once: local processes or a Dask cluster.

A task is one strategy to simulate (:class:`Task`); :func:`simulate` runs it
and returns its results-JSON entry. :func:`run_tasks` hands the tasks to

* ``concurrent.futures.ProcessPoolExecutor`` with ``workers`` processes (the
  default: one per CPU; ``workers = 1`` runs them in this process), or
* a Dask distributed cluster at ``dask`` (an address such as
  ``tcp://HOST:8786``), through ``dask.distributed.Client``.

Both are schedulers other people maintain; this module only submits, counts
and collects. A task's result depends on the task alone, and results are
kept in task order, never in the order they finish, so every backend gives
the same results byte for byte.

A run that errors is recorded (``status = "error"`` with the message), a run
out of memory has ``status = "oom"``, and neither stops the others. A progress
bar on standard error counts runs done, failed and out of memory, with an ETA;
it is shown only when standard error is a terminal.

Stopping. Ctrl-C (SIGINT) or SIGTERM -- what ``kill`` and job schedulers
send -- cancels what has not started, ends the running simulations (their
results are no longer wanted, and a large one may take minutes) and returns
what finished, with the signal's name in :attr:`Outcome.interrupted`; Dask
tasks are cancelled. A worker process cannot be told anything when its
parent is killed outright (SIGKILL, the out-of-memory killer), so each
worker watches for it: a thread notices that its parent process is gone
(the worker is re-parented) within :data:`WATCH_S` seconds and ends the
worker, so no simulation keeps running for nobody.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from ..errors import ScenarioError, SimulatorError
from ..experiment.runner import simulate_strategy
from ..hardware import ClusterSpec
from ..keys import Key, check_argument
from ..parallel.pipeline import Schedule
from ..parallel.strategy import Strategy, name_check
from ..parallel.training import TrainingConfig
from ..ranges import Range

Result = dict[str, Any]
#: How long to wait for a Dask scheduler to answer.
DASK_TIMEOUT = "10s"
#: How often a worker process checks that its parent is still alive (seconds).
WATCH_S = 0.5
#: The exit status of a command a signal stopped: 128 + the signal's number, as shells do.
SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}


_COUNT = Range(lo=1, integer=True)
#: The arguments :func:`simulator.plan` and :func:`simulator.sweep` share, with their rules.
ARGUMENTS = {
    "top": Key.of(int, "layouts to keep", range=_COUNT, optional=True),
    "name": Key.of(str, "names the result", check=name_check, optional=True),
    "workers": Key.of(int, "local worker processes", range=_COUNT, optional=True),
    "dask": Key.of(str, "a Dask scheduler's address", optional=True),
    "progress": Key.of(bool, "show a progress bar"),
    "exhaustive": Key.of(bool, "simulate every layout that may fit"),
    "zip": Key.of(bool, "pair the values", optional=True),
    "metric": Key.of(str, "the results key to plot", optional=True),
}


def check_arguments(owner: str, **values: Any) -> dict[str, Any]:
    """``values`` checked against :data:`ARGUMENTS` (numpy numbers as Python's); raises
    :class:`~simulator.errors.ConfigError` naming ``owner`` and the argument."""
    return {k: check_argument(owner, k, v, ARGUMENTS[k]) for k, v in values.items()}


@dataclass(frozen=True)
class Task:
    """One strategy to simulate; ``keep_devices`` keeps the per-device entries."""

    cluster: ClusterSpec
    model: Any
    training: TrainingConfig
    strategy: Strategy
    #: the parsed schedule file, for a strategy whose schedule is ``file:PATH.csv``
    schedule: Schedule | None = None
    keep_devices: bool = False


def simulate(task: Task) -> Result:
    """Plan and simulate one task; its results-JSON entry, or an error entry."""
    try:
        metrics = simulate_strategy(
            task.cluster, task.model, task.training, task.strategy, schedule=task.schedule
        ).metrics
    except SimulatorError as err:
        return {"status": "error", "message": str(err).splitlines()[0]}
    except Exception as err:  # a bug in one run must not lose the others' results
        return {"status": "error", "message": f"{type(err).__name__}: {err}"}
    if task.keep_devices:
        return metrics
    return {k: v for k, v in metrics.items() if k != "devices"}


def default_workers() -> int:
    """The CPUs this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass
class Outcome:
    """Results in task order (None for a task that did not finish), and the signal that
    interrupted the run (``"SIGINT"``, ``"SIGTERM"``; ``""`` when it was not)."""

    results: list[Result | None]
    interrupted: str = ""
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        """Tasks that finished (whatever their status)."""
        return sum(r is not None for r in self.results)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop as Ctrl-C does (a KeyboardInterrupt, so every handler of
    one applies)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once is enough while stopping
    raise Terminated


class _StopOnSigterm:
    """While active, SIGTERM raises :class:`Terminated` in the main thread."""

    def __enter__(self) -> None:
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, _raise_terminated)

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


class _Progress:
    """A tqdm bar of runs done, failed and out of memory (hidden when not wanted)."""

    def __init__(self, total: int, label: str, show: bool) -> None:
        from tqdm import tqdm

        self.counts = {"ok": 0, "failed": 0, "oom": 0}
        self.bar = tqdm(
            total=total,
            desc=label,
            unit="run",
            file=sys.stderr,
            disable=not (show and sys.stderr.isatty()),
            dynamic_ncols=True,
        )

    def done(self, result: Result) -> None:
        status = result.get("status")
        key = "ok" if status == "ok" else "oom" if status == "oom" else "failed"
        self.counts[key] += 1
        self.bar.set_postfix_str(
            f"ok {self.counts['ok']}, failed {self.counts['failed']}, oom {self.counts['oom']}",
            refresh=False,
        )
        self.bar.update(1)

    def add(self, tasks: int) -> None:
        """``tasks`` more to wait for (a round :func:`run_tasks` was given)."""
        if tasks:
            self.bar.total += tasks
            self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def run_tasks(
    tasks: Sequence[Task],
    fn: Callable[[Task], Result] = simulate,
    workers: int | None = None,
    dask: str | None = None,
    progress: bool = False,
    label: str = "simulating",
    then: Callable[[list[Result | None]], Iterable[Task]] | None = None,
    idle: Callable[[], bool] | None = None,
    ahead: Callable[[], Task | None] | None = None,
) -> Outcome:
    """Run ``fn`` on every task (see the module docstring); never raises for a
    failed run.

    With ``then``, the run goes on in rounds: once every task so far has
    finished, ``then(the last round's results)`` gives the next round's tasks
    (each starts as soon as it is given), and the run ends when it gives none.
    The results are those of every task run, in the order given. What a round
    runs depends on the results of the rounds before it alone, never on how
    many workers there are, so every backend runs the same tasks (the
    planner's branch and bound uses this).

    ``idle()`` is called in this process while local worker processes run, again
    and again until it returns False: work that a later round wants done and
    that changes nothing any round runs (the planner tightens its bounds
    ahead)."""
    tasks = list(tasks)
    results: list[Result | None] = [None] * len(tasks)
    bar = _Progress(len(tasks), label, progress)
    rounds = _rounds(tasks, then, results, bar)
    interrupted = ""
    try:
        with _StopOnSigterm():
            if dask is not None:
                _on_dask(dask, tasks, fn, results, bar, rounds)
            elif (workers or default_workers()) <= 1 or (then is None and len(tasks) <= 1):
                for batch in rounds:
                    for i in batch:
                        results[i] = fn(tasks[i])
                        bar.done(results[i])
            else:
                workers = workers or default_workers()
                if then is None:  # no more than the tasks
                    workers = min(workers, len(tasks))
                _on_processes(workers, tasks, fn, results, bar, rounds, idle, ahead)
    except Terminated:
        interrupted = "SIGTERM"
    except KeyboardInterrupt:
        interrupted = "SIGINT"
    finally:
        bar.close()
    return Outcome(results, interrupted, dict(bar.counts))


def _rounds(
    tasks: list[Task],
    then: Callable[[list[Result | None]], Iterable[Task]] | None,
    results: list[Result | None],
    bar: _Progress,
) -> Iterator[Iterable[int]]:
    """The indices of the tasks to run, round by round (see :func:`run_tasks`): the
    tasks given, then what ``then`` adds (to ``tasks`` and ``results``), asked only
    when the round before has finished, and taken one by one as it gives them (a
    worker starts on the first while the next is being chosen)."""
    last: list[int] = list(range(len(tasks)))
    if tasks:
        yield last
    while then is not None:
        ran: list[int] = []
        yield _added(then([results[i] for i in last]), tasks, results, bar, ran)
        if not ran:
            return
        last = ran


def _added(
    more: Iterable[Task], tasks: list[Task], results: list[Result | None], bar: _Progress,
    ran: list[int],
) -> Iterator[int]:  # fmt: skip
    """For :func:`_rounds`: each task of ``more`` added, and its index, as it comes."""
    for task in more:
        tasks.append(task)
        results.append(None)
        bar.add(1)
        ran.append(len(tasks) - 1)
        yield ran[-1]


def _settle(future: Any, i: int, results: list, bar: _Progress) -> None:
    """Keep a finished future's result as task ``i``'s; a run lost with its worker
    (e.g. a process killed from outside) is recorded as an error."""
    try:
        result = future.result()
    except Exception as err:
        result = {"status": "error", "message": f"the run was lost: {type(err).__name__}: {err}"}
    results[i] = result
    bar.done(result)


def _worker_init() -> None:
    """Set up a worker process: Ctrl-C is left to the parent, which stops the workers
    (no tracebacks); SIGTERM ends the worker at once (the parent's way to stop it,
    whatever handler the parent had); and a watchdog ends it when the parent dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    parent = os.getppid()
    threading.Thread(target=_watch, args=(parent,), name="parent-watchdog", daemon=True).start()


def _watch(parent: int) -> None:
    """End this process once ``parent`` is gone: an orphan is re-parented, so its parent
    id changes (a watchdog thread; the simulation holds the GIL only between
    bytecodes, so the thread gets its turn)."""
    while os.getppid() == parent:
        time.sleep(WATCH_S)
    os._exit(1)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the running simulations now: their
    results are no longer wanted, and a large one may take minutes."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14
    if terminate is not None:
        terminate()
        return
    # before 3.14 the processes are only reachable privately, and shutdown forgets them
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=5)  # reap them: no zombie is left behind
    # and let the pool's manager thread see them gone and close its wakeup pipe now: at
    # exit, concurrent.futures wakes that thread through the pipe without the pool's
    # lock, and a close racing that write fails with "Bad file descriptor" (a traceback
    # after the one line a signal should leave; CPython 3.11, ``_python_exit``)
    manager = getattr(pool, "_executor_manager_thread", None)
    if manager is not None:
        manager.join(timeout=5)


def _on_processes(
    workers: int,
    tasks: Sequence[Task],
    fn: Callable[[Task], Result],
    results: list,
    bar: _Progress,
    rounds: Iterator[Iterable[int]],
    idle: Callable[[], bool] | None = None,
    ahead: Callable[[], Task | None] | None = None,
) -> None:
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init)
    #: tasks run ahead of their round (:func:`run_tasks`), with their futures
    early: list[tuple[Task, Future]] = []
    try:
        for batch in rounds:
            futures = {}
            for i in batch:
                futures[_taken(early, tasks[i]) or pool.submit(fn, tasks[i])] = i
            busy = idle is not None  # whether idle() has more to do
            running = set(futures)
            while running:
                pending = {f for _, f in early if not f.done()}
                if ahead is not None and len(running) + len(pending) < workers:
                    task = ahead()
                    if task is not None:
                        future = pool.submit(fn, task)
                        early.append((task, future))
                        pending.add(future)
                # a finished run is collected at once; between, idle() does a step
                done, _ = wait(running | pending, timeout=0 if busy else None,
                               return_when=FIRST_COMPLETED)  # fmt: skip
                for future in done & running:
                    _settle(future, futures[future], results, bar)
                running -= done
                if busy and running:
                    busy = idle()
    except BaseException:  # Ctrl-C, SIGTERM, or a failure of our own: end the workers
        _stop(pool)
        raise
    if any(not f.done() for _, f in early):
        _stop(pool)  # runs ahead that no round wanted: end them rather than wait
    else:
        pool.shutdown()


def _taken(early: list[tuple[Task, Future]], task: Task) -> Future | None:
    """The future of a task run ahead that equals ``task``, taken off ``early``."""
    for j, (ran, future) in enumerate(early):
        if ran == task:
            del early[j]
            return future
    return None


def _on_dask(
    address: str,
    tasks: Sequence[Task],
    fn: Callable[[Task], Result],
    results: list,
    bar: _Progress,
    rounds: Iterator[Iterable[int]],
) -> None:
    try:
        from dask.distributed import Client
        from dask.distributed import as_completed as dask_completed
    except ImportError:
        raise ScenarioError(
            'running on a Dask cluster needs Dask: pip install -e ".[dask]"'
        ) from None
    try:
        client = Client(address, timeout=DASK_TIMEOUT)
    except ValueError as err:
        raise ScenarioError(
            f"cannot reach the Dask scheduler at {address!r}: it is not an address a Dask "
            f"client understands ({err}); give one such as tcp://HOST:8786"
        ) from None
    except (OSError, TimeoutError) as err:
        raise ScenarioError(f"cannot reach the Dask scheduler at {address!r}: {err}") from None
    futures: list = []
    try:
        for lazy in rounds:
            batch = list(lazy)
            if not batch:
                continue
            futures = client.map(fn, [tasks[i] for i in batch], pure=False)
            index = {f.key: i for f, i in zip(futures, batch, strict=True)}
            for future in dask_completed(futures):
                _settle(future, index[future.key], results, bar)
    except BaseException:  # Ctrl-C, SIGTERM: nothing more is wanted from the cluster
        client.cancel(futures)
        raise
    finally:
        client.close()
