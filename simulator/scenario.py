"""Scenario files (TOML, version 1) -> cluster, model, training and strategies.

A scenario names a cluster, a model, the training settings and one or more
strategies to compare (the README documents every key). Mistakes are reported
as one :class:`~simulator.errors.ScenarioError` line that names the file, the
table, the key and what is allowed; unknown keys suggest the closest known one.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import ScenarioError
from .hardware import DTYPE_BYTES, GB, TFLOPS, US, ClusterSpec, GiB, preset
from .nn.models import model_kinds
from .parallel.strategy import Strategy
from .training import COLLECTIVE_DETAILS, TrainingConfig

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Key:
    """One allowed key: its type, an optional check and what it means."""

    kind: type | tuple[type, ...]
    doc: str
    check: Callable[[Any], bool] | None = None
    expect: str = ""
    choices: tuple[Any, ...] | None = None


def _positive(v: Any) -> bool:
    return v > 0


def _non_negative(v: Any) -> bool:
    return v >= 0


def _fraction(v: Any) -> bool:
    return 0 < v <= 1


POS_INT = {"check": _positive, "expect": "a positive integer"}
POS = {"check": _positive, "expect": "a positive number (inf allowed)"}
NON_NEG = {"check": _non_negative, "expect": "a number >= 0"}
FRACTION = {"check": _fraction, "expect": "a number in (0, 1]"}

TOP = {
    "version": Key(int, "scenario format version; 1", choices=(SCHEMA_VERSION,)),
    "name": Key(str, "the scenario's name (used in reports)"),
    "seed": Key(
        int, "seeds weights, data and dropout", check=_non_negative, expect="an integer >= 0"
    ),
    "cluster": Key(dict, "the hardware"),
    "model": Key(dict, "what to train"),
    "training": Key(dict, "how to train"),
    "strategy": Key(list, "the strategies to compare ([[strategy]] tables)"),
}
CLUSTER = {
    "preset": Key(str, "a hardware preset (see `python -m simulator presets`)"),
    "nodes": Key(int, "number of nodes", **POS_INT),
    "devices_per_node": Key(int, "devices in each node", **POS_INT),
    "device": Key(dict, "overrides of the device's datasheet figures"),
    "intra_node": Key(dict, "overrides of the links inside a node"),
    "inter_node": Key(dict, "overrides of the links between nodes"),
}
DEVICE = {
    "peak_tflops": Key((int, float), "dense peak TFLOP/s for every dtype", **POS),
    **{
        f"peak_tflops_{d}": Key((int, float), f"dense peak TFLOP/s in {d}", **POS)
        for d in DTYPE_BYTES
    },
    "memory_gib": Key((int, float), "memory capacity, GiB", **POS),
    "memory_bandwidth_gbs": Key((int, float), "memory bandwidth, GB/s", **POS),
    "launch_us": Key((int, float), "overhead added to every kernel, microseconds", **NON_NEG),
    "gemm_efficiency": Key((int, float), "achievable fraction of peak for GEMMs", **FRACTION),
    "elementwise_efficiency": Key(
        (int, float), "achievable fraction for elementwise ops", **FRACTION
    ),
    "normalization_efficiency": Key(
        (int, float), "achievable fraction for softmax/layernorm", **FRACTION
    ),
}
LINK = {
    "bandwidth_gbs": Key((int, float), "bandwidth per direction, GB/s", **POS),
    "latency_us": Key((int, float), "latency per message, microseconds", **NON_NEG),
    "efficiency": Key((int, float), "achievable fraction of the bandwidth", **FRACTION),
}
TRAINING = {
    "numerics": Key(bool, "run the real math (true) or shapes only (false)"),
    "global_batch": Key(int, "samples (sequences) per step over all replicas", **POS_INT),
    "steps": Key(int, "training steps to simulate", **POS_INT),
    "optimizer": Key(str, "optimizer", choices=("sgd", "adam")),
    "lr": Key((int, float), "learning rate", **POS),
    "collective_detail": Key(
        str, "time collectives message by message or as one block", choices=COLLECTIVE_DETAILS
    ),
}
STRATEGY = {
    "name": Key(str, "a unique name (also names the output files)"),
    "dp": Key(int, "data-parallel replicas", **POS_INT),
    "tp": Key(int, "tensor-parallel group size", **POS_INT),
    "pp": Key(int, "pipeline stages (ranks)", **POS_INT),
    "microbatches": Key(int, "micro-batches per replica per step", **POS_INT),
    "schedule": Key(str, "pipeline schedule name, or file:PATH.csv"),
    "chunks": Key(int, "model chunks per pipeline rank (interleaved, V-shape)", **POS_INT),
    "partition": Key(str, "how blocks are split into stages", choices=("balanced", "uniform")),
    "data_parallel": Key(str, "data-parallel flavour", choices=("ddp", "replicated")),
    "allreduce_algorithm": Key(
        str,
        "gradient all-reduce algorithm",
        choices=("ring", "tree", "naive", "recursive", "hierarchical"),
    ),
    "bucket_mb": Key((int, float), "DDP gradient bucket size in MB; 0 = one all-reduce", **NON_NEG),
    "zero": Key(int, "ZeRO stage", choices=(0, 1, 2, 3)),
    "grad_reduction": Key(str, "average or add the replicas' gradients", choices=("mean", "sum")),
    "recompute": Key(str, "activation recomputation", choices=("none", "full", "selective")),
    "sequence_parallel": Key(bool, "split layer norm and dropout along the sequence (tp > 1)"),
    "order": Key(str, "rank order of the mesh axes, fastest first, e.g. tp-dp-pp"),
    "pp_scatter_gather": Key(bool, "send 1/tp of each activation and all-gather it"),
}


@dataclass
class Scenario:
    """A parsed scenario file."""

    name: str
    cluster: ClusterSpec
    model: Any
    training: TrainingConfig
    strategies: list[Strategy]
    base_dir: Path = field(default_factory=Path.cwd)


class _Reader:
    """Checks tables against a schema, with the file name in every message."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, message: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {message}")

    def table(self, data: Any, where: str, schema: dict[str, Key]) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(f"{where} must be a table")
        for key, value in data.items():
            if key not in schema:
                close = difflib.get_close_matches(key, schema, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.fail(
                    f"unknown key {key!r} in {where}{hint}; allowed: {', '.join(schema)}"
                )
            self.value(value, f"{where} {key}", schema[key])
        return data

    def value(self, value: Any, where: str, key: Key) -> None:
        kinds = key.kind if isinstance(key.kind, tuple) else (key.kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            names = " or ".join(_type_name(k) for k in kinds)
            raise self.fail(f"{where} must be {names}, got {_show(value)}")
        if isinstance(value, float) and math.isnan(value):
            raise self.fail(f"{where} must be a number, got nan")
        if key.choices is not None and value not in key.choices:
            raise self.fail(
                f"{where} must be one of {', '.join(map(repr, key.choices))}, got {_show(value)}"
            )
        if key.check is not None and not key.check(value):
            raise self.fail(f"{where} must be {key.expect}, got {_show(value)}")


def _type_name(kind: type) -> str:
    return {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true or false",
        dict: "a table",
        list: "a list",
    }.get(kind, kind.__name__)


def _show(value: Any) -> str:
    return repr(value) if not isinstance(value, dict) else "a table"


def _cluster(r: _Reader, data: dict[str, Any]) -> ClusterSpec:
    r.table(data, "[cluster]", CLUSTER)
    spec = preset(data.get("preset", "toy"), data.get("nodes"))
    if "devices_per_node" in data:
        spec = replace(spec, devices_per_node=data["devices_per_node"])
    dev = r.table(data.get("device", {}), "[cluster.device]", DEVICE)
    peaks = dict(spec.device.peak_flops)
    if "peak_tflops" in dev:
        peaks = dict.fromkeys(peaks, dev["peak_tflops"] * TFLOPS)
    for d in DTYPE_BYTES:
        if f"peak_tflops_{d}" in dev:
            peaks[d] = dev[f"peak_tflops_{d}"] * TFLOPS
    eff = dict(spec.device.efficiency)
    for cls in eff:
        eff[cls] = dev.get(f"{cls}_efficiency", eff[cls])
    device = replace(
        spec.device,
        peak_flops=peaks,
        memory_bytes=dev.get("memory_gib", spec.device.memory_bytes / GiB) * GiB,
        memory_bandwidth=dev.get("memory_bandwidth_gbs", spec.device.memory_bandwidth / GB) * GB,
        launch_overhead=dev.get("launch_us", spec.device.launch_overhead / US) * US,
        efficiency=eff,
    )
    links = {}
    for name in ("intra_node", "inter_node"):
        link = getattr(spec, name)
        over = r.table(data.get(name, {}), f"[cluster.{name}]", LINK)
        links[name] = replace(
            link,
            bandwidth=over.get("bandwidth_gbs", link.bandwidth / GB) * GB,
            latency=over.get("latency_us", link.latency / US) * US,
            efficiency=over.get("efficiency", link.efficiency),
        )
    return replace(spec, device=device, **links)


def _model(r: _Reader, data: dict[str, Any]) -> Any:
    if not isinstance(data, dict):
        raise r.fail("[model] must be a table")
    kind = data.get("kind", "mlp")
    if kind not in model_kinds():
        raise r.fail(
            f"[model] kind must be one of {', '.join(map(repr, model_kinds()))}, got {kind!r}"
        )
    cls = model_kinds()[kind]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    schema = {"kind": Key(str, "model kind")}
    for name in fields:
        schema[name] = Key(_runtime_types(hints[name]), name)
    values = r.table(data, "[model]", schema)
    try:
        return cls(**{k: _tuple(v) for k, v in values.items() if k != "kind"})
    except (ValueError, TypeError) as err:
        raise r.fail(f"[model] {err}") from None


def _runtime_types(hint: Any) -> tuple[type, ...]:
    """Python types a TOML value may have for a dataclass field annotation."""
    args = (
        typing.get_args(hint)
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
        else (hint,)
    )
    out: list[type] = []
    for a in args:
        origin = typing.get_origin(a) or a
        if origin in (tuple, list):
            out.append(list)
        elif a is float:
            out += [int, float]
        else:
            out.append(origin)
    return tuple(out)


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _strategies(r: _Reader, data: Any) -> list[Strategy]:
    if not isinstance(data, list) or not data:
        raise r.fail("add at least one [[strategy]] table")
    out, names = [], set()
    for i, table in enumerate(data):
        values = r.table(table, f"[[strategy]] #{i + 1}", STRATEGY)
        name = values.get("name", f"strategy{i + 1}")
        if not re.fullmatch(r"[\w.+-]+", name):
            raise r.fail(
                f"[[strategy]] #{i + 1} name {name!r} may only use letters, digits "
                "and . _ + - (it names output files)"
            )
        if name in names:
            raise r.fail(f"[[strategy]] name {name!r} is used twice; names must be unique")
        names.add(name)
        out.append(Strategy(**{**values, "name": name}))
    return out


def parse_scenario(
    data: dict[str, Any], source: str = "scenario", base_dir: Path | None = None
) -> Scenario:
    """Turn parsed TOML into a :class:`Scenario` (raises ScenarioError)."""
    r = _Reader(source)
    r.table(data, "the top level", TOP)
    training_data = r.table(data.get("training", {}), "[training]", TRAINING)
    seed = data.get("seed", 0)
    training = TrainingConfig(**{k: v for k, v in training_data.items()}, seed=seed)
    if "model" not in data:
        raise r.fail('add a [model] table (kind = "mlp", "gpt" or "abstract")')
    return Scenario(
        name=data.get("name", Path(source).stem),
        cluster=_cluster(r, data.get("cluster", {})),
        model=_model(r, data["model"]),
        training=training,
        strategies=_strategies(r, data.get("strategy")),
        base_dir=base_dir or Path.cwd(),
    )


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ScenarioError(f"scenario file {str(p)!r} does not exist") from None
    except OSError as err:
        raise ScenarioError(f"cannot read scenario file {str(p)!r}: {err.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{p}: invalid TOML: {err}") from None
    return parse_scenario(data, str(p), p.parent)
