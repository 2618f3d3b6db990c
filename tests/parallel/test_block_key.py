"""Blocks trace alike when everything they hold is equal, names and dropout seeds aside."""

from __future__ import annotations

import numpy as np

from simulator.nn.gpt import GPTConfig
from simulator.nn.llama import LlamaConfig
from simulator.ops.arrays import ShapeArray
from simulator.parallel.block_key import block_key, input_key

GPT = GPTConfig(layers=3, hidden=16, heads=2, seq_len=8, vocab=16, dropout=0.1)


def layers(config: GPTConfig | LlamaConfig) -> list:
    model = config.build(0, numerics=False)
    return [b for b in model.blocks if b.name.startswith("layer")]


def test_layers_that_differ_in_name_and_dropout_seed_alone_are_alike() -> None:
    first, second, third = layers(GPT)
    assert block_key(first) == block_key(second) == block_key(third)
    assert first.drop2.layer != second.drop2.layer  # the seeds differ
    llama = layers(LlamaConfig(layers=2, hidden=16, heads=4, kv_heads=2, ffn_hidden=12,
                               seq_len=8, vocab=16))  # fmt: skip
    assert block_key(llama[0]) == block_key(llama[1]) != block_key(first)


def test_a_setting_a_shape_or_what_parts_share_makes_layers_differ() -> None:
    first, second, third = layers(GPT)
    second.core.selective = not second.core.selective
    assert block_key(first) != block_key(second)
    wider = layers(GPTConfig(layers=2, hidden=32, heads=2, seq_len=8, vocab=16, dropout=0.1))
    assert block_key(wider[0]) != block_key(first)
    third.ln2 = third.ln1  # its second norm replaced by its first
    assert block_key(third) != block_key(first)


def test_inputs_key_their_shapes_dtypes_and_sharing_and_refuse_the_rest() -> None:
    x, y = ShapeArray((2, 4), "bf16"), ShapeArray((2, 4), "bf16")
    assert input_key([x, y]) == input_key([ShapeArray((2, 4), "bf16"), y])
    assert input_key([x, x]) != input_key([x, y])  # one array twice is not two arrays
    assert input_key([x, y]) != input_key([x, ShapeArray((2, 4), "float32")])
    assert input_key(([x], None, "inputs")) is not None
    assert input_key([np.zeros(3)]) is None
