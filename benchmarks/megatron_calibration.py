"""How close the simulator comes to measured Megatron runs, scored so that it cannot fool itself.

Replays every run of :mod:`measured_runs` (shape-only, one step, from
datasheet figures and the cited constants of :mod:`simulator.hardware`) and
compares the simulated step with the measured one. It reports

* every run: measured and simulated seconds and the signed error
  (simulated - measured) / measured: negative is too fast;
* per family, per model size and per GPU count: the number of runs, the mean
  absolute percentage error (MAPE) and the mean signed error, so that a bias
  that grows with scale shows as a trend rather than hiding in an average;
* **leave-one-family-out cross-validation**: the error of each family when
  nothing was fitted on it. Nothing in the simulator is fitted to these runs
  (every constant cites its source), so by default each family's
  cross-validated error is its direct error, and the report says so.
  ``--fit NAME`` fits one constant of :data:`FITS` on every family but one,
  scores the one left out, and prints both: what a fit would buy, honestly;
* Spearman's rank correlation (all runs, and between the layouts of one model).

It draws ``docs/images/calibration.png`` (simulated against measured, the
cross-validated MAPE of each family in its legend) and, with ``--json``,
writes every run's numbers for later comparison.

``--without tiling jitter mamf`` takes modelled effects of the datasheet presets
out (:data:`ABLATIONS`: GEMM tiling over the multiprocessors, the slowest of
``n`` devices, the measured GEMM ceiling back to a flat 0.8), and ``--without
loss-passes optimizer-passes fp32-grads`` what the simulator models of
Megatron-LM's software (:data:`SOFTWARE`: the loss's unfused FP32 passes, the
mixed-precision optimizer's passes, BF16 gradients reduced in FP32), so
that what each one does to every family is measured rather than claimed.
``--with overlap-slowdown`` adds an effect on trial, not set on the presets
(:data:`TRIALS`: compute slowed beside its own asynchronous collectives,
``overlap_slowdown``), to measure it the same way.

Run: ``python benchmarks/megatron_calibration.py [--families ...] [--every N]
[--workers N] [--fit NAME] [--without ...] [--with ...] [--plot PATH] [--json PATH]
[--from-json PATH ...]`` (not part of the test suite; under 3 minutes on two
cores for every family). ``--from-json`` reports and plots replays saved by
earlier ``--json`` runs, so families replayed apart make one report.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
from measured_runs import FAMILIES, SOURCES, VTRAIN, Run, every_run

from simulator import TrainingConfig, run_strategy
from simulator.hardware.presets import OVERLAP_SLOWDOWN

ROOT = Path(__file__).resolve().parents[1]
PLOT = ROOT / "docs" / "images" / "calibration.png"

#: Size buckets (billions of parameters) and GPU-count buckets of the report.
SIZES = ((0, 10), (10, 50), (50, 200), (200, 2000))
GPUS = ((0, 128), (128, 600), (600, 2000), (2000, 5000), (5000, 20000))


def _device(run: Run, **fields: object) -> Run:
    """``run`` on devices with ``fields`` changed."""
    device = replace(run.cluster.device, **fields)
    return replace(run, cluster=replace(run.cluster, device=device))


def _scale_gemm(run: Run, factor: float) -> Run:
    eff = run.cluster.device.efficiency
    return _device(run, efficiency={**eff, "gemm": eff["gemm"] * factor})


#: Constants ``--fit`` may fit by leave-one-family-out: name -> (values tried, how a
#: value changes a run). The defaults the simulator ships are the cited ones.
FITS: dict[str, tuple[tuple[float, ...], Callable[[Run, float], Run]]] = {
    "gemm": ((0.85, 0.9, 0.95, 1.0, 1.05), _scale_gemm),
}


#: Effects ``--without`` takes out, to measure what each one does: name -> how.
ABLATIONS: dict[str, Callable[[Run], Run]] = {
    "tiling": lambda r: _device(r, sms=0),
    "jitter": lambda r: _device(r, jitter=0.0),
    "mamf": lambda r: _device(r, efficiency={**r.cluster.device.efficiency, "gemm": 0.8}),
}

#: Effects on trial that ``--with`` adds, to measure what each would do: name -> how.
TRIALS: dict[str, Callable[[Run], Run]] = {
    "overlap-slowdown": lambda r: _device(r, overlap_slowdown=OVERLAP_SLOWDOWN),
}


def _no_unfused_loss() -> None:
    from simulator.ops import loss_passes

    loss_passes.UNFUSED_DTYPES.clear()


def _plain_optimizer() -> None:
    from simulator.nn import optim

    def traffic(self: optim.Optimizer, p: optim.Param) -> int:
        return 3 * p.nbytes + 2 * self.state_bytes(p)

    optim.Optimizer._traffic = traffic  # type: ignore[method-assign]


#: What the software of every run does that ``--without`` can take out too: name -> how
#: (switched off in every replay process as it starts, :func:`switch_off`).
SOFTWARE: dict[str, Callable[[], None]] = {
    "loss-passes": _no_unfused_loss,  # Megatron-LM's FP32 loss passes (simulator.ops.loss_passes)
    "optimizer-passes": _plain_optimizer,  # norm, update, master copy (simulator.nn.optim)
    "fp32-grads": lambda: GRADS.update(precision="model"),  # BF16 gradients in FP32 (Run)
}

#: ``precision = "run"``: each run's own ``Run.grad_precision``; ``--without fp32-grads``
#: makes it ``"model"`` everywhere
GRADS = {"precision": "run"}


#: The :data:`SOFTWARE` effects taken out of this replay (``--without``).
SWITCHED_OFF: list[str] = []


def switch_off(names: list[str]) -> None:
    """Take the :data:`SOFTWARE` effects ``names`` out of this process."""
    for name in names:
        SOFTWARE[name]()


def simulate(run: Run) -> float:
    """The simulated seconds of one training step of ``run``."""
    training = TrainingConfig(
        numerics=False,
        global_batch=run.batch,
        steps=1,
        optimizer="adam",
        grad_precision=run.grad_precision if GRADS["precision"] == "run" else "model",
    )
    return run_strategy(run.cluster, run.model, training, run.strategy).metrics["iteration_time_s"]


def _timed(run: Run) -> tuple[float, float]:
    start = time.perf_counter()
    return simulate(run), time.perf_counter() - start


def replay(runs: list[Run], workers: int, verbose: bool = True) -> list[float]:
    """Simulate every run (on ``workers`` processes); prints one line per run."""
    if verbose:
        print(f"{'family':<21} {'group':<27} {'run':<22} {'GPUs':>6} {'measured s':>10} "
              f"{'simulated s':>11} {'error':>7} {'wall s':>6}")  # fmt: skip
    pool = ProcessPoolExecutor(workers, initializer=switch_off, initargs=(SWITCHED_OFF,))
    with pool:
        out = []
        for run, (predicted, wall) in zip(runs, pool.map(_timed, runs), strict=True):
            out.append(predicted)
            if verbose:
                print(f"{run.family:<21} {run.group:<27} {run.label:<22} {run.gpus:>6} "
                      f"{run.measured_s:>10.3f} {predicted:>11.3f} "
                      f"{signed(predicted, run.measured_s):>6.1f}% {wall:>6.1f}",
                      flush=True)  # fmt: skip
        return out


# -- errors -----------------------------------------------------------------------------------
def signed(predicted: float, measured: float) -> float:
    """Signed error in %: negative when the simulation is faster than the measurement."""
    return 100 * (predicted - measured) / measured


def mape(pairs: Iterable[tuple[float, float]]) -> float:
    """Mean absolute percentage error of ``(predicted, measured)`` pairs, in %."""
    pairs = list(pairs)
    return sum(abs(signed(p, m)) for p, m in pairs) / len(pairs) if pairs else float("nan")


def bias(pairs: Iterable[tuple[float, float]]) -> float:
    """Mean signed error of ``(predicted, measured)`` pairs, in %."""
    pairs = list(pairs)
    return sum(signed(p, m) for p, m in pairs) / len(pairs) if pairs else float("nan")


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (Pearson's on the ranks; ties share their mean rank)."""

    def ranks(values: list[float]) -> np.ndarray:
        order = np.argsort(values, kind="stable")
        r = np.empty(len(values))
        r[order] = np.arange(len(values), dtype=float)
        for v in set(values):  # ties: the mean of their ranks
            tied = [i for i, w in enumerate(values) if w == v]
            r[tied] = r[tied].mean()
        return r

    return float(np.corrcoef(ranks(xs), ranks(ys))[0, 1])


