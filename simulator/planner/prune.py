"""Which layouts are worth simulating: the checks ``run`` applies, then memory.

A layout is rejected by the first of these that fails, and the planner counts
rejections by rule:

1. :func:`~simulator.parallel.build.check_layout`, the layout rules of every run,
   and what context parallelism asks of the model
   (:func:`~simulator.parallel.context.checks.check_context`);
2. the tensor-parallel split of every block (heads, hidden, vocabulary and
   sequence divisible by ``tp``), as ``build_plan`` splits them;
3. memory, first cheaply: a device holds at least the average over the
   pipeline ranks of the model state and of one micro-batch's activations
   (a context-parallel rank's: ``1/cp`` of them);
4. the pipeline partition (enough blocks for every stage);
5. the schedule registry's rules for ``(p, m, v)`` (and building the schedule);
6. memory again, with the estimate of :mod:`simulator.planner.memory_bound`, a
   lower bound on the peak: over the device's memory, the layout cannot fit.

These are the functions :func:`~simulator.parallel.build.build_plan` calls,
called the same way, so there is no second copy of any rule. What
``build_plan`` repeats for every data-parallel replica and every layer is
done once per distinct input and cached (the model is built once; a block is
split once per kind of block and ``(tp, sequence_parallel)``; a schedule is
built once per ``(name, p, m, v)``), which keeps the check of a layout to
microseconds. The survivors go through ``build_plan`` itself when they are
simulated, which also runs the schedule validator; the planner does not run
it beforehand, as the registry's schedules always pass it (their tests say
so) and on long pipelines it costs more than the check of every other rule.
Memory and the partition come before the schedule because most layouts of a
large model fail them and building a schedule of many thousands of actions
is the slowest check.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any

from ..errors import SimulatorError
from ..hardware import ClusterSpec
from ..nn.accounting import layer_stash_bytes
from ..nn.gpt import GPTConfig
from ..nn.llama import LlamaConfig
from ..nn.optim import make_optimizer
from ..nn.transformer import TransformerLayer
from ..parallel.build import block_costs, check_layout, parallelize, resolve_schedule
from ..parallel.context.checks import check_context
from ..parallel.data import get_variant
from ..parallel.pipeline import Schedule, get_schedule
from ..parallel.stages import split_alike
from ..parallel.strategy import Strategy
from ..parallel.training import TrainingConfig
from . import memory_bound
from .schedule_facts import CLOSED_FORMS, ScheduleFacts, facts_of_schedule

#: How many built schedules a :class:`Pruner` keeps (some hold 100,000s of actions).
KEEP_BUILT = 8


def schedule_key(s: Strategy) -> Hashable:
    """What a registry schedule depends on: its name, ``pp``, micro-batches and chunks."""
    return ("schedule", s.schedule, s.pp, s.microbatches, s.chunks)


#: The rule name of layouts whose memory estimate is over the device's memory.
MEMORY_RULE = "memory estimate over the device memory"


def rule_of(err: SimulatorError) -> str:
    """A rule's name from the error it raised: the first sentence of the message,
    without the strategy's name, with numbers as ``N`` (so that every layout
    broken by one rule counts under one name)."""
    text = str(err).splitlines()[0]
    text = re.sub(r"^strategy '[^']*':? ", "", text)
    text = text.split(";")[0].strip()
    return re.sub(r"(?<![\w.])\d+(\.\d+)?(?![\w.])", "N", text)


def signature(block: Any) -> Hashable:
    """Blocks with equal signatures split equally under tensor parallelism: the same
    class and parameter shapes, and for an MLP the same place in the stack (its
    blocks alternate column- and row-parallel, see :mod:`simulator.parallel.tensor`)."""
    shapes = tuple(p.shape for p in block.parameters())
    depth = getattr(block, "depth", None)
    place = None if depth is None else (block.index % 2, block.index == depth - 1)
    return type(block).__name__, shapes, place


class Pruner:
    """Checks layouts of one model, training and cluster; counts the rejections.

    Attributes:
        pruned: rejections by rule name.
        checked: layouts checked so far.
    """

    def __init__(self, cluster: ClusterSpec, model_config: Any, training: TrainingConfig) -> None:
        self.cluster = cluster
        self.model_config = model_config
        self.training = training
        self.capacity = cluster.device.memory_bytes
        self.model = model_config.build(training.seed, numerics=False)
        self.optimizer = make_optimizer(training.optimizer, training.lr)
        self.is_layer = [isinstance(b, TransformerLayer) for b in self.model.blocks]
        self.pruned: Counter[str] = Counter()
        self.checked = 0
        self._cache: dict[Hashable, Any] = {}
        #: the schedules built last, by :func:`schedule_key` (:meth:`built`)
        self._built: OrderedDict[Hashable, Schedule] = OrderedDict()
        self._rules: dict[str, str] = {}

    def survivors(self, layouts: Iterable[Strategy]) -> Iterator[tuple[Strategy, float]]:
        """The layouts that pass every check, each with its memory estimate (bytes)."""
        return self.survivors_of_groups((s, (s.order,)) for s in layouts)

    def survivors_of_groups(
        self, groups: Iterable[tuple[Strategy, tuple[str, ...]]]
    ) -> Iterator[tuple[Strategy, float]]:
        """:meth:`survivors` of :func:`~simulator.planner.space.layout_groups`: a
        group's layouts differ only in the mesh order, which no check and no estimate
        reads, so each group is checked once and counted once per order."""
        for s, orders in groups:
            self.checked += len(orders)
            try:
                estimate = self.estimate(s)
            except SimulatorError as err:
                self.pruned[self._rule(err)] += len(orders)
                continue
            if estimate > self.capacity:
                self.pruned[MEMORY_RULE] += len(orders)
                continue
            yield s, estimate
            for order in orders[1:]:
                yield dataclasses.replace(s, order=order), estimate

    def _rule(self, err: SimulatorError) -> str:
        """:func:`rule_of`, once per message (most rejections repeat one)."""
        text = str(err)
        rule = self._rules.get(text)
        if rule is None:
            rule = self._rules[text] = rule_of(err)
        return rule

    # -- the checks, cached -----------------------------------------------------------------
    def _cached(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per key; an error is cached and raised again."""
        if key not in self._cache:
            try:
                self._cache[key] = compute()
            except SimulatorError as err:
                self._cache[key] = err
        value = self._cache[key]
        if isinstance(value, SimulatorError):
            raise value.with_traceback(None)  # a fresh traceback, not one growing per raise
        return value

    def _schedule(self, s: Strategy) -> ScheduleFacts:
        """The registry's schedule for the layout (its rules raise), kept as what the
        estimate and the bound need (a schedule of thousands of actions is not kept):
        in closed form where the schedule has one (:mod:`.schedule_facts`), else
        read off the built schedule."""
        closed = CLOSED_FORMS.get(s.schedule)
        if closed is not None:
            get_schedule(s.schedule).check(s.pp, s.microbatches, s.chunks)
            return closed(s.pp, s.microbatches, s.chunks)
        return facts_of_schedule(self.built(s))

    def built(self, s: Strategy) -> Schedule:
        """The registry's schedule for ``s``, kept among the :data:`KEEP_BUILT` built
        last: the bound walks the schedule the memory estimate has just read."""
        key = schedule_key(s)
        schedule = self._built.get(key)
        if schedule is None:
            schedule = self._built[key] = resolve_schedule(s, None)
            if len(self._built) > KEEP_BUILT:
                self._built.popitem(last=False)
        else:
            self._built.move_to_end(key)
        return schedule

    def schedule_of(self, s: Strategy) -> ScheduleFacts:
        """:meth:`_schedule`, once per :func:`schedule_key`."""
        return self._cached(schedule_key(s), lambda: self._schedule(s))

    def micro_batch(self, s: Strategy) -> int:
        """Sequences per micro-batch of a layout that passed :func:`check_layout`."""
        return self.training.global_batch // (s.dp * s.microbatches)

    def stages_of(self, s: Strategy, micro_batch: int) -> tuple[range, ...]:
        """The blocks of every stage of ``s`` (its ``pp * chunks`` stages, as the
        registry's schedules have), as ``build_plan`` splits them: DualPipe's second
        half of the stages are copies of the first."""
        directions = get_schedule(s.schedule).directions if s.pp > 1 else 1
        half = s.num_stages // directions
        key = ("stages", s.partition, half, micro_batch)
        return directions * self._cached(key, lambda: self._stages(s, micro_batch, half))

    def _stages(self, s: Strategy, micro_batch: int, num_stages: int) -> tuple[range, ...]:
        # the split build_plan makes (one kind of device: the planner's clusters)
        def costs() -> list[float]:
            return self._cached(
                ("costs", micro_batch),
                lambda: block_costs(self.model_config, self.cluster, micro_batch, self.training),
            )

        return tuple(split_alike(self.model, s.partition, num_stages, costs))

    def block_bytes(self, s: Strategy) -> list[tuple[int, int]]:
        """Per block, the bytes of weights and of optimizer state on tensor-parallel rank
        0 (worked out once per ``tp`` and sequence parallelism)."""
        return self._cached(
            ("split", s.tp, s.sequence_parallel, s.ep), lambda: self._block_bytes(s)
        )

    def _block_bytes(self, s: Strategy) -> list[tuple[int, int]]:
        """Per block, the bytes of weights and of optimizer state on tensor-parallel rank 0."""
        split: dict[Hashable, tuple[int, int]] = {}
        out = []
        for block in self.model.blocks:
            sig = signature(block)
            if sig not in split:
                params = parallelize(block, s).params(0)
                split[sig] = (
                    sum(p.nbytes for p in params),
                    sum(self.optimizer.state_bytes(p) for p in params),
                )
            out.append(split[sig])
        return out

    def _per_rank(
        self,
        pp: int,
        blocks: list[tuple[int, int]],
        stages: tuple[range, ...],
        rank_of: dict[int, int],
        profile: Any,
    ) -> tuple[list[tuple[int, int]], tuple[int, ...]]:
        """Per pipeline rank, its weight and optimizer-state bytes, and the most
        transformer layers' activations it holds at once."""
        weights, state = [0] * pp, [0] * pp
        for c, blocks_of_stage in enumerate(stages):
            for i in blocks_of_stage:
                weights[rank_of[c]] += blocks[i][0]
                state[rank_of[c]] += blocks[i][1]
        layers = tuple(sum(self.is_layer[i] for i in stage) for stage in stages)
        return list(zip(weights, state, strict=True)), memory_bound.peak_layers_held(
            profile, layers
        )

    def _layer_bytes(self, s: Strategy, micro_batch: int) -> float:
        """A transformer layer's activation bytes per device (once per distinct setting)."""
        if not isinstance(self.model_config, (GPTConfig, LlamaConfig)):
            return 0.0  # activations are estimated for transformer layers only
        args = (micro_batch, s.tp, s.sequence_parallel, s.recompute, s.precision, s.cp,
                s.context_parallel)  # fmt: skip
        return self._cached(
            ("layer bytes", *args), lambda: layer_stash_bytes(self.model_config, *args)
        )

    def first_failure(self, s: Strategy) -> str | None:
        """The rule ``s`` breaks among the first checks of :meth:`estimate` -- the layout
        rules, the tensor-parallel split, the memory floor, the stages and the
        schedule's rules -- without building a schedule (None: it passes them)."""
        try:
            if self._memory_floor(s) > self.capacity:
                return MEMORY_RULE
            if get_variant(s.data_parallel).symmetric:  # as :meth:`estimate` checks them
                self.stages_of(s, self.micro_batch(s))
                get_schedule(s.schedule).check(s.pp, s.microbatches, s.chunks)
        except SimulatorError as err:
            return self._rule(err)
        return None

    def _memory_floor(self, s: Strategy) -> float:
        """Check the layout rules and the tensor-parallel split (raising the first that
        fails); the memory a device holds at least: the mean over the pipeline ranks of
        the model state and the layers' activations (0 for a variant whose primary
        holds what the others send it: the formulas do not apply)."""
        micro_batch = check_layout(self.cluster, self.training, s, self.model_config)
        check_context(s, self.model_config)
        blocks = self.block_bytes(s)
        if not get_variant(s.data_parallel).symmetric:
            return 0.0
        weights, state = self._cached(
            ("total", s.tp, s.sequence_parallel, s.ep),
            lambda: tuple(map(sum, zip(*blocks, strict=True))),
        )
        # the weights' replicas: dp x cp, over which ZeRO partitions
        floor = memory_bound.model_state_bytes(weights, state, s.dp * s.cp, s.zero)
        return (floor + sum(self.is_layer) * self._layer_bytes(s, micro_batch)) / s.pp

    def reject(self, rule: str, layouts: int) -> None:
        """Count ``layouts`` layouts as checked and rejected by ``rule``."""
        self.checked += layouts
        self.pruned[rule] += layouts

    def estimate(self, s: Strategy) -> float:
        """Run the checks (raising the first rule that fails) and return the memory
        estimate of the layout: the largest per-device lower bound, in bytes (or a
        smaller bound, already over the device memory, when that settles it)."""
        floor = self._memory_floor(s)
        if not get_variant(s.data_parallel).symmetric:
            return 0.0  # one device holds what the others send it: the formulas do not apply
        # the largest device holds at least the mean over the pipeline ranks
        if floor > self.capacity:
            return floor
        micro_batch = self.micro_batch(s)
        blocks = self.block_bytes(s)
        layer_bytes = self._layer_bytes(s, micro_batch)
        stages = self.stages_of(s, micro_batch)
        facts = self.schedule_of(s)
        num_stages, rank_of, profile = facts.num_stages, facts.rank_of, facts.profile
        assert num_stages == len(stages)  # registry schedules only: files are not searched
        per_rank, held = self._cached(
            ("ranks", s.tp, s.sequence_parallel, s.ep, stages, schedule_key(s)),
            lambda: self._per_rank(s.pp, blocks, stages, rank_of, profile),
        )
        replicas = s.dp * s.cp
        model_state = [memory_bound.model_state_bytes(w, o, replicas, s.zero) for w, o in per_rank]
        return memory_bound.peak_bytes(model_state, held, layer_bytes)
