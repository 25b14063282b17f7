"""Training batches: a grain pipeline from examples to [k, b, t] arrays.

Each example is a dict of int32 [seq_len] arrays in the project's batch
format: `input_ids`, `targets` (the next token at every position),
`loss_mask` (1 where the target is a response token), `segment_ids`
(0 = padding) and `positions`. The pipeline shuffles with the run's seed
(reshuffled every epoch), gives this host every `process_count`-th example,
batches this host's share of the global batch and splits it into the step's
micro-batches. Its iterator state is saved in every checkpoint, so a
resumed run sees exactly the batches the uninterrupted run would have.

The "synthetic" source makes a learnable in-memory task for tests and
throughput checks: a random prompt followed by its reversal as the response.
"""

from __future__ import annotations

from typing import Any

import grain
import numpy as np

from bnll_jax.training.config import DataSection

FIELDS = ("input_ids", "targets", "loss_mask", "segment_ids", "positions")


class SyntheticSource:
    """Random-access source of prompt + reversed-prompt sequences.

    Example i is a pure function of (seed, i), so any host or restart can
    produce it without shared state.
    """

    def __init__(self, config: DataSection, vocab_size: int):
        synthetic = config.synthetic
        if 2 * synthetic.min_prompt_len + 1 > config.seq_len:
            raise ValueError(
                f"data.seq_len ({config.seq_len}) is too short for "
                "data.synthetic.min_prompt_len "
                f"({synthetic.min_prompt_len}); raise seq_len"
            )
        self._config = config
        self._vocab_size = vocab_size

    def __len__(self) -> int:
        return self._config.synthetic.num_examples

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        seq_len = self._config.seq_len
        rng = np.random.default_rng([self._config.seed, int(index)])
        max_prompt = (seq_len - 1) // 2
        prompt_len = int(
            rng.integers(self._config.synthetic.min_prompt_len, max_prompt + 1)
        )
        # Token 0 is kept for padding; the response is the prompt reversed.
        prompt = rng.integers(1, self._vocab_size, prompt_len)
        tokens = np.concatenate([prompt, prompt[::-1]]).astype(np.int32)
        return pack_example(tokens, prompt_len, seq_len)


def pack_example(
    tokens: np.ndarray, prompt_len: int, seq_len: int
) -> dict[str, np.ndarray]:
    """One right-padded row from a token sequence (prompt then response)."""
    n = min(len(tokens), seq_len)
    out = {name: np.zeros(seq_len, np.int32) for name in FIELDS}
    out["input_ids"][:n] = tokens[:n]
    out["targets"][: n - 1] = tokens[1:n]
    # Position t predicts token t + 1, a response token when t + 1 >=
    # prompt_len.
    out["loss_mask"][max(prompt_len - 1, 0) : n - 1] = 1
    out["segment_ids"][:n] = 1
    out["positions"][:n] = np.arange(n, dtype=np.int32)
    return out


def build_source(config: DataSection, vocab_size: int) -> Any:
    """The random-access example source named by `data.source`."""
    if config.source == "synthetic":
        return SyntheticSource(config, vocab_size)
    raise ValueError(
        f"data.source {config.source!r} is not available; use 'synthetic'"
    )


def _split_micro_batches(
    batch: dict[str, np.ndarray], micro_batches: int
) -> dict[str, np.ndarray]:
    return {
        key: value.reshape(micro_batches, -1, *value.shape[1:])
        for key, value in batch.items()
    }


def batch_iterator(
    source: Any,
    *,
    batch_size: int,
    micro_batches: int,
    epochs: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
) -> grain.DatasetIterator:
    """This host's [k, batch_size / (k * process_count), t] batches."""
    if batch_size % process_count:
        raise ValueError(
            f"data.batch_size ({batch_size}) must be divisible by the "
            f"number of hosts ({process_count})"
        )
    dataset = (
        grain.MapDataset.source(source)
        .shuffle(seed=seed)
        .repeat(epochs)[process_index::process_count]
        .batch(batch_size // process_count, drop_remainder=True)
        .map(lambda batch: _split_micro_batches(batch, micro_batches))
    )
    # Batches are a few numpy slices each: one reader thread keeps up and
    # keeps the iterator state trivially consistent with what was consumed.
    options = grain.ReadOptions(num_threads=1, prefetch_buffer_size=2)
    return iter(dataset.to_iter_dataset(options))
