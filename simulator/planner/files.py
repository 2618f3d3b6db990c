"""Scenario files of the planner: the ``[plan]`` and ``[sweep]`` tables, and
writing a scenario back out as TOML.

A plan scenario is a scenario file (cluster, model, training) whose
``[plan]`` table narrows the search instead of listing strategies; a sweep
scenario is an ordinary scenario plus a ``[sweep]`` table. Both tables are
checked with the scenario reader of :mod:`simulator.scenario.parse`, so mistakes
read the same: one line naming the file, the table, the key and what is
allowed. docs/planner.md documents every key.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ScenarioError, SimulatorError
from ..hardware import DTYPE_BYTES, GB, PRESETS, TFLOPS, US, ClusterSpec, GiB
from ..parallel.strategy import Strategy
from ..parallel.training import TrainingConfig
from ..ranges import Range
from ..scenario.parse import POS_INT, STRATEGY, Scenario, parse_scenario
from ..scenario.schema import Key, Reader
from .space import LAYOUT_KEYS, RECOMPUTE, SearchSpace


def _list_of(kind: type, doc: str, allowed: tuple[Any, ...] | None = None) -> Key:
    """A key that takes one value or a non-empty list of them (``kind`` each)."""
    return Key.of((kind, list), doc, items=(kind,), choices=allowed)


PLAN = {
    "top": Key.of(int, "layouts to print and to write into the best-layouts scenario", **POS_INT),
    "devices": Key.of(int, "dp * tp * pp (default: every device of the cluster)", **POS_INT),
    "max_tp": Key.of(int, "largest tensor-parallel size", **POS_INT),
    "max_pp": Key.of(int, "largest pipeline-parallel size", **POS_INT),
    "max_chunks": Key.of(int, "most chunks per rank for interleaved and zbv", **POS_INT),
    "schedules": _list_of(str, "pipeline schedules to try"),
    "microbatch_sizes": Key.of(
        (int, list), "micro-batch sizes to try", items=(int,), range=Range(lo=1, integer=True)
    ),
    "recompute": _list_of(str, "recomputation settings to try", RECOMPUTE),
    "sequence_parallel": _list_of(bool, "sequence-parallel settings to try"),
    "zero": _list_of(int, "ZeRO stages to try", (0, 1, 2, 3)),
    "orders": _list_of(str, "mesh orders to try, e.g. tp-dp-pp"),
    "ep": Key.of(
        (int, list), "expert-parallel sizes to try", items=(int,), range=Range(lo=1, integer=True)
    ),
    "fixed": Key.of(dict, "layout keys held at one value, e.g. {tp = 8}"),
    "base": Key.of(dict, 'strategy keys every layout shares, e.g. {partition = "uniform"}'),
}
FIXED = {
    **{k: STRATEGY[k] for k in LAYOUT_KEYS},
    "micro_batch_size": Key.of(int, "sequences per micro-batch", **POS_INT),
}
BASE = {k: v for k, v in STRATEGY.items() if k not in LAYOUT_KEYS and k != "name"}
SWEEP = {
    "vary": Key.of(dict, 'the values of each key, e.g. {"cluster.nodes" = [8, 16]}'),
    "zip": Key.of(bool, "pair the i-th values of every key instead of taking every combination"),
    "metric": Key.of(str, "the results key the line plot shows (iteration_time_s)"),
}


def read_toml(path: str | Path) -> dict[str, Any]:
    """The parsed file, or a one-line ScenarioError."""
    p = Path(path)
    try:
        return tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ScenarioError(f"scenario file {str(p)!r} does not exist") from None
    except OSError as err:
        raise ScenarioError(f"cannot read scenario file {str(p)!r}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{p}: invalid TOML: {err}") from None


@dataclass
class PlanScenario:
    """A plan scenario: what to train, where, which layouts to try."""

    scenario: Scenario
    space: SearchSpace
    base: Strategy
    top: int = 5


def plan_settings(
    table: dict[str, Any], source: str, where: str = "[plan]"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A ``[plan]`` table (or the same keys from the command line), checked: the
    search-space fields (and ``top``) and the base strategy keys."""
    r = Reader(source)
    values = dict(r.table(table, where, PLAN))
    r.table(values.get("fixed", {}), "[plan.fixed]", FIXED)
    base = r.table(values.pop("base", {}), "[plan.base]", BASE)
    for key, value in values.items():
        if isinstance(value, list) and not value:
            raise r.fail(f"{where} {key} must list at least one value")
        if PLAN[key].items and not isinstance(value, list):
            values[key] = [value]
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}, base


