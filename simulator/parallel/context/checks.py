"""What context parallelism asks of a layout, as one-line errors before anything runs.

* The model must have sequences: the GPT and the Llama (an MLP or an abstract
  model has nothing to split).
* The sequence must cut into the chunks: ``2 cp`` of them with
  ``cp_balance`` (rank ``r`` holds chunks ``r`` and ``2 cp - 1 - r``), ``cp``
  without; and under sequence parallelism each rank's ``s/cp`` tokens split
  again over ``tp``.
* Ulysses gives each rank ``1/cp`` of the heads of its tensor-parallel rank
  (Jacobs et al. 2023, sec. 3.1): ``cp`` must divide them, and the
  key-value heads of grouped-query attention must split over ``cp`` too, or
  each be repeated on ``cp / kv`` ranks (``kv`` dividing ``cp``), as tensor
  parallelism repeats them (:mod:`simulator.parallel.tensor.grouped`).
* A mixture of experts is not split over context-parallel ranks (its router
  and experts are not built into the ``cp x tp`` layer), nor are experts
  shared out with ``cp > 1`` (the strategy refuses ``ep > 1`` with it).
* The weights are replicated over ``dp x cp`` and their gradients reduced
  there, which ``nn.DataParallel``'s primary device does not do, and
  ``pp_scatter_gather`` scatters over a tensor-parallel group that is here
  one of ``cp`` in a worker: both are refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import LayoutError

if TYPE_CHECKING:
    from ..strategy import Strategy


def local_heads(heads: int, kv_heads: int, tp: int) -> tuple[int, int]:
    """Query and key-value heads on one tensor-parallel rank (a replicated key-value head
    counts once on every rank that holds it)."""
    return heads // tp, kv_heads // tp if kv_heads % tp == 0 else 1


def check_context(s: Strategy, model: Any) -> None:
    """Raise :class:`LayoutError` for a context-parallel layout that cannot run (module
    docstring)."""
    if s.cp == 1:
        return
    name = f"strategy {s.name!r}"
    seq_len = getattr(model, "seq_len", None)
    if seq_len is None or not hasattr(model, "heads"):
        raise LayoutError(
            f"{name}: cp = {s.cp} splits every sequence over devices, and the "
            f"{type(model).__name__} has no sequences; use cp = 1 or a GPT or Llama model"
        )
    pieces = 2 * s.cp if s.cp_balance else s.cp
    if seq_len % pieces:
        how = (
            f"cuts every sequence into 2 cp = {pieces} chunks (rank r holds chunks r and 2cp-1-r)"
            if s.cp_balance
            else f"cuts every sequence into cp = {pieces} parts"
        )
        raise LayoutError(
            f"{name}: cp = {s.cp} {how}, and seq_len = {seq_len} does not divide by "
            f"{pieces}; choose a seq_len that {pieces} divides or another cp"
        )
    if s.sequence_parallel and (seq_len // s.cp) % s.tp:
        raise LayoutError(
            f"{name}: sequence parallelism splits each context-parallel rank's "
            f"{seq_len // s.cp} tokens over tp = {s.tp}, which does not divide them; choose "
            "sizes whose product cp * tp divides seq_len"
        )
    if getattr(model, "experts", 0):
        raise LayoutError(
            f"{name}: cp = {s.cp} with a mixture of experts ([model] experts = "
            f"{model.experts}) is not supported; set cp = 1 or experts = 0"
        )
    if s.data_parallel == "replicated":
        raise LayoutError(
            f'{name}: data_parallel = "replicated" (nn.DataParallel) has no context '
            'parallelism: its primary device would have to gather every rank; use "ddp"'
        )
    if s.pp_scatter_gather:
        raise LayoutError(
            f"{name}: pp_scatter_gather with cp > 1 is not supported (a worker holds cp "
            "tensor-parallel groups); drop one of them"
        )
    if s.context_parallel == "ulysses" and model.heads % s.tp == 0:
        _check_ulysses(name, s, model.heads, getattr(model, "kv_heads", model.heads))


def _check_ulysses(name: str, s: Strategy, heads: int, kv_heads: int) -> None:
    """Ulysses' all-to-all hands each rank ``1/cp`` of its tensor-parallel rank's heads."""
    a, kv = local_heads(heads, kv_heads, s.tp)
    if a % s.cp:
        raise LayoutError(
            f'{name}: context_parallel = "ulysses" gives each of cp = {s.cp} ranks 1/cp of '
            f"the {a} query heads a tensor-parallel rank holds (heads / tp = {heads} / "
            f"{s.tp}), and cp does not divide them; choose cp among the divisors of {a} or "
            'context_parallel = "ring" or "allgather"'
        )
    if kv % s.cp and s.cp % kv:
        raise LayoutError(
            f'{name}: context_parallel = "ulysses" splits the {kv} key-value heads a '
            f"tensor-parallel rank holds over cp = {s.cp} ranks, or repeats each on cp/kv "
            f"ranks: one of cp and {kv} must divide the other; choose another cp, or "
            'context_parallel = "ring" or "allgather"'
        )
