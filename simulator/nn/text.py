"""Token data for language models, a pure function of (seed, step).

Two tasks, both returning ``(tokens, targets)`` as int64 ``(batch, seq_len)``
arrays with ``targets[:, t] = tokens[:, t + 1]`` in the underlying sequence
(next-token prediction):

* ``synthetic``: sequences of a fixed random *bigram rule*. Each token has
  :data:`BRANCHING` possible successors, drawn once from the seed; a sequence
  starts at a random token and picks one successor uniformly at every step.
  A model that learns the rule reaches ``ln(BRANCHING)`` nats per token (a bit
  less where a token's successors coincide), down from ``ln(vocab)``.
* ``text``: windows of a small public-domain text shipped with the package
  (the opening of Lewis Carroll's *Alice's Adventures in Wonderland*, 1865),
  one token per character, for a character-level model.

The whole global batch of a step is drawn at once and every strategy slices
it the same way, as :mod:`simulator.nn.data` explains.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import numpy as np

from ..errors import ConfigError
from ..ops.arrays import Array, ShapeArray
from .data import rng_for

#: Successors per token of the synthetic bigram rule.
BRANCHING = 2
#: The data tasks a language model's ``data`` key names.
DATA = ("synthetic", "text")
#: The text shipped in ``simulator/data``.
TEXT = "alice"


def bigram_batch(seed: int, step: int, batch: int, seq_len: int, vocab: int) -> tuple[Array, Array]:
    """Sequences of the seed's bigram rule (see the module docstring)."""
    successors = rng_for(seed, 1_000_033).integers(vocab, size=(vocab, BRANCHING))
    rng = rng_for(seed, 3, step)
    seq = np.empty((batch, seq_len + 1), dtype=np.int64)
    seq[:, 0] = rng.integers(vocab, size=batch)
    choice = rng.integers(BRANCHING, size=(batch, seq_len))
    for t in range(seq_len):
        seq[:, t + 1] = successors[seq[:, t], choice[:, t]]
    return seq[:, :-1].copy(), seq[:, 1:].copy()


@cache
def load_text(name: str = TEXT) -> str:
    """The text ``simulator/data/<name>.txt``."""
    return (resources.files("simulator") / "data" / f"{name}.txt").read_text(encoding="utf-8")


def alphabet(name: str = TEXT) -> str:
    """The distinct characters of the text, sorted: character ``alphabet[i]`` is token ``i``."""
    return "".join(sorted(set(load_text(name))))


def check_vocab(vocab: int, name: str = TEXT) -> None:
    """Raise ConfigError unless ``vocab`` tokens cover every character of the text."""
    needed = len(alphabet(name))
    if vocab < needed:
        raise ConfigError(
            f"the text {name!r} has {needed} distinct characters but vocab is {vocab}; "
            f"use vocab >= {needed}"
        )


def check_seq_len(seq_len: int, name: str = TEXT) -> None:
    """Raise ConfigError unless the text holds a window of ``seq_len + 1`` characters
    (a sequence and its next-token targets)."""
    length = len(load_text(name))
    if seq_len + 1 > length:
        raise ConfigError(
            f"the text {name!r} has {length} characters, too few for seq_len = {seq_len} "
            f"(a window is seq_len + 1 characters); use seq_len <= {length - 1}"
        )


def encode(text: str, name: str = TEXT) -> np.ndarray:
    """Token ids of ``text`` (every character must occur in the shipped text)."""
    index = {c: i for i, c in enumerate(alphabet(name))}
    return np.array([index[c] for c in text], dtype=np.int64)


def decode(ids: np.ndarray, name: str = TEXT) -> str:
    """The characters of token ids, e.g. to read a model's predictions."""
    chars = alphabet(name)
    return "".join(chars[i] for i in np.asarray(ids).reshape(-1))


def text_batch(
    seed: int, step: int, batch: int, seq_len: int, name: str = TEXT
) -> tuple[Array, Array]:
    """``batch`` windows of ``seq_len + 1`` characters at random offsets of the text."""
    check_seq_len(seq_len, name)
    ids = _encoded(name)
    starts = rng_for(seed, 4, step).integers(len(ids) - seq_len, size=batch)
    windows = ids[starts[:, None] + np.arange(seq_len + 1)]
    return windows[:, :-1].copy(), windows[:, 1:].copy()


@cache
def _encoded(name: str) -> np.ndarray:
    return encode(load_text(name), name)


class LanguageModelData:
    """What every language model config shares (mixed into GPT's and Llama's): its
    pipeline blocks, its padded vocabulary, its data and its unit of throughput.

    Expects the fields ``layers``, ``seq_len``, ``vocab``,
    ``make_vocab_size_divisible_by`` and ``data``.
    """

    layers: int
    seq_len: int
    vocab: int
    make_vocab_size_divisible_by: int
    data: str

    @property
    def num_blocks(self) -> int:
        """The embedding, every layer, and the head."""
        return self.layers + 2

    def padded_vocab(self, tp: int = 1) -> int:
        """Rows of the token table under ``tp``-way tensor parallelism (Megatron-LM's
        ``_vocab_size_with_padding``): 50257 words give 50304 for ``tp = 1`` and
        51200 for ``tp = 8``."""
        from .embedding import padded_vocab

        return padded_vocab(self.vocab, self.make_vocab_size_divisible_by, tp)

    def batch(self, seed: int, step: int, global_batch: int, numerics: bool) -> tuple[Array, Array]:
        """Tokens and next-token targets, int64 ``(global_batch, seq_len)``."""
        if not numerics:
            shape = (global_batch, self.seq_len)
            return ShapeArray(shape, "int64"), ShapeArray(shape, "int64")
        if self.data == "text":
            return text_batch(seed, step, global_batch, self.seq_len)
        return bigram_batch(seed, step, global_batch, self.seq_len, self.vocab)

    def tokens(self, samples: int) -> int:
        """Tokens are the unit of throughput of a language model."""
        return samples * self.seq_len

    def check_data(self, kind: str) -> None:
        """Raise ConfigError for a data task the vocabulary or the sequence cannot serve."""
        if self.data not in DATA:
            raise ConfigError(f"{kind}: data must be one of {DATA}, got {self.data!r}", "data")
        if self.data == "text":
            check_vocab(self.vocab)
            check_seq_len(self.seq_len)
