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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LimitError, ScenarioError
from ..hardware import ClusterSpec
from ..hardware.faults import FAULT_KINDS, Fault, check_faults
from ..keys import check_instance
from ..nn.models import model_kinds
from ..nn.named import NAMED_MODELS
from ..parallel.pipeline import Schedule
from ..parallel.strategy import Strategy, name_check
from ..parallel.training import TrainingConfig
from ..ranges import Range

# the [cluster] schemas stay importable from here, beside the others
from .cluster_table import CLUSTER as CLUSTER
from .cluster_table import DEVICE as DEVICE
from .cluster_table import LINK as LINK
from .cluster_table import NODE as NODE
from .cluster_table import read_cluster
from .limits import Limits, table_limits
from .paths import file_stem, read_text
from .schedule_file import load_csv, schedule_path
from .schema import Key, Reader, keys_of, show
from .sizes import check_sizes
from .sizes import numerics_bytes as numerics_bytes
from .tomlfile import read_toml

SCHEMA_VERSION = 1


POS_INT = {"range": Range(lo=1, integer=True)}

TOP = {
    "version": Key.of(int, "scenario format version; 1", choices=(SCHEMA_VERSION,)),
    "name": Key.of(str, "the scenario's name (used in reports)", check=name_check),
    "seed": keys_of(TrainingConfig)["seed"],
    "cluster": Key.of(dict, "the hardware"),
    "model": Key.of(dict, "what to train"),
    "training": Key.of(dict, "how to train"),
    "strategy": Key.of(list, "the strategies to compare ([[strategy]] tables)"),
    "fault": Key.of(list, "faults to inject ([[fault]] tables)"),
    "limits": Key.of(dict, "resource limits ([limits] table)"),
}
#: the [training] table: the fields of TrainingConfig (its seed is the top-level ``seed``)
TRAINING = {k: v for k, v in keys_of(TrainingConfig).items() if k != "seed"}


STRATEGY = keys_of(Strategy)
LIMITS = {k: v for k, v in keys_of(Limits).items() if k in table_limits()}
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
        # the rules between keys (a rule of one key the reader checked already)
        raise r.fail(f"[model] {str(err).removeprefix(cls.__name__ + ': ')}") from None


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _strategies(r: Reader, data: Any, limits: Limits) -> list[Strategy]:
    if not isinstance(data, list) or not data:
        raise r.fail("add at least one [[strategy]] table")
    limits.check("max_strategies", len(data), f"{r.source}: the [[strategy]] tables")
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
        strategies=_strategies(r, data.get("strategy"), scenario_limits),
        base_dir=base_dir or Path.cwd(),
        limits=scenario_limits,
        faults=_faults(r, data.get("fault", []), cluster),
    )
    check_sizes(scenario_limits, scenario.model, training, scenario.strategies, source)
    _read_schedule_files(r, scenario)
    return scenario


def load_scenario(path: str | Path, limits: Mapping[str, int] | None = None) -> Scenario:
    """Read and check a scenario file (UTF-8, at most ``max_file_bytes``).

    ``limits`` overrides the file's ``[limits]`` table, e.g. with the command
    line's ``--max-...`` flags; it also bounds the size of the file itself,
    which the file's own table cannot.
    """
    check_instance("load_scenario", "path", path, (str, Path))
    p = Path(path)
    data = read_toml(p, Limits(**(limits or {})))
    return parse_scenario(data, str(p), p.parent, limits)
