"""A worker: the lockstep tensor-parallel group that runs one program."""

from __future__ import annotations

from dataclasses import dataclass, field

from .program import Instruction
from .stage import Chunk


@dataclass
class Worker:
    """A lockstep tensor-parallel group: ``devices[r]`` runs TP rank ``r``."""

    index: int
    dp_rank: int
    pp_rank: int
    devices: tuple[int, ...]
    chunks: dict[int, Chunk] = field(default_factory=dict)
    program: list[Instruction] = field(default_factory=list)

    def params(self, rank: int) -> list:
        return [p for c in self.chunks.values() for p in c.params(rank)]

    def listing(self) -> str:
        """The program, one instruction per line."""
        head = (
            f"worker {self.index} (dp {self.dp_rank}, pp {self.pp_rank}, devices "
            f"{list(self.devices)})"
        )
        return "\n".join([head, *(f"  {i:3d}  {ins}" for i, ins in enumerate(self.program))])
