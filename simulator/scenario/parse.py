"""Scenario files (TOML, version 1) -> cluster, model, training, strategies, faults and limits.

A scenario names a cluster, a model, the training settings and one or more
strategies to compare (docs/scenarios.md documents every key). The file is checked
completely before anything is built: every key is known, every value has the
right type and lies in its range (numbers finite unless ``inf`` means
something, lists element by element, strings of bounded length), and the
sizes it asks for stay within :class:`~simulator.scenario.limits.Limits`. A mistake is
reported as one :class:`~simulator.errors.ScenarioError` line that names the
file, the table, the key and what is allowed; unknown keys suggest the
closest known one; a size over a limit raises
:class:`~simulator.errors.LimitError`, naming the limit and how to raise it.

The schemas of ``[[strategy]]``, ``[[fault]]``, ``[limits]`` and ``[model]``
are derived from the dataclasses they build
(:func:`simulator.scenario.schema.keys_of`): field names, types, and the
``doc``, ``range``, ``choices`` and ``check`` of each field's metadata,
whose allowed values come from the registries that implement them
(collective algorithms, schedules, partitions, recomputation modes). Nothing
here repeats them. The ``[cluster]`` table, with its nodes of several kinds,
is read by :mod:`simulator.scenario.cluster_table`.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LimitError, ScenarioError
from ..hardware import ClusterSpec
from ..hardware.faults import FAULT_KINDS, Fault, check_faults
from ..nn.models import model_kinds
from ..nn.named import NAMED_MODELS
from ..ops.arrays import ITEMSIZE, tree_bytes
from ..parallel.pipeline import Schedule
from ..parallel.strategy import Strategy, name_check
from ..parallel.training import COLLECTIVE_DETAILS, TrainingConfig
from ..ranges import Range

# the [cluster] schemas stay importable from here, beside the others
from .cluster_table import CLUSTER as CLUSTER
from .cluster_table import DEVICE as DEVICE
from .cluster_table import LINK as LINK
from .cluster_table import NODE as NODE
from .cluster_table import NUMBER, read_cluster
from .limits import Limits
from .paths import file_stem, read_text
from .schedule_file import load_csv, schedule_path
from .schema import Key, Reader, keys_of, show

SCHEMA_VERSION = 1


POS_INT = {"range": Range(lo=1, integer=True)}

TOP = {
    "version": Key.of(int, "scenario format version; 1", choices=(SCHEMA_VERSION,)),
    "name": Key.of(str, "the scenario's name (used in reports)", check=name_check),
    "seed": Key.of(
        int, "seeds weights, data and dropout", range=Range(lo=0, hi=2**63 - 1, integer=True)
    ),
    "cluster": Key.of(dict, "the hardware"),
    "model": Key.of(dict, "what to train"),
    "training": Key.of(dict, "how to train"),
    "strategy": Key.of(list, "the strategies to compare ([[strategy]] tables)"),
    "fault": Key.of(list, "faults to inject ([[fault]] tables)"),
    "limits": Key.of(dict, "resource limits ([limits] table)"),
}
TRAINING = {
    "numerics": Key.of(bool, "run the real math (true) or shapes only (false)"),
    "global_batch": Key.of(
        int,
        "samples (sequences) per step over all replicas",
        range=Range(lo=1, hi=2**40, integer=True),
    ),
    "steps": Key.of(int, "training steps to simulate", **POS_INT),
    "optimizer": Key.of(str, "optimizer", choices=("sgd", "adam")),
    "lr": Key.of(NUMBER, "learning rate", range=Range(lo=0, lo_open=True)),
    "collective_detail": Key.of(
        str, "time collectives message by message or as one block", choices=COLLECTIVE_DETAILS
    ),
    "fold_replicas": Key.of(bool, "simulate identical data-parallel replicas once (exact)"),
}


STRATEGY = keys_of(Strategy)
LIMITS = keys_of(Limits)
FAULT_KIND = Key.of(str, "straggler, slow_link or fail", choices=tuple(FAULT_KINDS))
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
    #: the parsed schedule file of every strategy that names one, by strategy name
    schedules: dict[str, Schedule] = field(default_factory=dict)


def _limits(r: Reader, data: Any, override: Mapping[str, int] | None) -> Limits:
    values = r.table(data, "[limits]", LIMITS)
    return Limits(**{**values, **(override or {})})


#: ``[model] name``: a named model (:mod:`simulator.nn.named`), its keys overridable.
MODEL_NAME = Key.of(str, "a named model (python -m simulator models)", choices=lambda: NAMED_MODELS)


def _model(r: Reader, data: Any) -> Any:
    """The ``[model]`` table: a ``kind`` and its keys, or a ``name`` whose keys the
    table's other keys override (``name = "llama3-70b"`` with ``layers = 2``)."""
    kinds = model_kinds()
    if not isinstance(data, dict):
        raise r.fail(f"[model] must be a table, got {show(data)}")
    kind_key = Key.of(str, "model kind", choices=tuple(kinds))
    named = None
    if "name" in data:
        r.value(data["name"], "[model] name", MODEL_NAME)
        named = NAMED_MODELS[data["name"]].config
    kind = data.get("kind", named.kind if named is not None else "mlp")
    r.value(kind, "[model] kind", kind_key)
    if named is not None and kind != named.kind:
        raise r.fail(
            f"[model] name = {data['name']!r} is a {named.kind!r} model, but kind = {kind!r}; "
            "drop kind or make them agree"
        )
    cls = kinds[kind]
    schema = {"kind": kind_key, **({"name": MODEL_NAME} if named else {}), **keys_of(cls)}
    values = r.table(data, "[model]", schema)
    fields = {k: _tuple(v) for k, v in values.items() if k not in ("kind", "name")}
    try:
        return dataclasses.replace(named, **fields) if named is not None else cls(**fields)
    except (ValueError, TypeError, ScenarioError) as err:
        raise r.fail(f"[model] {err}") from None


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _strategies(r: Reader, data: Any) -> list[Strategy]:
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


