"""Scenario files (TOML, version 1) -> cluster, model, training, strategies, faults and limits.

A scenario names a cluster, a model, the training settings and one or more
strategies to compare (the README documents every key). The file is checked
completely before anything is built: every key is known, every value has the
right type and lies in its range (numbers finite unless ``inf`` means
something, lists element by element, strings of bounded length), and the
sizes it asks for stay within :class:`~simulator.limits.Limits`. A mistake is
reported as one :class:`~simulator.errors.ScenarioError` line that names the
file, the table, the key and what is allowed; unknown keys suggest the
closest known one; a size over a limit raises
:class:`~simulator.errors.LimitError`, naming the limit and how to raise it.

The schemas of ``[[strategy]]``, ``[[fault]]``, ``[limits]`` and ``[model]``
are derived from the dataclasses they build (:func:`keys_of`): field names,
types, and the ``doc``, ``range``, ``choices`` and ``check`` of each field's
metadata, whose allowed values come from the registries that implement them
(collective algorithms, schedules, partitions, recomputation modes). Nothing
here repeats them.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .arrays import ITEMSIZE, tree_bytes
from .errors import LimitError, ScenarioError
from .faults import FAULT_KINDS, Fault, check_faults
from .hardware import DTYPE_BYTES, GB, TFLOPS, US, ClusterSpec, GiB, preset
from .limits import Limits, Range
from .nn.models import model_kinds
from .parallel.strategy import FILE_SCHEDULE, Strategy, name_check
from .paths import file_stem, read_text
from .training import COLLECTIVE_DETAILS, TrainingConfig

SCHEMA_VERSION = 1
#: Longest string value (names, presets, paths).
MAX_STRING_CHARS = 1024


@dataclass(frozen=True)
class Key:
    """One allowed key: its TOML types, what it means and which values it allows.

    Attributes:
        kind: Python types the TOML value may have (``list`` for one value per stage).
        doc: what the key means.
        range: the numbers allowed, for a number and for every element of a list.
        choices: the values allowed, or a function returning them (a registry).
        check: ``value -> None`` when allowed, else what is wrong (``must be ..., got ...``).
        items: types of a list's elements.
    """

    kind: tuple[type, ...]
    doc: str
    range: Range | None = None
    choices: tuple[Any, ...] | Callable[[], Iterable[Any]] | None = None
    check: Callable[[Any], str | None] | None = None
    items: tuple[type, ...] = ()

    def allowed(self) -> tuple[Any, ...] | None:
        """The choices, read from their registry now."""
        if self.choices is None:
            return None
        return tuple(self.choices() if callable(self.choices) else self.choices)


def _key(kind: type | tuple[type, ...], doc: str, **rules: Any) -> Key:
    return Key(kind if isinstance(kind, tuple) else (kind,), doc, **rules)


NUMBER = (int, float)
POS_INT = {"range": Range(lo=1, integer=True)}
#: Rates (FLOP/s, bytes/s): from a thousandth of a unit to a billion units, so no
#: time computed from them overflows; ``inf`` where "free" means something.
RATE = {"range": Range(lo=1e-6, hi=1e9)}
RATE_OR_INF = {"range": Range(lo=1e-6, hi=1e9, inf=True)}
#: Durations in microseconds: finite, >= 0, at most 1000 s.
DURATION = {"range": Range(lo=0, hi=1e9)}
#: Achievable fractions of a peak.
FRACTION = {"range": Range(lo=1e-6, hi=1)}

TOP = {
    "version": _key(int, "scenario format version; 1", choices=(SCHEMA_VERSION,)),
    "name": _key(str, "the scenario's name (used in reports)", check=name_check),
    "seed": _key(
        int, "seeds weights, data and dropout", range=Range(lo=0, hi=2**63 - 1, integer=True)
    ),
    "cluster": _key(dict, "the hardware"),
    "model": _key(dict, "what to train"),
    "training": _key(dict, "how to train"),
    "strategy": _key(list, "the strategies to compare ([[strategy]] tables)"),
    "fault": _key(list, "faults to inject ([[fault]] tables)"),
    "limits": _key(dict, "resource limits ([limits] table)"),
}
CLUSTER = {
    "preset": _key(str, "a hardware preset (see `python -m simulator presets`)"),
    "nodes": _key(int, "number of nodes", range=Range(lo=1, hi=1e9, integer=True)),
    "devices_per_node": _key(int, "devices in each node", range=Range(lo=1, hi=1e6, integer=True)),
    "device": _key(dict, "overrides of the device's datasheet figures"),
    "intra_node": _key(dict, "overrides of the links inside a node"),
    "inter_node": _key(dict, "overrides of the links between nodes"),
}
DEVICE = {
    "peak_tflops": _key(NUMBER, "dense peak TFLOP/s for every dtype", **RATE),
    **{f"peak_tflops_{d}": _key(NUMBER, f"dense peak TFLOP/s in {d}", **RATE) for d in DTYPE_BYTES},
    "memory_gib": _key(NUMBER, "memory capacity, GiB", range=Range(lo=1e-9, hi=1e9, inf=True)),
    "memory_bandwidth_gbs": _key(NUMBER, "memory bandwidth, GB/s", **RATE_OR_INF),
    "launch_us": _key(NUMBER, "overhead added to every kernel, microseconds", **DURATION),
    "gemm_efficiency": _key(NUMBER, "achievable fraction of peak for GEMMs", **FRACTION),
    "elementwise_efficiency": _key(NUMBER, "achievable fraction for elementwise ops", **FRACTION),
    "normalization_efficiency": _key(
        NUMBER, "achievable fraction for softmax/layernorm", **FRACTION
    ),
}
LINK = {
    "bandwidth_gbs": _key(NUMBER, "bandwidth per direction, GB/s", **RATE_OR_INF),
    "latency_us": _key(NUMBER, "latency per message, microseconds", **DURATION),
    "efficiency": _key(NUMBER, "achievable fraction of the bandwidth", **FRACTION),
}
TRAINING = {
    "numerics": _key(bool, "run the real math (true) or shapes only (false)"),
    "global_batch": _key(
        int,
        "samples (sequences) per step over all replicas",
        range=Range(lo=1, hi=2**40, integer=True),
    ),
    "steps": _key(int, "training steps to simulate", **POS_INT),
    "optimizer": _key(str, "optimizer", choices=("sgd", "adam")),
    "lr": _key(NUMBER, "learning rate", range=Range(lo=0, lo_open=True)),
    "collective_detail": _key(
        str, "time collectives message by message or as one block", choices=COLLECTIVE_DETAILS
    ),
}


def keys_of(cls: type) -> dict[str, Key]:
    """The schema of a dataclass: one :class:`Key` per field.

    Types come from the annotations (``float`` accepts integers too; a tuple
    or list annotation accepts a TOML list), the rest from each field's
    metadata: ``doc``, ``range`` (default: any finite number, any integer),
    ``choices`` (values or a function returning them), ``check``.
    """
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        kinds, items = _toml_types(hints[f.name])
        numeric = [k for k in (*kinds, *items) if k in (int, float)]
        default_range = None
        if numeric:
            default_range = Range(integer=float not in numeric)
        out[f.name] = Key(
            kinds,
            f.metadata.get("doc", f.name.replace("_", " ")),
            range=f.metadata.get("range", default_range),
            choices=f.metadata.get("choices"),
            check=f.metadata.get("check"),
            items=items,
        )
    return out


def _toml_types(hint: Any) -> tuple[tuple[type, ...], tuple[type, ...]]:
    """TOML value types and list element types for a dataclass field annotation."""
    is_union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    kinds: list[type] = []
    items: list[type] = []
    for a in typing.get_args(hint) if is_union else (hint,):
        origin = typing.get_origin(a) or a
        if origin in (tuple, list):
            kinds.append(list)
            items += [t for arg in typing.get_args(a) if arg is not Ellipsis for t in _scalar(arg)]
        elif a is not type(None):
            kinds += _scalar(a)
    return tuple(dict.fromkeys(kinds)), tuple(dict.fromkeys(items))


def _scalar(t: type) -> list[type]:
    return [int, float] if t is float else [t]


STRATEGY = keys_of(Strategy)
LIMITS = keys_of(Limits)
FAULT_KIND = _key(str, "straggler, slow_link or fail", choices=tuple(FAULT_KINDS))
FAULTS = {kind: {"kind": FAULT_KIND, **keys_of(cls)} for kind, cls in FAULT_KINDS.items()}


@dataclass
class Scenario:
    """A parsed scenario file."""

    name: str
    cluster: ClusterSpec
    model: Any
    training: TrainingConfig
    strategies: list[Strategy]
    base_dir: Path = field(default_factory=Path.cwd)
    limits: Limits = field(default_factory=Limits)
    faults: tuple[Fault, ...] = ()


class _Reader:
    """Checks tables against a schema, with the file name in every message."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, message: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {message}")

    def table(self, data: Any, where: str, schema: Mapping[str, Key]) -> dict[str, Any]:
        """Check the table ``data`` (``where`` names it; "" for the top level)."""
        if not isinstance(data, dict):
            raise self.fail(f"{where} must be a table, got {_show(data)}")
        for key, value in data.items():
            if key not in schema:
                close = difflib.get_close_matches(key, list(schema), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.fail(
                    f"unknown key {_show(key)} {'in ' + where if where else 'at the top level'}"
                    f"{hint}; allowed: {', '.join(schema)}"
                )
            self.value(value, f"{where} {key}" if where else key, schema[key])
        return data

    def value(self, value: Any, where: str, key: Key) -> None:
        if not key.items:
            self._one(value, where, key, key.kind)
        elif isinstance(value, list):
            # one rule for a number and for every element of a list of them
            for i, x in enumerate(value):
                self._one(x, f"{where}[{i}]", key, key.items)
        else:
            self._one(value, where, key, tuple(k for k in key.kind if k is not list))

    def _one(self, value: Any, where: str, key: Key, kinds: tuple[type, ...]) -> None:
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            raise self.fail(f"{where} must be {_kinds_text(key, kinds)}, got {_show(value)}")
        if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
            raise self.fail(
                f"{where} is {len(value):,} characters long; at most {MAX_STRING_CHARS} allowed"
            )
        allowed = key.allowed()
        if allowed is not None and value not in allowed:
            raise self.fail(
                f"{where} must be one of {', '.join(map(repr, allowed))}, got {_show(value)}"
            )
        if key.check is not None:
            problem = key.check(value)
            if problem:
                raise self.fail(f"{where} {problem}")
        if (
            key.range is not None
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
        ):
            problem = key.range.problem(value)
            if problem:
                raise self.fail(f"{where} {problem}")


def _kinds_text(key: Key, kinds: tuple[type, ...]) -> str:
    """``an integer``, ``a number``, ``a number or a list of numbers`` ..."""
    if kinds != key.kind:  # an element of a list
        return _type_names(kinds)
    if key.items:
        items = _type_names(key.items).replace("an integer", "integers")
        items = items.replace("a number", "numbers")
        return f"{_type_names(tuple(k for k in kinds if k is not list))} or a list of {items}"
    return _type_names(kinds)


def _type_names(kinds: tuple[type, ...]) -> str:
    if int in kinds and float in kinds:
        kinds = tuple(k for k in kinds if k is not int)
    names = {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true or false",
        dict: "a table",
        list: "a list",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _show(value: Any) -> str:
    """A value for a one-line message: tables and lists summarised, long text cut."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _limits(r: _Reader, data: Any, override: Mapping[str, int] | None) -> Limits:
    values = r.table(data, "[limits]", LIMITS)
    return Limits(**{**values, **(override or {})})


def _cluster(r: _Reader, data: Any) -> ClusterSpec:
    r.table(data, "[cluster]", CLUSTER)
    try:
        spec = preset(data.get("preset", "toy"), data.get("nodes"))
    except ScenarioError as err:
        raise r.fail(f"[cluster] {err}") from None
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


def _model(r: _Reader, data: Any) -> Any:
    kinds = model_kinds()
    if not isinstance(data, dict):
        raise r.fail(f"[model] must be a table, got {_show(data)}")
    kind_key = _key(str, "model kind", choices=tuple(kinds))
    kind = data.get("kind", "mlp")
    r.value(kind, "[model] kind", kind_key)
    cls = kinds[kind]
    values = r.table(data, "[model]", {"kind": kind_key, **keys_of(cls)})
    try:
        return cls(**{k: _tuple(v) for k, v in values.items() if k != "kind"})
    except (ValueError, TypeError, ScenarioError) as err:
        raise r.fail(f"[model] {err}") from None


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _strategies(r: _Reader, data: Any) -> list[Strategy]:
    if not isinstance(data, list) or not data:
        raise r.fail("add at least one [[strategy]] table")
    out: list[Strategy] = []
    stems: dict[str, str] = {}
    for i, table in enumerate(data):
        values = r.table(table, f"[[strategy]] #{i + 1}", STRATEGY)
        name = values.get("name", f"strategy{i + 1}")
        stem = file_stem(name).lower()
        if stem in stems:
            other = stems[stem]
            raise r.fail(
                f"[[strategy]] name {name!r} is used twice; names must be unique"
                if other == name
                else f"[[strategy]] names {other!r} and {name!r} differ only in case; their "
                "output files would overwrite each other on case-insensitive file systems"
            )
        stems[stem] = name
        out.append(Strategy(**{**values, "name": name}))
    return out


def _faults(r: _Reader, data: Any, cluster: ClusterSpec) -> tuple[Fault, ...]:
    if not isinstance(data, list):
        raise r.fail(f"fault must be a list of [[fault]] tables, got {_show(data)}")
    out = []
    for i, table in enumerate(data):
        where = f"[[fault]] #{i + 1}"
        if not isinstance(table, dict):
            raise r.fail(f"{where} must be a table, got {_show(table)}")
        if "kind" not in table:
            raise r.fail(f"{where} needs kind = one of {', '.join(map(repr, FAULT_KINDS))}")
        r.value(table["kind"], f"{where} kind", FAULT_KIND)
        kind = table["kind"]
        values = r.table(table, f"{where} ({kind})", FAULTS[kind])
        args = {k: v for k, v in values.items() if k != "kind"}
        missing = [
            f.name
            for f in dataclasses.fields(FAULT_KINDS[kind])
            if f.name not in args
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise r.fail(f"{where} ({kind}) needs {' and '.join(missing)}")
        try:
            out.append(FAULT_KINDS[kind](**args))
        except ScenarioError as err:
            raise r.fail(f"{where}: {err}") from None
    try:
        check_faults(out, cluster.num_devices, cluster.nodes)
    except ScenarioError as err:
        raise r.fail(str(err)) from None
    return tuple(out)


def _num_blocks(model: Any) -> int:
    """Pipeline blocks of a model config, without building it."""
    # GPT and abstract configs count their blocks; an MLP has one per layer
    return model.num_blocks if hasattr(model, "num_blocks") else model.layers


def _check_sizes(r: _Reader, scenario: Scenario) -> None:
    """The cheap arithmetic checks, before any model, schedule or plan is built."""
    limits, training = scenario.limits, scenario.training
    limits.check("max_steps", training.steps, f"{r.source}: [training] steps")
    blocks = _num_blocks(scenario.model)
    limits.check("max_blocks", blocks, f"{r.source}: the model's pipeline blocks")
    for s in scenario.strategies:
        where = f"{r.source}: [[strategy]] {s.name!r}"
        limits.check("max_microbatches", s.microbatches, f"{where} microbatches")
        limits.check("max_devices", s.num_devices, f"{where} dp*tp*pp")
        limits.check("max_stages", s.num_stages, f"{where} pp*chunks")
        # every step runs at least a forward and a backward of every micro-batch on
        # every stage, each at least one event: a lower bound of the run's events
        limits.check(
            "max_events",
            2 * training.steps * s.num_stages * s.microbatches,
            f"{where} 2*steps*pp*chunks*microbatches (fewest events the run needs)",
        )


def _check_schedule_files(r: _Reader, scenario: Scenario) -> None:
    """Schedule files exist, are regular files within the size limit, and are UTF-8."""
    for s in scenario.strategies:
        if s.schedule.startswith(FILE_SCHEDULE):
            path = Path(s.schedule[len(FILE_SCHEDULE) :])
            if not path.is_absolute():
                path = scenario.base_dir / path
            try:
                read_text(path, "schedule file", scenario.limits, ScenarioError)
            except LimitError as err:
                raise LimitError(f"{r.source}: [[strategy]] {s.name!r}: {err}") from None
            except ScenarioError as err:
                raise r.fail(f"[[strategy]] {s.name!r} schedule: {err}") from None


def numerics_bytes(model: Any, training: TrainingConfig, strategies: list[Strategy]) -> int:
    """Host memory the real arrays of a numerics run need, at least (an estimate).

    Every strategy's plan holds ``dp`` copies of the parameters (tensor and
    pipeline parallelism split a copy, they do not add one), each with its
    gradients and, for Adam, two moments (Kingma & Ba 2015, Algorithm 1);
    all plans are built before the first one runs. On top comes what one
    forward pass of the global batch stashes for the backward, measured by
    running the model's blocks on shape-only arrays.
    """
    built = model.build(training.seed, shape_only=True)
    per_copy = built.num_parameters * ITEMSIZE[built.dtype]
    moments = 2 if training.optimizer == "adam" else 0
    parameters = per_copy * (2 + moments) * sum(s.dp for s in strategies)
    x, _ = model.batch(training.seed, 0, training.global_batch, shape_only=True)
    seen: set[int] = set()
    stash = 0
    for block in built.blocks:
        x, ctx = block.forward(x)
        stash += tree_bytes(ctx, seen)
    return parameters + stash


def parse_scenario(
    data: dict[str, Any],
    source: str = "scenario",
    base_dir: Path | None = None,
    limits: Mapping[str, int] | None = None,
) -> Scenario:
    """Turn parsed TOML into a :class:`Scenario` (raises ScenarioError or LimitError).

    ``limits`` overrides the file's ``[limits]`` table (the command line's
    ``--max-...`` flags).
    """
    r = _Reader(source)
    r.table(data, "", TOP)
    scenario_limits = _limits(r, data.get("limits", {}), limits)
    training_data = r.table(data.get("training", {}), "[training]", TRAINING)
    training = TrainingConfig(**training_data, seed=data.get("seed", 0))
    if "model" not in data:
        raise r.fail('add a [model] table (kind = "mlp", "gpt" or "abstract")')
    cluster = _cluster(r, data.get("cluster", {}))
    scenario = Scenario(
        name=data.get("name", Path(source).stem),
        cluster=cluster,
        model=_model(r, data["model"]),
        training=training,
        strategies=_strategies(r, data.get("strategy")),
        base_dir=base_dir or Path.cwd(),
        limits=scenario_limits,
        faults=_faults(r, data.get("fault", []), cluster),
    )
    _check_sizes(r, scenario)
    _check_schedule_files(r, scenario)
    if training.numerics:
        need = numerics_bytes(scenario.model, training, scenario.strategies)
        scenario_limits.check(
            "max_numerics_bytes",
            need,
            f"{source}: the estimated host memory of the numerics arrays (bytes)",
        )
    return scenario


def load_scenario(path: str | Path, limits: Mapping[str, int] | None = None) -> Scenario:
    """Read and check a scenario file (UTF-8, at most ``max_file_bytes``).

    ``limits`` overrides the file's ``[limits]`` table, e.g. with the command
    line's ``--max-...`` flags; it also bounds the size of the file itself,
    which the file's own table cannot.
    """
    p = Path(path)
    text = read_text(p, "scenario file", Limits(**(limits or {})), ScenarioError, table=False)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{p}: invalid TOML: {err}") from None
    return parse_scenario(data, str(p), p.parent, limits)