def table(title: str, rows: list[tuple[str, list[tuple[float, float]]]]) -> None:
    """Print ``count, MAPE, mean signed error`` per labelled set of pairs."""
    print(f"\n{title:<44} {'runs':>5} {'MAPE':>7} {'signed':>8}")
    for label, pairs in rows:
        if pairs:
            print(f"{label:<44} {len(pairs):>5} {mape(pairs):>6.1f}% {bias(pairs):>+7.1f}%")


def bucketed(
    results: list[tuple[Run, float]], key: Callable[[Run], float], buckets: tuple, unit: str
) -> list[tuple[str, list[tuple[float, float]]]]:
    rows = []
    for lo, hi in buckets:
        pairs = [(p, r.measured_s) for r, p in results if lo <= key(r) < hi]
        rows.append((f"{lo}-{hi} {unit}", pairs))
    return rows


# -- leave one family out ---------------------------------------------------------------------
def cross_validate(runs: list[Run], fit: str, workers: int) -> dict[str, tuple[float, list[float]]]:
    """Per family: the value of ``fit`` chosen on every *other* family (least MAPE),
    and the family's predictions with that value."""
    values, apply = FITS[fit]
    predicted = {v: replay([apply(r, v) for r in runs], workers, verbose=False) for v in values}
    out = {}
    for family in sorted({r.family for r in runs}):
        others = [i for i, r in enumerate(runs) if r.family != family]
        if not others:
            continue
        best = min(
            values, key=lambda v: mape((predicted[v][i], runs[i].measured_s) for i in others)
        )
        mine = [predicted[best][i] for i, r in enumerate(runs) if r.family == family]
        out[family] = (best, mine)
    return out