def _faults(r: Reader, data: Any, cluster: ClusterSpec) -> tuple[Fault, ...]:
    if not isinstance(data, list):
        raise r.fail(f"fault must be a list of [[fault]] tables, got {show(data)}")
    out = []
    for i, table in enumerate(data):
        where = f"[[fault]] #{i + 1}"
        if not isinstance(table, dict):
            raise r.fail(f"{where} must be a table, got {show(table)}")
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


def _check_sizes(r: Reader, scenario: Scenario) -> None:
    """The cheap arithmetic checks, before any model, schedule or plan is built."""
    limits, training = scenario.limits, scenario.training
    limits.check("max_steps", training.steps, f"{r.source}: [training] steps")
    blocks = scenario.model.num_blocks
    limits.check("max_blocks", blocks, f"{r.source}: the model's pipeline blocks")
    for s in scenario.strategies:
        where = f"{r.source}: [[strategy]] {s.name!r}"
        limits.check("max_microbatches", s.microbatches, f"{where} microbatches")
        limits.check("max_devices", s.num_devices, f"{where} {'*'.join(s.axes)}")
        limits.check("max_stages", s.num_stages, f"{where} pp*chunks")
        # every step runs at least a forward and a backward of every micro-batch on
        # every stage, each at least one event: a lower bound of the run's events
        limits.check(
            "max_events",
            2 * training.steps * s.num_stages * s.microbatches,
            f"{where} 2*steps*pp*chunks*microbatches (fewest events the run needs)",
        )


def _read_schedule_files(r: Reader, scenario: Scenario) -> None:
    """Read and parse every schedule file (regular UTF-8 files within the size limit)."""
    for s in scenario.strategies:
        path = schedule_path(s, scenario.base_dir)
        if path is None:
            continue
        try:
            read_text(path, "schedule file", scenario.limits, ScenarioError)
        except LimitError as err:
            raise LimitError(f"{r.source}: [[strategy]] {s.name!r}: {err}") from None
        except ScenarioError as err:
            raise r.fail(f"[[strategy]] {s.name!r} schedule: {err}") from None
        scenario.schedules[s.name] = load_csv(path, scenario.limits)


def numerics_bytes(model: Any, training: TrainingConfig, strategies: list[Strategy]) -> int:
    """Host memory the real arrays of a numerics run need, at least (an estimate).

    Every strategy's plan holds ``dp`` copies of the parameters (tensor and
    pipeline parallelism split a copy, they do not add one), each with its
    gradients and, for Adam, two moments (Kingma & Ba 2015, Algorithm 1);
    all plans are built before the first one runs. On top comes what one
    forward pass of the global batch stashes for the backward, measured by
    running the model's blocks on shape-only arrays.
    """
    built = model.build(training.seed, numerics=False)
    per_copy = built.num_parameters * ITEMSIZE[built.dtype]
    moments = 2 if training.optimizer == "adam" else 0
    parameters = per_copy * (2 + moments) * sum(s.dp for s in strategies)
    x, _ = model.batch(training.seed, 0, training.global_batch, numerics=False)
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
    r = Reader(source)
    r.table(data, "", TOP)
    scenario_limits = _limits(r, data.get("limits", {}), limits)
    training_data = r.table(data.get("training", {}), "[training]", TRAINING)
    training = TrainingConfig(**training_data, seed=data.get("seed", 0))
    if "model" not in data:
        raise r.fail(
            'add a [model] table (kind = "mlp", "gpt", "llama" or "abstract", or name = a '
            "named model)"
        )
    cluster = read_cluster(r, data.get("cluster", {}))
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
    _read_schedule_files(r, scenario)
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
