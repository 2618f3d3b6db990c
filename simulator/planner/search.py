"""Find the fastest layout of a model on a cluster: enumerate, prune, simulate, rank.

:func:`plan` is ``python -m simulator plan`` as a function:

1. enumerate every distinct layout (:func:`simulator.planner.space.layouts`);
2. reject the invalid ones with the checks ``run`` applies, and the ones
   whose memory estimate is over the device's memory, counting by rule
   (:class:`simulator.planner.prune.Pruner`);
3. simulate the survivors for the scenario's ``steps`` (shape-only unless
   the training says numerics), on local processes or a Dask cluster
   (:func:`simulator.planner.executor.run_tasks`) -- all of them with
   ``exhaustive``, else by branch and bound, checking and simulating only
   what may make the top (:mod:`simulator.planner.branch`);
4. rank them, fastest first (:class:`simulator.planner.results.PlanResult`).

The same checks, the same simulation: a layout the planner proposes is one
``run`` accepts, and it computes what single-device training computes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ScenarioError
from ..experiment.arguments import check_model
from ..hardware import ClusterSpec
from ..keys import check_instance
from ..parallel.strategy import Strategy
from ..parallel.training import TrainingConfig
from ..scenario.limits import Limits, raised
from ..scenario.parse import Scenario
from ..scenario.sizes import check_sizes
from .bound import BOUND_RULE, StepBound
from .branch import ROUND, BranchAndBound, Candidate, Fastest, families
from .executor import Task, check_arguments, default_workers, run_tasks
from .files import load_plan
from .prune import Pruner
from .results import PlanResult, make_row, sort_key
from .space import SearchSpace, layout_groups, layout_name

#: What ``plan``'s first argument may be.
PLAN_FORMS = "give a plan scenario file, a Scenario, or a ClusterSpec with the model and training"


def plan(
    scenario: str | Path | Scenario | ClusterSpec,
    model: Any = None,
    training: TrainingConfig | None = None,
    *,
    top: int | None = None,
    base: Strategy | None = None,
    name: str | None = None,
    workers: int | None = None,
    dask: str | None = None,
    progress: bool = False,
    exhaustive: bool = False,
    limits: Limits | Mapping[str, int] | None = None,
    **space: Any,
) -> PlanResult:
    """Search the layouts of ``model`` on a cluster and simulate those that may fit.

    Args:
        scenario: a plan scenario file (its ``[plan]`` table gives the search
            space), a :class:`~simulator.scenario.parse.Scenario` (its cluster, model
            and training), or a :class:`~simulator.hardware.ClusterSpec` with
            ``model`` and ``training``.
        top: how many layouts ``table()`` and ``best()`` give (default 5).
        base: the strategy keys every layout shares (partition, bucket size...).
        name: names the result (default: the scenario's name, or ``"plan"``).
        workers: local processes (default: one per CPU; 1 runs in this process).
        dask: the address of a Dask scheduler to run on instead.
        progress: show a progress bar on standard error (when it is a terminal).
        exhaustive: simulate every layout that passes the checks and the memory
            estimate. By default the planner simulates them in the order of a lower
            bound on their step time and skips those whose bound is no better than
            the ``top``-th fastest step found (:mod:`simulator.planner.bound`):
            the top ``top`` are the same, the rest of the table is not.
        limits: :class:`~simulator.scenario.limits.Limits`, or the limits to
            raise as ``{"max_devices": N}`` (over a scenario's ``[limits]``).
        **space: fields of :class:`~simulator.planner.space.SearchSpace`, e.g.
            ``max_tp=8``, ``schedules=("1f1b", "interleaved")``,
            ``fixed={"tp": 8}``; they override a scenario's ``[plan]`` table.

    Every argument is checked first (a misuse raises
    :class:`~simulator.errors.ConfigError`), and the devices, chunks and the
    model's sizes against the limits (:class:`~simulator.errors.LimitError`),
    before any layout is enumerated.

    Returns:
        A :class:`~simulator.planner.results.PlanResult`; ``.to_frame()`` is a
        pandas DataFrame of every simulated layout, fastest first.
    """
    args = check_arguments(
        "plan", top=top, name=name, workers=workers, dask=dask, progress=progress,
        exhaustive=exhaustive,
    )  # fmt: skip
    top, name, workers, dask = args["top"], args["name"], args["workers"], args["dask"]
    unknown = set(space) - {f.name for f in dataclasses.fields(SearchSpace)}
    if unknown:
        raise ConfigError(
            f"plan: unknown search option {sorted(unknown)[0]!r}; the options are the fields "
            f"of SearchSpace: {', '.join(f.name for f in dataclasses.fields(SearchSpace))}",
            sorted(unknown)[0],
            "a field of SearchSpace",
        )
    if base is not None:
        check_instance("plan", "base", base, Strategy)
    override = raised("plan", limits)
    search = SearchSpace()
    if isinstance(scenario, str | Path):
        loaded = load_plan(scenario, override)
        cluster, model, training = (
            loaded.scenario.cluster,
            loaded.scenario.model,
            loaded.scenario.training,
        )
        search, base = loaded.space, base or loaded.base
        top, name = top or loaded.top, name or loaded.scenario.name
        found = loaded.scenario.limits
    elif isinstance(scenario, Scenario):
        cluster, model, training = scenario.cluster, scenario.model, scenario.training
        name = name or scenario.name
        found = scenario.limits
    else:
        cluster = check_instance("plan", "scenario", scenario, ClusterSpec, PLAN_FORMS)
        if model is None or training is None:
            raise ConfigError(
                "plan(cluster, model, training): give the model and the training",
                "model" if model is None else "training",
                "a model config and a TrainingConfig",
            )
        found = Limits()
    check_model("plan", model)
    check_instance("plan", "training", training, TrainingConfig)
    limits = dataclasses.replace(found, **override)
    if space:
        fixed = space.pop("fixed", {})
        if isinstance(fixed, Mapping):  # else SearchSpace says what fixed must be
            fixed = {**search.fixed, **fixed}
        search = dataclasses.replace(search, **space, fixed=fixed)
    base = base or Strategy()
    devices = search.devices or cluster.num_devices
    if devices > cluster.num_devices:
        raise ScenarioError(
            f"plan for {devices} devices, but the cluster has {cluster.num_devices}; add nodes "
            "or ask for fewer devices"
        )
    python = not isinstance(scenario, str | Path)
    limits.check("max_devices", devices, "plan: the devices of a layout", python=python)
    limits.check("max_chunks_per_rank", search.max_chunks, "plan: max_chunks", python=python)
    check_sizes(limits, model, training, [], "plan", python=python)

    pruner = Pruner(cluster, model, training)
    groups = layout_groups(
        devices, training.global_batch, search, base, getattr(model, "experts", 0)
    )
    top = top or 5
    run = dict(workers=workers, dask=dask, progress=progress, label="plan")
    if exhaustive:
        survivors = [
            (dataclasses.replace(s, name=layout_name(s)), estimate)
            for s, estimate in pruner.survivors_of_groups(groups)
        ]
        tasks = [Task(cluster, model, training, s) for s, _ in survivors]
        outcome = run_tasks(tasks, **run)
        done = list(zip(survivors, outcome.results, strict=True))
        interrupted, enumerated, pruned = outcome.interrupted, pruner.checked, dict(pruner.pruned)
    else:
        done, interrupted, enumerated, pruned = _branch_and_bound(
            pruner, groups, top, lambda s: Task(cluster, model, training, s), run, devices
        )
    scheduled = sum(1 for _, r in done if r is not None)
    rows = [
        make_row(s, pruner.micro_batch(s), estimate, result)
        for (s, estimate), result in done
        if result is not None
    ]
    rows.sort(key=sort_key)
    return PlanResult(
        name=name or "plan",
        cluster=cluster,
        model=model,
        training=training,
        base=base,
        rows=rows,
        pruned=dict(sorted(pruned.items(), key=lambda kv: (-kv[1], kv[0]))),
        enumerated=enumerated,
        top=top,
        interrupted=interrupted,
        scheduled=scheduled,
        devices=devices,
        strategies={s.name: s for (s, _), r in done if r},
    )


def _branch_and_bound(
    pruner: Pruner,
    groups: Any,
    top: int,
    task: Any,
    run: dict[str, Any],
    devices: int,
) -> tuple[list, bool, int, dict[str, int]]:
    """The search of :mod:`simulator.planner.branch`: simulate, a round at a time, the
    least tight bounds under the ``top``-th fastest step simulated so far, until no
    layout or family left is under it. Returns every simulated layout with its result,
    whether the user interrupted, the layouts enumerated and the rejections by rule."""
    fams = families(groups)
    enumerated = sum(f.layouts for f in fams)
    local = run["workers"] or default_workers()  # the checks run here, even with Dask
    search = BranchAndBound(pruner, StepBound(pruner, devices), fams, layout_name, local)
    fastest = Fastest(top)
    chosen: list[Candidate] = []

    def then(results: list[dict[str, Any] | None]) -> Iterator[Task]:
        for result in results:
            fastest.add(result)
        for c in search.next_round(ROUND, fastest.kth):
            chosen.append(c)
            yield task(c.strategy)

    early: set[str] = set()

    def ahead() -> Task | None:
        # the least bound not handed out is what the next round begins with, if any
        for c in search.ready():
            if c.bound >= fastest.kth:
                return None
            if c.strategy.name not in early:
                early.add(c.strategy.name)
                return task(c.strategy)
        return None

    outcome = run_tasks([], then=then, idle=lambda: search.prepare(ROUND), ahead=ahead, **run)
    # a round stopped while being chosen may hold a layout whose task never came
    results = outcome.results + [None] * (len(chosen) - len(outcome.results))
    done = [((c.strategy, c.estimate), r) for c, r in zip(chosen, results, strict=True)]
    pruned = dict(pruner.pruned)
    skipped = search.unexpanded + search.queued
    if skipped:
        pruned[BOUND_RULE] = skipped
    return done, outcome.interrupted, enumerated, pruned
