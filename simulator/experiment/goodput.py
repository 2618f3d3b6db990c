"""Goodput: the fraction of wall time a job spends on useful training, given failures.

A large job fails often: its devices fail independently, so with ``N``
devices of mean time between failures ``MTBF`` each, the job fails as a
Poisson process of rate ``N / MTBF`` (the minimum of ``N`` exponential
lifetimes is exponential with the rates added), i.e. with mean time between
failures ``M = MTBF / N``. Meta's Llama 3 run on 16,384 GPUs saw 419
unexpected interruptions in 54 days, one every three hours (Dubey et al.
2024, sec. 3.3.4). A job protects itself by writing a checkpoint every ``τ``
seconds of computation, which takes ``δ`` seconds; after a failure it
restarts, which takes ``R`` seconds, and redoes the work since the last
checkpoint.

The model is Daly's (2006): the run is a chain of segments of ``τ + δ``
seconds, each repeated until it runs through without a failure, with a
restart of ``R`` before every repeat (a failure during a restart restarts
it). For exponential failures the expected time of one segment is

    E[T] = M · e^{R/M} · (e^{(τ+δ)/M} − 1)

(the expected wall time of Daly's complete model, ``T_w = E[T] · T_s / τ``
for a job of ``T_s`` seconds of computation), so the goodput, useful time
over wall time, is

    goodput(τ) = τ / (M · e^{R/M} · (e^{(τ+δ)/M} − 1)).

Too short an interval wastes time writing checkpoints, too long one redoes
much work after each failure. Young (1974) balanced the two to first order:
``τ_opt = sqrt(2 δ M)``. Daly (2006) solved the complete model by a
perturbation expansion in ``δ / (2M)``:

    τ_opt = sqrt(2 δ M) · [1 + (1/3) sqrt(δ/(2M)) + (1/9) (δ/(2M))] − δ    for δ < 2M,
    τ_opt = M                                                              for δ >= 2M,

which reproduces the paper's worked examples (figs. 3 to 5: ``τ_opt`` =
117, 57 and 9.1 minutes for ``M`` = 24 h, 6 h and 15 min with ``R`` = 10 min
and ``δ`` = 5 min); :func:`optimal_interval` is that formula.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

HOUR = 3600.0


def job_mtbf(devices: int, device_mtbf_s: float) -> float:
    """Mean time between failures of a job on ``devices`` devices, seconds.

    Independent exponential failures: the job's failure rate is the sum of
    the devices' rates, so its MTBF is the devices' divided by ``devices``.
    """
    return device_mtbf_s / devices


def young_interval(checkpoint_s: float, mtbf_s: float) -> float:
    """Young's (1974) first-order optimum: ``sqrt(2 δ M)``."""
    return math.sqrt(2 * checkpoint_s * mtbf_s)


def optimal_interval(checkpoint_s: float, mtbf_s: float) -> float:
    """Daly's (2006) higher-order optimum checkpoint interval (see the module docstring)."""
    if checkpoint_s >= 2 * mtbf_s:
        return mtbf_s
    x = checkpoint_s / (2 * mtbf_s)
    return young_interval(checkpoint_s, mtbf_s) * (1 + math.sqrt(x) / 3 + x / 9) - checkpoint_s


def goodput(interval_s: float, checkpoint_s: float, restart_s: float, mtbf_s: float) -> float:
    """Expected useful fraction of wall time, ``τ / E[segment time]`` (module docstring).

    Computed in logarithms when the exponent is large, so that hopeless
    settings (an interval of many MTBFs) give a goodput near 0 instead of
    an overflow.
    """
    a = (interval_s + checkpoint_s) / mtbf_s
    r = restart_s / mtbf_s
    if a < 50:
        return interval_s / (mtbf_s * math.exp(r) * math.expm1(a))
    # e^a − 1 = e^a (1 − e^−a); log1p keeps the small correction exact
    return math.exp(math.log(interval_s / mtbf_s) - r - a - math.log1p(-math.exp(-a)))


@dataclass(frozen=True)
class Goodput:
    """The answer of the ``goodput`` command (the keys of its ``--json``)."""

    goodput: float
    interval_s: float
    optimal_interval_s: float
    optimal_goodput: float


def evaluate(
    devices: int,
    device_mtbf_s: float,
    checkpoint_s: float,
    restart_s: float,
    interval_s: float | None = None,
) -> Goodput:
    """Goodput at ``interval_s`` (default: the optimum) and at the optimum."""
    mtbf = job_mtbf(devices, device_mtbf_s)
    best = optimal_interval(checkpoint_s, mtbf)
    chosen = best if interval_s is None else interval_s
    return Goodput(
        goodput=goodput(chosen, checkpoint_s, restart_s, mtbf),
        interval_s=chosen,
        optimal_interval_s=best,
        optimal_goodput=goodput(best, checkpoint_s, restart_s, mtbf),
    )
