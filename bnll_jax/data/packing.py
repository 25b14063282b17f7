"""Sequence packing: several examples in one fixed-length row.

Examples are assigned to rows by best-fit decreasing (longest first, each
into the fullest row that still has room), which wastes less than
first-fit decreasing and far less than one right-padded example per row.
A packed row carries, per position t of a row of length T:

    input_ids[t]    the token at t
    targets[t]      the token at t+1 of the same segment (pad at its end)
    loss_mask[t]    1 if targets[t] is a response or EOS token
    segment_ids[t]  1, 2, ... per example in the row; 0 on padding
    positions[t]    t minus the start of its segment

so targets and the loss never cross from one example into the next.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np

from bnll_jax.data.examples import TokenizedExamples

FIELDS = ("input_ids", "targets", "loss_mask", "segment_ids", "positions")


def best_fit_decreasing(
    lengths: np.ndarray, capacity: int, order: np.ndarray | None = None
) -> list[list[int]]:
    """Packs items of the given lengths into bins of `capacity`.

    Args:
      lengths: int [n] item lengths, each at most `capacity`.
      capacity: bin size.
      order: a permutation of the items; among equal lengths, items are
        placed in this order (so a shuffled order varies the bins).

    Returns:
      Bins in creation order, each a list of item indices.
    """
    lengths = np.asarray(lengths)
    if len(lengths) and lengths.max() > capacity:
        raise ValueError(
            f"an item of length {lengths.max()} exceeds the bin capacity "
            f"{capacity}; truncate examples to max_length first"
        )
    order = np.arange(len(lengths)) if order is None else np.asarray(order)
    # Stable sort: longest first, ties in `order`.
    items = order[np.argsort(-lengths[order], kind="stable")]

    bins: list[list[int]] = []
    # Open bins grouped by free space; `spaces` is the sorted list of free
    # space values that have at least one open bin. At most `capacity`
    # distinct values, so the list operations stay cheap.
    open_by_space: dict[int, list[int]] = {}
    spaces: list[int] = []
    for item in items.tolist():
        size = int(lengths[item])
        slot = bisect.bisect_left(spaces, size)
        if slot < len(spaces):
            space = spaces[slot]
            bin_id = open_by_space[space].pop()
            if not open_by_space[space]:
                del open_by_space[space]
                spaces.pop(slot)
        else:
            space, bin_id = capacity, len(bins)
            bins.append([])
        bins[bin_id].append(item)
        left = space - size
        if left > 0:
            if left not in open_by_space:
                open_by_space[left] = []
                bisect.insort(spaces, left)
            open_by_space[left].append(bin_id)
    return bins


def pack_row(
    examples: TokenizedExamples,
    example_ids: Sequence[int],
    seq_len: int,
    pad_id: int,
) -> dict[str, np.ndarray]:
    """Lays the given examples end to end in one row of `seq_len`.

    An empty `example_ids` gives an all-padding row (loss mask all zero),
    used to fill the last batch to a fixed shape.
    """
    row = {name: np.zeros(seq_len, np.int32) for name in FIELDS}
    row["input_ids"][:] = pad_id
    row["targets"][:] = pad_id
    start = 0
    for segment, example_id in enumerate(example_ids, start=1):
        tokens, mask = examples.get(int(example_id))
        end = start + len(tokens)
        if end > seq_len:
            raise ValueError(
                f"examples {list(example_ids)} do not fit in {seq_len} tokens"
            )
        row["input_ids"][start:end] = tokens
        row["targets"][start : end - 1] = tokens[1:]
        row["loss_mask"][start : end - 1] = mask[1:]
        row["segment_ids"][start:end] = segment
        row["positions"][start:end] = np.arange(len(tokens))
        start = end
    return row


def padding_fraction(
    lengths: np.ndarray, rows: Sequence[Sequence[int]], seq_len: int
) -> float:
    """Share of row positions that hold padding."""
    if not rows:
        return 0.0
    used = sum(int(lengths[i]) for row in rows for i in row)
    return 1.0 - used / (len(rows) * seq_len)