# -- the plot ---------------------------------------------------------------------------------
COLORS = ["#4c72b0", "#55a868", "#c44e52", "#8172b2", "#dd8452", "#937860", "#da8bc3"]


def plot(results: list[tuple[Run, float]], cv: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 6.2), dpi=150)
    measured = [r.measured_s for r, _ in results]
    lo, hi = min(measured) / 1.6, max(measured) * 1.6
    ax.plot([lo, hi], [lo, hi], color="0.3", lw=1, label="predicted = measured")
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="0.88",
                    label="within 10%")  # fmt: skip
    markers = "osD^vP*"
    for i, family in enumerate(f for f in FAMILIES if any(r.family == f for r, _ in results)):
        pts = [(r.measured_s, p) for r, p in results if r.family == family]
        pairs = [(p, m) for m, p in pts]
        ax.scatter(*zip(*pts, strict=True), s=20, color=COLORS[i], marker=markers[i],
                   edgecolor="white", linewidth=0.4, zorder=3,
                   label=f"{family}: {len(pts)} runs, cross-validated MAPE {cv[family]:.1f}%, "
                   f"signed {bias(pairs):+.1f}%")  # fmt: skip
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), aspect="equal")
    ax.set_xlabel("measured step time (s)")
    ax.set_ylabel("simulated step time (s)")
    overall = mape((p, r.measured_s) for r, p in results)
    rho = spearman([r.measured_s for r, _ in results], [p for _, p in results])
    kinds = sorted({r.cluster.device.name.split("-")[0] for r, _ in results})
    ax.set_title(
        f"Megatron runs on {'s and '.join(kinds)}s: simulated vs measured\n{len(results)} runs, "
        f"leave-one-family-out MAPE {overall:.1f}%, Spearman {rho:.3f}",
        fontsize=10,
    )
    ax.grid(True, which="both", color="0.92", lw=0.5)
    ax.legend(fontsize=6.5, loc="upper left", frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def report(runs: list[Run], predicted: list[float], cv: dict[str, tuple[float, list[float]]],
           fit: str | None) -> dict[str, float]:  # fmt: skip
    """Print every table; returns each family's cross-validated MAPE."""
    results = list(zip(runs, predicted, strict=True))
    families = [f for f in FAMILIES if any(r.family == f for r in runs)]
    table("per family (nothing fitted)", [
        (f, [(p, r.measured_s) for r, p in results if r.family == f]) for f in families
    ] + [("all", [(p, r.measured_s) for r, p in results])])  # fmt: skip
    table("per group", [
        (g, [(p, r.measured_s) for r, p in results if r.group == g])
        for g in dict.fromkeys(r.group for r in runs)
    ])  # fmt: skip
    table("per model size", bucketed(results, lambda r: r.billions, SIZES, "B parameters"))
    table("per GPU count", bucketed(results, lambda r: r.gpus, GPUS, "GPUs"))
    cv_mape = {}
    print("\nleave-one-family-out cross-validation")
    if fit is None:
        print("  fitted on the other families: nothing (every constant cites its source), so")
        print("  each family's cross-validated error is its direct error")
        for f in families:
            cv_mape[f] = mape((p, r.measured_s) for r, p in results if r.family == f)
    else:
        for f in families:
            value, mine = cv[f]
            measured = [r.measured_s for r in runs if r.family == f]
            cv_mape[f] = mape(zip(mine, measured, strict=True))
            print(f"  {f:<24} {fit} = {value:<5} fitted on the others: MAPE {cv_mape[f]:5.1f}%, "
                  f"signed {bias(zip(mine, measured, strict=True)):+5.1f}%")  # fmt: skip
    every = [(p, r.measured_s) for r, p in results]
    if fit is not None:
        every = []
        for f in families:
            mine = [r for r in runs if r.family == f]
            every += [(p, r.measured_s) for r, p in zip(mine, cv[f][1], strict=True)]
    print(f"  {'all':<24} cross-validated MAPE {mape(every):5.1f}%")
    rho = spearman([r.measured_s for r in runs], predicted)
    print(f"\nSpearman rank correlation, all runs: {rho:.3f}")
    by_model: dict[str, list[tuple[float, float]]] = {}
    for r, p in results:
        if r.family == VTRAIN:
            by_model.setdefault(r.label.split("-")[0], []).append((p, r.measured_s))
    print("Spearman between the layouts of one model (vTrain): " + ", ".join(
        f"{m} {spearman([x for _, x in v], [y for y, _ in v]):.3f}" for m, v in by_model.items()
        if len(v) >= 3))  # fmt: skip
    return cv_mape


def saved(runs: list[Run], paths: list[Path]) -> tuple[list[Run], list[float]]:
    """The runs among ``runs`` that the ``--json`` files at ``paths`` replayed, and their
    simulated seconds (a run is known by its family, label, GPUs and measured seconds:
    some layouts were measured more than once)."""

    def key(family: str, label: str, gpus: int, measured: float) -> tuple:
        return family, label, gpus, round(measured, 9)

    found: dict[tuple, float] = {}
    for path in paths:
        for row in json.loads(path.read_text()):
            found[key(row["family"], row["run"], row["gpus"], row["measured_s"])] = row[
                "simulated_s"
            ]
    kept, predicted = [], []
    for r in runs:
        simulated = found.get(key(r.family, r.label, r.gpus, r.measured_s))
        if simulated is None:
            continue
        kept.append(r)
        predicted.append(simulated)
    if not kept:
        raise SystemExit("the saved files hold none of the selected runs")
    return kept, predicted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="*", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--every", type=int, default=1, help="replay every N-th vTrain run")
    parser.add_argument("--workers", type=int, default=2, help="simulation processes")
    parser.add_argument("--fit", choices=sorted(FITS), help="fit one constant, leave one out")
    parser.add_argument("--plot", type=Path, default=PLOT, help="where to write the scatter")
    parser.add_argument("--json", type=Path, help="write every run's numbers here")
    parser.add_argument(
        "--from-json",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="report and plot the replays saved by earlier --json runs instead of replaying",
    )
    parser.add_argument(
        "--without",
        nargs="*",
        default=[],
        choices=sorted(ABLATIONS) + sorted(SOFTWARE),
        help="take these modelled effects out (what each one does)",
    )
    parser.add_argument(
        "--with",
        dest="trials",
        nargs="*",
        default=[],
        choices=sorted(TRIALS),
        help="add these effects on trial, not set on the presets (what each would do)",
    )
    args = parser.parse_args()
    runs = [r for r in every_run() if r.family in args.families]
    vtrain = [r for r in runs if r.family == VTRAIN][:: max(args.every, 1)]
    runs = vtrain + [r for r in runs if r.family != VTRAIN]
    for family in args.families:
        print(f"{family}: {SOURCES[family]}")
    started = time.perf_counter()
    for name in args.without:
        if name in SOFTWARE:
            SWITCHED_OFF.append(name)
        else:
            runs = [ABLATIONS[name](r) for r in runs]
    for name in args.trials:
        runs = [TRIALS[name](r) for r in runs]
    if args.from_json:
        runs, predicted = saved(runs, args.from_json)
        print(f"\n{len(runs)} runs read from {', '.join(map(str, args.from_json))}")
    else:
        predicted = replay(runs, args.workers)
        print(f"\n{len(runs)} runs replayed in {time.perf_counter() - started:.0f} s")
    cv = cross_validate(runs, args.fit, args.workers) if args.fit else {}
    cv_mape = report(runs, predicted, cv, args.fit)
    plot(list(zip(runs, predicted, strict=True)), cv_mape, args.plot)
    print(f"wrote {args.plot}")
    if args.json:
        args.json.write_text(json.dumps([
            {"family": r.family, "group": r.group, "run": r.label, "gpus": r.gpus,
             "billions": round(r.billions, 2), "measured_s": r.measured_s, "simulated_s": p}
            for r, p in zip(runs, predicted, strict=True)
        ], indent=1))  # fmt: skip
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
