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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ScenarioError, SimulatorError
from ..hardware import DTYPE_BYTES, GB, PRESETS, TFLOPS, US, ClusterSpec, GiB
from ..keys import plain, show
from ..parallel.strategy import Strategy
from ..parallel.training import TrainingConfig
from ..scenario.limits import Limits
from ..scenario.parse import POS_INT, STRATEGY, Scenario, parse_scenario
from ..scenario.schema import Key, Reader, keys_of
from ..scenario.tomlfile import check_text
from ..scenario.tomlfile import read_toml as read_scenario_toml
from .space import FIXED, LAYOUT_KEYS, SearchSpace


def _one_or_list(key: Key) -> Key:
    """A [plan] key: a list key of :class:`SearchSpace` also takes one value."""
    return dataclasses.replace(key, kind=(*key.items, list)) if key.items else key


#: The [plan] table: the fields of SearchSpace, how many layouts to keep, and the base.
PLAN = {
    "top": Key.of(int, "layouts to print and to write into the best-layouts scenario", **POS_INT),
    **{k: _one_or_list(v) for k, v in keys_of(SearchSpace).items()},
    "base": Key.of(dict, 'strategy keys every layout shares, e.g. {partition = "uniform"}'),
}
BASE = {k: v for k, v in STRATEGY.items() if k not in LAYOUT_KEYS and k != "name"}
SWEEP = {
    "vary": Key.of(dict, 'the values of each key, e.g. {"cluster.nodes" = [8, 16]}'),
    "zip": Key.of(bool, "pair the i-th values of every key instead of taking every combination"),
    "metric": Key.of(str, "the results key the line plot shows (iteration_time_s)"),
}


def read_toml(path: str | Path, limits: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The parsed file (within the limits: :mod:`simulator.scenario.tomlfile`), or a
    one-line error."""
    return read_scenario_toml(path, Limits(**(limits or {})))


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


def load_plan(path: str | Path, limits: Mapping[str, int] | None = None) -> PlanScenario:
    """Read a plan scenario (see the module docstring); ``limits`` override its
    ``[limits]`` table (the command line's ``--max-...`` flags)."""
    data = read_toml(path, limits)
    source = str(path)
    if "strategy" in data:
        raise ScenarioError(
            f"{source}: a plan scenario searches the layouts itself; remove its [[strategy]] "
            "tables (keys every layout shares go into [plan.base])"
        )
    settings, base = plan_settings(data.pop("plan", {}), source)
    top = settings.pop("top", 5)
    scenario = parse_scenario(
        {**data, "strategy": [{**base, "name": "base"}]}, source, Path(path).parent, limits
    )
    try:
        space = SearchSpace(**settings)
    except SimulatorError as err:
        raise ScenarioError(f"{source}: [plan] {err}") from None
    return PlanScenario(scenario, space, scenario.strategies[0], top)


def check_vary(vary: Any, owner: str) -> dict[str, list[Any]]:
    """``vary`` as ``{dotted key: [values]}``: each key a string, each value list non-empty,
    each value a number, a string or a boolean (a table is varied key by key). Raises
    :class:`~simulator.errors.ConfigError` (``owner`` names the file or the function)."""
    if not isinstance(vary, Mapping):
        raise ConfigError(
            f"{owner}: vary must map dotted keys to lists of values, e.g. "
            f'{{"cluster.nodes": [1, 2]}}, got {show(vary)}',
            "vary",
            "a table of lists",
        )
    out = {}
    for key, values in vary.items():
        if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
            raise ConfigError(
                f"{owner}: vary key {show(key)} must be a dotted key such as cluster.nodes",
                "vary",
                "dotted keys",
            )
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            values = [values]
        values = [plain(v) for v in values]
        if not values:
            raise ConfigError(
                f"{owner}: vary {key!r} must list at least one value", "vary", "a non-empty list"
            )
        for v in values:
            if not isinstance(v, int | float | str | bool):
                raise ConfigError(
                    f"{owner}: vary {key!r} takes numbers, strings or booleans, got "
                    f"{show(v)}; to change a table, vary the keys inside it, e.g. "
                    f"{key}.KEY",
                    "vary",
                    "numbers, strings or booleans",
                )
        out[key] = values
    return out


def sweep_settings(table: dict[str, Any], source: str) -> dict[str, Any]:
    """A ``[sweep]`` table, checked."""
    r = Reader(source)
    values = r.table(table, "[sweep]", SWEEP)
    for key, listed in values.get("vary", {}).items():
        if not isinstance(listed, list) or not listed:
            raise r.fail(f"[sweep] vary {key!r} must be a non-empty list of values")
    if "vary" in values:
        values["vary"] = check_vary(values["vary"], f"{source}: [sweep]")
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
        "sms": d.sms,
        "host_us": d.host_overhead / US,
        "jitter": d.jitter,
        "overlap_slowdown": d.overlap_slowdown,
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


def parse_value(text: str, limits: Limits | None = None) -> Any:
    """A command-line value as TOML reads it (``8``, ``2.5``, ``inf``, ``true``),
    or the text itself (``1f1b``); within the limits of a TOML file
    (:func:`~simulator.scenario.tomlfile.check_text`)."""
    text = text.strip()
    if "\n" in text or "\r" in text:
        return text
    check_text(text, "command line", limits or Limits())
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_assignment(text: str, flag: str, limits: Limits | None = None) -> tuple[str, list[Any]]:
    """``KEY=V1,V2`` -> ``("KEY", [V1, V2])`` (values as :func:`parse_value` reads them)."""
    key, sep, values = text.partition("=")
    if not sep or not key.strip() or not values.strip():
        raise ScenarioError(f"{flag} takes KEY=VALUE[,VALUE...], got {text!r}")
    return key.strip(), [parse_value(v, limits) for v in values.split(",")]


def assignments(items: list[str], flag: str, limits: Limits | None = None) -> dict[str, list]:
    """Every ``KEY=V1,V2`` of a repeated flag, as ``{KEY: [V1, V2]}``; a key given twice is
    an error, not a silent override."""
    out: dict[str, list] = {}
    given: dict[str, str] = {}
    for item in items:
        key, values = parse_assignment(item, flag, limits)
        if key in out:
            raise ScenarioError(
                f"{flag} {key} is given twice ({flag} {given[key]!r} and {flag} {item!r}); "
                "give each key once"
            )
        out[key], given[key] = values, item
    return out
