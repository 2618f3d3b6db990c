"""From a strategy to a plan: who holds what, and what each worker runs. Pure
lowering: nothing here advances a clock (the runtime executes the plan).

* :mod:`.strategy` -- :class:`Strategy`, the keys of a ``[[strategy]]`` table;
* :mod:`.mesh` -- :class:`Mesh`: dp x tp x pp coordinates of every device;
* :mod:`.pipeline` -- schedules as data, their registry, validator and
  unit-time timeline;
* :mod:`.tensor` -- tensor and sequence parallelism: a layer split over a
  lockstep group;
* :mod:`.data` -- data-parallel variants (DDP, ZeRO, ``nn.DataParallel``) as
  registry entries;
* :mod:`.partition` (blocks into stages), :mod:`.stage` (a chunk of blocks
  and its stash), :mod:`.reuse` and :mod:`.block_key` (shape-only traces of
  alike blocks, copied),
  :mod:`.tied` (weights shared across stages),
  :mod:`.worker` and :mod:`.program` (one list of instructions per worker);
* :mod:`.build` -- :func:`build_plan`: checks the layout and puts it all together.
"""

from .build import Plan, Worker, build_plan, gather_params
from .mesh import Mesh
from .strategy import Strategy

__all__ = ["Mesh", "Plan", "Strategy", "Worker", "build_plan", "gather_params"]
