"""Token data: the bigram task and the shipped text."""

import numpy as np
import pytest

from simulator.nn import text


def test_bigram_sequences_follow_the_rule_and_targets_are_next_tokens():
    tokens, targets = text.bigram_batch(seed=1, step=0, batch=64, seq_len=12, vocab=10)
    assert tokens.shape == targets.shape == (64, 12) and tokens.dtype == np.int64
    np.testing.assert_array_equal(tokens[:, 1:], targets[:, :-1])
    successors: dict[int, set[int]] = {}
    for a, b in zip(tokens.reshape(-1), targets.reshape(-1), strict=True):
        successors.setdefault(int(a), set()).add(int(b))
    assert max(len(v) for v in successors.values()) <= text.BRANCHING
    # the rule is the seed's, the sequences the step's
    again, _ = text.bigram_batch(seed=1, step=0, batch=64, seq_len=12, vocab=10)
    other, _ = text.bigram_batch(seed=1, step=1, batch=64, seq_len=12, vocab=10)
    np.testing.assert_array_equal(tokens, again)
    assert not np.array_equal(tokens, other)


def test_text_windows_are_pieces_of_the_text():
    tokens, targets = text.text_batch(seed=0, step=3, batch=4, seq_len=20)
    source = text.load_text()
    for row, nxt in zip(tokens, targets, strict=True):
        assert text.decode(row) + text.decode(nxt[-1:]) in source
        np.testing.assert_array_equal(row[1:], nxt[:-1])


def test_the_shipped_text_is_a_few_kilobytes_of_plain_text():
    source = text.load_text()
    assert 3_000 < len(source) < 20_000
    assert source.isascii() and "Alice" in source
    assert text.decode(text.encode("Down, down, down.")) == "Down, down, down."
    assert len(text.alphabet()) <= 64  # so vocab = 64 covers the characters


def test_a_vocabulary_too_small_for_the_text_is_a_clear_error():
    with pytest.raises(ValueError, match=f"use vocab >= {len(text.alphabet())}"):
        text.check_vocab(len(text.alphabet()) - 1)
