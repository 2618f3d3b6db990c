"""The files a run leaves: ``results.json``, and per strategy a Gantt chart, a
Chrome trace and a memory plot, plus ``compare.png``.

``results.json`` is strict JSON: a number that is not finite is written as
``null``. Traces of more than :data:`GZIP_EVENTS` events are written
gzip-compressed (``.trace.json.gz``, which Perfetto opens as it is), and past
:data:`GROUP_EVENTS` with one process per group of devices in lockstep
instead of one per device.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..experiment.runner import ScenarioResult, StrategyResult
from ..scenario.paths import file_stem

#: Traces with more events than this are written gzip-compressed.
GZIP_EVENTS = 200_000
#: ... and with more than this, with one process per group of devices in lockstep: a
#: large run folds its replicas and works in lockstep groups (a context-parallel run
#: of 64 devices repeats every row 64 times), so the per-device listing repeats the
#: same events and costs most of the run's time to write.
GROUP_EVENTS = 200_000


def _expanded_events(result: StrategyResult) -> int:
    """Events of the trace listed per device."""
    trace = result.trace
    return sum(len(trace.groups[trace.tracks[t][0]]) for t in trace.track)


def trace_path(out: Path, stem: str, result: StrategyResult) -> Path:
    """Where a strategy's Chrome trace goes: gzip-compressed when it is large."""
    suffix = ".trace.json.gz" if _expanded_events(result) > GZIP_EVENTS else ".trace.json"
    return out / f"{stem}{suffix}"


def write_results(result: ScenarioResult, out_dir: str | Path) -> Path:
    """Write ``results.json`` (strict JSON) into ``out_dir``; returns its path."""
    path = Path(out_dir) / "results.json"
    path.write_text(json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n")
    return path


def write_outputs(result: ScenarioResult, out_dir: str | Path) -> list[Path]:
    """Write ``results.json``, per strategy a Gantt chart, a Chrome trace and a memory
    plot, and ``compare.png`` when there are several strategies. Returns the paths."""
    from . import plots  # matplotlib is imported only when pictures are drawn

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [write_results(result, out)]
    for r in result.results:
        stem = file_stem(r.name)
        trace = trace_path(out, stem, r)
        r.trace.write_chrome(trace, by_group=_expanded_events(r) > GROUP_EVENTS)
        plots.gantt(r, out / f"{stem}.gantt.png")
        plots.memory(r, out / f"{stem}.memory.png")
        written += [out / f"{stem}.gantt.png", trace, out / f"{stem}.memory.png"]
    if len(result.results) > 1:
        plots.compare(result, out / "compare.png")
        written.append(out / "compare.png")
    return written
