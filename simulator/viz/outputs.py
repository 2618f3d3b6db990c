"""The files a run leaves: ``results.json``, and per strategy a Gantt chart, a
Chrome trace and a memory plot, plus ``compare.png``.

``results.json`` is strict JSON: a number that is not finite is written as
``null``. The Chrome trace has one process per group of devices the run
simulated as one (:mod:`simulator.engine.chrome`), or, with ``every_device``,
one per device; one of more than :data:`GZIP_EVENTS` events is written
gzip-compressed (``.trace.json.gz``, which Perfetto opens as it is).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..engine import chrome
from ..experiment.progress import ProgressBar
from ..experiment.runner import ScenarioResult, StrategyResult
from ..scenario.paths import file_stem

#: Traces with more events than this are written gzip-compressed.
GZIP_EVENTS = 200_000


def trace_path(out: Path, stem: str, result: StrategyResult, every_device: bool = False) -> Path:
    """Where a strategy's Chrome trace goes: gzip-compressed when it is large."""
    large = chrome.count(result.trace, every_device) > GZIP_EVENTS
    return out / f"{stem}{'.trace.json.gz' if large else '.trace.json'}"


def write_results(result: ScenarioResult, out_dir: str | Path) -> Path:
    """Write ``results.json`` (strict JSON) into ``out_dir``; returns its path."""
    path = Path(out_dir) / "results.json"
    path.write_text(json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n")
    return path


def write_outputs(
    result: ScenarioResult,
    out_dir: str | Path,
    every_device: bool = False,
    progress: bool = False,
) -> list[Path]:
    """Write ``results.json``, per strategy a Chrome trace (one process per device with
    ``every_device``), a Gantt chart and a memory plot, and ``compare.png`` when there
    are several strategies. Returns the paths, as written. ``progress`` shows a bar of
    the files (:class:`~simulator.experiment.progress.ProgressBar`)."""
    from . import plots  # matplotlib is imported only when pictures are drawn

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    several = len(result.results) > 1
    total = 1 + 3 * len(result.results) + several
    with ProgressBar("writing files", total, progress, unit="file") as bar:
        written = [write_results(result, out)]
        for r in result.results:
            stem = file_stem(r.name)
            trace = trace_path(out, stem, r, every_device)
            done = len(written)
            chrome.write_file(r.trace, trace, every_device, lambda f, k=done: bar.update(k + f))
            plots.gantt(r, out / f"{stem}.gantt.png")
            bar.update(done + 2)
            plots.memory(r, out / f"{stem}.memory.png")
            written += [trace, out / f"{stem}.gantt.png", out / f"{stem}.memory.png"]
            bar.update(len(written))
        if several:
            plots.compare(result, out / "compare.png")
            written.append(out / "compare.png")
    return written


#: what the name of a strategy's file ends in
SUFFIXES = (".gantt.png", ".memory.png", ".trace.json.gz", ".trace.json")


def describe(paths: list[Path]) -> str:
    """The kinds of files among ``paths`` (written by :func:`write_outputs`), in order,
    a shell pattern for each strategy's: ``results.json, *.gantt.png, *.trace.json.gz,
    *.memory.png, compare.png``."""
    kinds: dict[str, None] = {}
    for p in paths:
        if p.name in ("results.json", "compare.png"):
            kinds[p.name] = None
        else:
            kinds["*" + next(s for s in SUFFIXES if p.name.endswith(s))] = None
    return ", ".join(kinds)
