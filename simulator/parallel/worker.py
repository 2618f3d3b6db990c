"""A worker: the lockstep tensor-parallel group that runs one program."""

from __future__ import annotations

from dataclasses import dataclass, field

from .program import describe
from .stage import Chunk


@dataclass(eq=False)
class Worker:
    """A lockstep tensor-parallel group: ``devices[r]`` runs TP rank ``r``.

    ``program`` is shared with the other replicas of the same pipeline rank;
    ``peers`` maps the pipeline ranks its messages name to worker indices.
    """

    index: int
    dp_rank: int
    pp_rank: int
    devices: tuple[int, ...]
    chunks: dict[int, Chunk] = field(default_factory=dict)
    program: list[tuple] = field(default_factory=list)
    peers: dict[int, int] = field(default_factory=dict)

    def params(self, rank: int) -> list:
        return [p for c in self.chunks.values() for p in c.params(rank)]

    def listing(self) -> str:
        """The program, one instruction per line."""
        head = (
            f"worker {self.index} (dp {self.dp_rank}, pp {self.pp_rank}, devices "
            f"{list(self.devices)})"
        )
        lines = (f"  {i:3d}  {describe(ins, self.peers)}" for i, ins in enumerate(self.program))
        return "\n".join([head, *lines])
