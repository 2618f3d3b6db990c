"""What a model kind provides to the rest of the simulator.

A scenario's ``[model]`` table becomes a config (:class:`~.models.MLPConfig`,
:class:`~.gpt.GPTConfig`, :class:`~.abstract.AbstractConfig`); everything
above ``nn`` -- the scenario reader, the planner, the plan builder and the
runtime -- talks to a model through this contract and nothing else. Two
members have defaults that models made of real layers keep: an abstract model
states its stage times and message times instead of having layers to measure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from ..ops.arrays import Array
    from .models import Model


class ModelConfig(Protocol):
    """The contract of a model kind (see the module docstring).

    Attributes:
        kind: the ``[model] kind`` that names it.
        dtype: the element type of its parameters and activations.
    """

    kind: ClassVar[str]
    dtype: str

    @property
    def num_blocks(self) -> int:
        """Blocks a pipeline may cut between, known without building the model."""
        ...

    def build(self, seed: int, numerics: bool) -> Model:
        """The model with weights drawn from ``seed`` (without ``numerics``: shapes only,
        no numbers)."""
        ...

    def batch(self, seed: int, step: int, global_batch: int, numerics: bool) -> tuple[Array, Array]:
        """Inputs and targets of step ``step``'s global batch."""
        ...

    def tokens(self, samples: int) -> int:
        """Tokens in ``samples`` samples (the unit of throughput)."""
        ...

    def block_costs(self) -> list[float] | None:
        """Seconds of forward plus backward of every block for one micro-batch, when
        the model states them; None: measure its layers."""
        return None

    def transfer_seconds(self, stage: int, what: str) -> float | None:
        """Seconds of a pipeline message leaving ``stage``, when the model states it;
        None: the network times it."""
        return None
