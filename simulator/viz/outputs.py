"""The files a run leaves: ``results.json``, and per strategy a Chrome trace, a Gantt
chart and a memory plot, plus ``compare.png``.

``results.json`` is strict JSON: a number that is not finite is written as
``null``. The Chrome trace has one process per group of devices the run
simulated as one (:mod:`simulator.engine.chrome`), or, with ``every_device``,
one per device; one of more than :data:`GZIP_EVENTS` events is written
gzip-compressed (``.trace.json.gz``, which Perfetto opens as it is).

Drawing is most of the cost of a small run, and a strategy's files depend on
nothing but its own finished record. So a :class:`FileWriter` writes each
strategy's files as soon as the strategy is simulated, in child processes
(forked: they start with the record in memory, nothing is copied) -- one
writes the trace, another draws the charts, side by side -- while the next
strategy simulates; on a machine of several cores the files cost little more
than the simulation. Where processes cannot be forked, or with ``workers=1``,
it writes them in turn. The files are the same either way.
"""

from __future__ import annotations

import json
import os
import select
import signal
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from ..engine import chrome
from ..experiment.progress import ProgressBar
from ..experiment.runner import ScenarioResult, StrategyResult
from ..runtime.core import collector_paused
from ..scenario.paths import file_stem

#: Traces with more events than this are written gzip-compressed.
GZIP_EVENTS = 200_000
#: what the name of a strategy's file ends in
SUFFIXES = (".gantt.png", ".memory.png", ".trace.json.gz", ".trace.json")


def trace_path(out: Path, stem: str, result: StrategyResult, every_device: bool = False) -> Path:
    """Where a strategy's Chrome trace goes: gzip-compressed when it is large."""
    large = chrome.count(result.trace, every_device) > GZIP_EVENTS
    return out / f"{stem}{'.trace.json.gz' if large else '.trace.json'}"


def write_results(result: ScenarioResult, out_dir: str | Path) -> Path:
    """Write ``results.json`` (strict JSON) into ``out_dir``; returns its path."""
    path = Path(out_dir) / "results.json"
    path.write_text(json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n")
    return path


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class FileWriter:
    """Writes the files of a scenario into ``out_dir`` (see the module docstring):
    :meth:`add` a strategy's result as it finishes, then :meth:`finish`. At most
    ``workers`` children write at once (default: the cores); ``progress`` shows a bar
    of the files while the last ones are written."""

    def __init__(
        self,
        out_dir: str | Path,
        every_device: bool = False,
        progress: bool = False,
        workers: int | None = None,
    ) -> None:
        from . import plots  # matplotlib: imported once here, before any child is forked

        self.plots = plots
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.every_device = every_device
        self.progress = progress
        self.workers = default_workers() if workers is None else workers
        self.fork = self.workers > 1 and hasattr(os, "fork")
        self.written: list[Path] = []
        self.done = 0  # files written
        #: pid -> (pipe, strategy, files it writes)
        self._children: dict[int, tuple[int, str, int]] = {}

    def add(self, result: StrategyResult) -> None:
        """Write ``result``'s trace, Gantt chart and memory plot."""
        stem = file_stem(result.name)
        trace = trace_path(self.out, stem, result, self.every_device)
        charts = [self.out / f"{stem}.gantt.png", self.out / f"{stem}.memory.png"]
        self.written += [trace, *charts]
        self._start(result.name, [trace], lambda: self._trace(result, trace))
        self._start(result.name, charts, lambda: self._charts(result, *charts))

    def _start(self, name: str, paths: list[Path], write: Callable[[], None]) -> None:
        """Run ``write`` (which writes ``paths``) in a child, or now without children."""
        if not self.fork:
            write()
            self.done += len(paths)
            return
        while len(self._children) >= self.workers:
            self._wait(self._first_done())
        pipe, child_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: write, report a failure on the pipe, and leave
            os.close(pipe)
            status = 0
            try:
                write()
            except BaseException:
                os.write(child_end, traceback.format_exc()[-8000:].encode())
                status = 1
            finally:
                os._exit(status)
        os.close(child_end)
        self._children[pid] = (pipe, name, len(paths))

    def finish(self, result: ScenarioResult) -> list[Path]:
        """Write ``results.json`` and ``compare.png``, wait for the strategies' files, and
        return every path, as written: ``results.json`` first."""
        several = len(result.results) > 1
        total = len(self.written) + 1 + several
        with ProgressBar("writing files", total, self.progress, unit="file") as bar:
            written = [write_results(result, self.out), *self.written]
            self.done += 1
            if several:
                self.plots.compare(result, self.out / "compare.png")
                written.append(self.out / "compare.png")
                self.done += 1
            bar.update(self.done)
            while self._children:
                self._wait(next(iter(self._children)))
                bar.update(self.done)
        return written

    # the collector pauses: what is written makes many objects and no cycles worth
    # collecting (it would walk the whole record, again and again)
    def _trace(self, result: StrategyResult, path: Path) -> None:
        with collector_paused():
            chrome.write_file(result.trace, path, self.every_device)

    def _charts(self, result: StrategyResult, gantt: Path, memory: Path) -> None:
        with collector_paused():
            self.plots.gantt(result, gantt)
            self.plots.memory(result, memory)

    def _first_done(self) -> int:
        """The first of the children to finish. A child's pipe reads at its end (it
        writes there only a failure's report, then exits), so this waits on the pipes:
        only this writer's children, none the caller has."""
        pipes = {pipe: pid for pid, (pipe, *_) in self._children.items()}
        ready, _, _ = select.select(list(pipes), [], [])
        return pipes[ready[0]]

    def _wait(self, pid: int) -> None:
        """Collect child ``pid``, waiting for it."""
        pipe, name, files = self._children.pop(pid)
        _, status = os.waitpid(pid, 0)
        with os.fdopen(pipe, "rb") as f:
            report = f.read().decode(errors="replace")
        if status != 0:
            raise RuntimeError(f"writing the files of strategy {name!r} failed:\n{report}")
        self.done += files

    def __enter__(self) -> FileWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        """On an error (or Ctrl-C) the children stop too; none is left behind."""
        for pid, (pipe, *_) in list(self._children.items()):
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
            os.close(pipe)
        self._children.clear()


def write_outputs(
    result: ScenarioResult,
    out_dir: str | Path,
    every_device: bool = False,
    progress: bool = False,
    workers: int | None = None,
) -> list[Path]:
    """Write ``results.json``, per strategy a Chrome trace (one process per device with
    ``every_device``), a Gantt chart and a memory plot, and ``compare.png`` when there
    are several strategies (:class:`FileWriter`). Returns the paths, as written."""
    with FileWriter(out_dir, every_device, progress, workers) as files:
        for r in result.results:
            files.add(r)
        return files.finish(result)


def describe(paths: list[Path]) -> str:
    """The kinds of files among ``paths`` (written by :func:`write_outputs`), in order,
    a shell pattern for each strategy's: ``results.json, *.trace.json.gz, *.gantt.png,
    *.memory.png, compare.png``."""
    kinds: dict[str, None] = {}
    for p in paths:
        if p.name in ("results.json", "compare.png"):
            kinds[p.name] = None
        else:
            kinds["*" + next(s for s in SUFFIXES if p.name.endswith(s))] = None
    return ", ".join(kinds)