def load_plan(path: str | Path) -> PlanScenario:
    """Read a plan scenario (see the module docstring)."""
    data = read_toml(path)
    source = str(path)
    if "strategy" in data:
        raise ScenarioError(
            f"{source}: a plan scenario searches the layouts itself; remove its [[strategy]] "
            "tables (keys every layout shares go into [plan.base])"
        )
    settings, base = plan_settings(data.pop("plan", {}), source)
    top = settings.pop("top", 5)
    scenario = parse_scenario(
        {**data, "strategy": [{**base, "name": "base"}]}, source, Path(path).parent
    )
    try:
        space = SearchSpace(**settings)
    except SimulatorError as err:
        raise ScenarioError(f"{source}: [plan] {err}") from None
    return PlanScenario(scenario, space, scenario.strategies[0], top)


def sweep_settings(table: dict[str, Any], source: str) -> dict[str, Any]:
    """A ``[sweep]`` table, checked."""
    r = Reader(source)
    values = r.table(table, "[sweep]", SWEEP)
    for key, listed in values.get("vary", {}).items():
        if not isinstance(listed, list) or not listed:
            raise r.fail(f"[sweep] vary {key!r} must be a non-empty list of values")
    return values


# -- writing a scenario back out ------------------------------------------------------------
def toml_value(v: Any) -> str:
    """A TOML literal for a number, string, boolean or list."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {v!r}")


def _table(name: str, values: dict[str, Any]) -> list[str]:
    return [f"[{name}]", *(f"{k} = {toml_value(v)}" for k, v in values.items()), ""]


def cluster_tables(cluster: ClusterSpec) -> list[str]:
    """``[cluster]`` with every figure written out, so the file stands alone."""
    d = cluster.device
    device = {
        f"peak_tflops_{k}": d.peak_flops[k] / TFLOPS for k in DTYPE_BYTES if k in d.peak_flops
    }
    device |= {
        "memory_gib": d.memory_bytes / GiB,
        "memory_bandwidth_gbs": d.memory_bandwidth / GB,
        "launch_us": d.launch_overhead / US,
        **{f"{cls}_efficiency": eff for cls, eff in d.efficiency.items()},
    }
    lines = _table(
        "cluster",
        {
            "preset": cluster.name if cluster.name in PRESETS else "toy",
            "nodes": cluster.nodes,
            "devices_per_node": cluster.devices_per_node,
        },
    )
    lines += _table("cluster.device", device)
    for name in ("intra_node", "inter_node"):
        link = getattr(cluster, name)
        lines += _table(
            f"cluster.{name}",
            {
                "bandwidth_gbs": link.bandwidth / GB,
                "latency_us": link.latency / US,
                "efficiency": link.efficiency,
            },
        )
    return lines


def scenario_toml(
    name: str,
    cluster: ClusterSpec,
    model: Any,
    training: TrainingConfig,
    strategies: list[Strategy],
    comment: str = "",
) -> str:
    """A scenario file that ``run`` reads back into the same objects."""
    defaults = Strategy()
    lines = [f"# {line}" if line else "#" for line in comment.splitlines()]
    lines += ["version = 1", f"name = {toml_value(name)}", f"seed = {training.seed}", ""]
    lines += cluster_tables(cluster)
    model_keys = {"kind": model.kind}
    model_keys |= {f.name: getattr(model, f.name) for f in dataclasses.fields(model)}
    lines += _table("model", model_keys)
    train = {
        f.name: getattr(training, f.name) for f in dataclasses.fields(training) if f.name != "seed"
    }
    lines += _table("training", train)
    for s in strategies:
        keys = {
            f.name: getattr(s, f.name)
            for f in dataclasses.fields(s)
            if f.name == "name" or getattr(s, f.name) != getattr(defaults, f.name)
        }
        lines += ["[[strategy]]", *(f"{k} = {toml_value(v)}" for k, v in keys.items()), ""]
    return "\n".join(lines)


def parse_value(text: str) -> Any:
    """A command-line value as TOML reads it (``8``, ``2.5``, ``inf``, ``true``),
    or the text itself (``1f1b``)."""
    try:
        return tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()


def parse_assignment(text: str, flag: str) -> tuple[str, list[Any]]:
    """``KEY=V1,V2`` -> ``("KEY", [V1, V2])`` (values as :func:`parse_value` reads them)."""
    key, sep, values = text.partition("=")
    if not sep or not key.strip() or not values.strip():
        raise ScenarioError(f"{flag} takes KEY=VALUE[,VALUE...], got {text!r}")
    return key.strip(), [parse_value(v) for v in values.split(",")]
