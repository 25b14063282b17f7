"""Packing: nothing split or lost, correct segments, honest padding."""

import numpy as np
import pytest

from bnll_jax.data import packing
from bnll_jax.data.examples import Example, TokenizedExamples


def _examples(lengths, seed=0):
    rng = np.random.default_rng(seed)
    examples = []
    for i, n in enumerate(lengths):
        tokens = rng.integers(10, 1000, size=n).astype(np.int32)
        mask = np.zeros(n, bool)
        mask[rng.integers(1, n) :] = True  # A prompt, then the response.
        examples.append(Example(i, tokens, mask, truncated=False))
    return TokenizedExamples(examples)


def test_best_fit_decreasing_places_every_item_once_within_capacity():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 301, size=2000)
    bins = packing.best_fit_decreasing(lengths, 300, rng.permutation(2000))
    placed = sorted(i for b in bins for i in b)
    assert placed == list(range(2000))
    assert max(sum(lengths[i] for i in b) for b in bins) <= 300
    # Within 3% of the lower bound ceil(total / capacity) on these sizes.
    lower_bound = -(-lengths.sum() // 300)
    assert len(bins) <= 1.03 * lower_bound


def test_best_fit_beats_or_ties_first_fit_decreasing():
    def first_fit_decreasing(lengths, capacity):
        spaces = []
        for size in sorted(lengths, reverse=True):
            for j, space in enumerate(spaces):
                if space >= size:
                    spaces[j] -= size
                    break
            else:
                spaces.append(capacity - size)
        return len(spaces)

    rng = np.random.default_rng(1)
    for _ in range(20):
        lengths = rng.integers(20, 700, size=300)
        bins = packing.best_fit_decreasing(lengths, 1024)
        assert len(bins) <= first_fit_decreasing(lengths.tolist(), 1024)


def test_best_fit_rejects_items_longer_than_capacity():
    with pytest.raises(ValueError, match="exceeds the bin capacity 8"):
        packing.best_fit_decreasing(np.array([3, 9]), 8)


def test_pack_row_segments_positions_and_targets():
    examples = _examples([5, 3, 4])
    row = packing.pack_row(examples, [2, 0, 1], seq_len=16, pad_id=0)
    assert set(row) == set(packing.FIELDS)
    assert all(v.dtype == np.int32 and v.shape == (16,) for v in row.values())
    assert row["segment_ids"].tolist() == [1] * 4 + [2] * 5 + [3] * 3 + [0] * 4
    assert (
        row["positions"].tolist()
        == [0, 1, 2, 3, 0, 1, 2, 3, 4, 0, 1, 2] + [0] * 4
    )

    start = 0
    for example_id in (2, 0, 1):
        tokens, mask = examples.get(example_id)
        end = start + len(tokens)
        assert row["input_ids"][start:end].tolist() == tokens.tolist()
        # Targets are the next token of the same example, never the next
        # example's first token, and the loss follows the target's mask.
        assert row["targets"][start : end - 1].tolist() == tokens[1:].tolist()
        assert row["targets"][end - 1] == 0
        assert row["loss_mask"][start : end - 1].tolist() == mask[1:].tolist()
        assert row["loss_mask"][end - 1] == 0
        start = end
    assert not row["loss_mask"][start:].any()
    assert (row["input_ids"][start:] == 0).all()


def test_pack_row_of_no_examples_is_all_padding():
    row = packing.pack_row(_examples([4]), [], seq_len=8, pad_id=7)
    assert (row["input_ids"] == 7).all() and not row["loss_mask"].any()
    assert not row["segment_ids"].any()


def test_padding_fraction_counts_unused_positions():
    examples = _examples([5, 3, 4, 8])
    rows = [[0, 1], [2], [3]]
    fraction = packing.padding_fraction(examples.lengths, rows, seq_len=10)
    packed = [packing.pack_row(examples, r, 10, 0) for r in rows]
    padding = sum(int((p["segment_ids"] == 0).sum()) for p in packed)
    assert fraction == pytest.approx(padding / 30)
    assert fraction == pytest.approx(1 - 20 / 30)
