"""A lower bound on a layout's peak memory per device, from published formulas.

The planner prunes a layout before simulating it only when this estimate is
already over the device's memory. The estimate therefore leaves out what it
cannot count for certain, so that it never exceeds the peak the simulation
measures (``tests/planner/test_memory_bound.py`` checks it against the measured
peak, and how close it comes):

* **Model state** (Rajbhandari et al. 2020, "ZeRO", sec. 3.1 and 5): a
  device's ``Psi`` parameters take ``2 Psi`` bytes of 16-bit weights, ``2
  Psi`` of gradients and ``K Psi`` of optimizer state (``K = 12`` for
  mixed-precision Adam: fp32 master weights, momentum and variance). ZeRO
  partitions over the ``d`` data-parallel replicas: stage 1 the optimizer
  state (``4 Psi + 12 Psi / d``), stage 2 the gradients too (``2 Psi + 14 Psi
  / d``), stage 3 the weights too (``16 Psi / d``); under context
  parallelism the weights' replicas are ``dp x cp`` and ZeRO partitions over
  all of them. ``Psi`` counts the
  parameters a device really holds after tensor parallelism, and the bytes
  per parameter come from the dtype and the optimizer's own accounting
  (:meth:`simulator.nn.optim.Optimizer.state_bytes`).
* **Activations** of a GPT or Llama layer
  (:func:`simulator.nn.accounting.layer_stash_bytes`, after Korthikanti et al.
  2022, "Reducing Activation Recomputation in Large Transformer Models", sec.
  4.1 and Table 2): a GPT layer stashes ``sbh(34 + 5as/h)`` bytes for one
  micro-batch in 16-bit without parallelism, ``sbh(10 + 24/t + 5as/(ht))``
  with tensor parallelism, ``sbh(34 + 5as/h)/t`` with sequence parallelism
  too; selective recomputation drops the ``5as/h`` term (the attention core),
  full recomputation keeps only the layer input, ``2sbh``, the flash kernel
  replaces the ``s^2`` terms by its softmax statistics, and FP8 keeps a
  linear layer's input in one byte. The breakdown of sec. 4.1 (element
  tensors and one-byte dropout masks) gives the counts for any element size,
  and without dropout, for no masks.
* **How many micro-batches a stage holds** is read off the schedule itself:
  walking a rank's actions in order, a forward adds its stage's layers and a
  backward removes them; the most at once is what the schedule stashes
  (1F1B's ``p - i`` on stage ``i``, GPipe's ``m``, Narayanan et al. 2021,
  sec. 2.2.1; ZB-H2's ``2p - 1``, Qi et al. 2024, Table 2).

Left out, so the bound stays below the measurement: the embedding's and the
head's activations (the logits are ``b s V / t`` elements on the last stage),
the weight-gradient stash that split-backward schedules keep from B to W,
a copy of a tied weight on the last stage, buffers of messages and ZeRO
buckets, and the transient activations of a recomputed layer.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..parallel.pipeline.actions import BACKWARDS, F, Schedule


def model_state_bytes(param_bytes: float, state_bytes: float, dp: int, zero: int) -> float:
    """Bytes of weights, gradients and optimizer state on one device (ZeRO, sec. 5).

    ``param_bytes`` is what the device's weights take (the gradients take as
    much) and ``state_bytes`` its optimizer state, before ZeRO partitions them
    over the ``dp`` replicas.
    """
    weights = param_bytes / dp if zero >= 3 else param_bytes
    grads = param_bytes / dp if zero >= 2 else param_bytes
    optimizer = state_bytes / dp if zero >= 1 else state_bytes
    return weights + grads + optimizer


Profile = tuple[tuple[tuple[int, ...], tuple[tuple[int, ...], ...]], ...]


def stash_profile(schedule: Schedule) -> Profile:
    """Per rank, its stages and the most micro-batches it holds of each at once.

    A forward stashes its stage's activations until the backward (B) of the
    same stage and micro-batch (the W stash is left out, see the module
    docstring). Ranks run their actions one at a time, so walking each rank's
    list is exact. A rank with several stages (interleaved, zbv) may hold
    them in different mixes at different times: every mix that no other mix
    exceeds stage by stage is kept, so :func:`peak_layers_held` can weigh the
    stages by their layers later, for any partition, without the schedule.
    """
    profile = []
    for r in range(schedule.num_ranks):
        actions = schedule.actions(r)
        stages = tuple(sorted({a.stage for a in actions}))
        index = {stage: i for i, stage in enumerate(stages)}
        held = [0] * len(stages)
        tops: set[tuple[int, ...]] = set()
        rising = False
        for action in actions:
            if action.kind == F:
                held[index[action.stage]] += 1
                rising = True
                continue
            if rising:  # the forwards just run made a local maximum
                tops.add(tuple(held))
                rising = False
            if action.kind in BACKWARDS:
                held[index[action.stage]] -= 1
        if rising:
            tops.add(tuple(held))
        profile.append((stages, undominated(tops)))
    return tuple(profile)


def undominated(tops: set[tuple[int, ...]]) -> tuple[tuple[int, ...], ...]:
    """The mixes of ``tops`` that no other mix exceeds stage by stage, in order.

    A mix can only be exceeded by one with a larger sum, so walking them by falling
    sum, each needs comparing only with the mixes kept so far (what exceeds one
    dropped exceeds it too)."""
    kept: list[tuple[int, ...]] = []
    for m in sorted(tops, key=sum, reverse=True):
        if not any(all(x >= y for x, y in zip(o, m, strict=True)) for o in kept):
            kept.append(m)
    return tuple(sorted(kept))


def peak_layers_held(profile: Profile, layers_per_stage: Sequence[int]) -> tuple[int, ...]:
    """Per rank, the most transformer layers' activations held at once, from the
    :func:`stash_profile` of the schedule and the layers of every stage."""
    return tuple(
        max(
            (
                sum(n * layers_per_stage[c] for c, n in zip(stages, mix, strict=True))
                for mix in mixes
            ),
            default=0,
        )
        for stages, mixes in profile
    )


def peak_bytes(
    state_per_rank: Sequence[float], layers_held: Sequence[int], layer_bytes: float
) -> float:
    """The largest per-device lower bound over the pipeline ranks."""
    return max(
        state + held * layer_bytes for state, held in zip(state_per_rank, layers_held, strict=True)
    )
