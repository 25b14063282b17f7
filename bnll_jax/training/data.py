"""The run's batches: bnll_jax.data pipelines or a synthetic source.

Both sources yield this host's share of each global batch as a dict of
int32 [local_batch, seq_len] arrays (`input_ids`, `targets`, `loss_mask`,
`segment_ids`, `positions`; the contract is documented in
bnll_jax.data.pipeline) from a grain DatasetIterator, whose position is
saved in every checkpoint. `split_micro_batches` then reshapes a batch to
the step's [k, local_batch / k, seq_len].

The "synthetic" source is a learnable in-memory task for tests and
throughput checks: a random prompt followed by its reversal as the
response, one example per row.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import grain
import numpy as np

from bnll_jax.training.config import DataSection

logger = logging.getLogger(__name__)

FIELDS = ("input_ids", "targets", "loss_mask", "segment_ids", "positions")


class SyntheticSource:
    """Random-access source of prompt + reversed-prompt rows.

    Row i is a pure function of (seed, i), so any host or restart can
    produce it without shared state.
    """

    def __init__(self, config: DataSection, vocab_size: int):
        self._seq_len = config.max_length
        self._seed = config.seed
        self._synthetic = config.synthetic
        self._vocab_size = vocab_size
        if 2 * config.synthetic.min_prompt_len + 1 > self._seq_len:
            raise ValueError(
                f"data.max_length ({self._seq_len}) is too short for "
                "data.synthetic.min_prompt_len "
                f"({config.synthetic.min_prompt_len}); raise max_length"
            )

    def __len__(self) -> int:
        return self._synthetic.num_examples

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self._seed, int(index)])
        max_prompt = (self._seq_len - 1) // 2
        prompt_len = int(
            rng.integers(self._synthetic.min_prompt_len, max_prompt + 1)
        )
        # Token 0 is left for padding.
        prompt = rng.integers(1, self._vocab_size, prompt_len)
        tokens = np.concatenate([prompt, prompt[::-1]]).astype(np.int32)
        return pack_row(tokens, prompt_len, self._seq_len)


def pack_row(
    tokens: np.ndarray, prompt_len: int, seq_len: int
) -> dict[str, np.ndarray]:
    """One right-padded row from a token sequence (prompt then response)."""
    n = min(len(tokens), seq_len)
    out = {name: np.zeros(seq_len, np.int32) for name in FIELDS}
    out["input_ids"][:n] = tokens[:n]
    out["targets"][: n - 1] = tokens[1:n]
    # Position t predicts token t + 1: a response token once t + 1 >=
    # prompt_len.
    out["loss_mask"][max(prompt_len - 1, 0) : n - 1] = 1
    out["segment_ids"][:n] = 1
    out["positions"][:n] = np.arange(n, dtype=np.int32)
    return out


def synthetic_iterator(
    source: SyntheticSource,
    *,
    batch_size: int,
    num_epochs: int,
    seed: int,
    shuffle: bool = True,
    process_index: int = 0,
    process_count: int = 1,
) -> grain.DatasetIterator:
    """This host's rows [p * B/P, (p + 1) * B/P) of every global batch."""
    if batch_size % process_count:
        raise ValueError(
            f"data.batch_size ({batch_size}) must be divisible by the "
            f"number of hosts ({process_count})"
        )
    local = batch_size // process_count
    dataset = grain.MapDataset.source(source)
    if shuffle:
        dataset = dataset.shuffle(seed=seed)
    dataset = dataset.repeat(num_epochs).batch(batch_size, drop_remainder=True)
    dataset = dataset.map(
        lambda batch: {
            key: value[process_index * local : (process_index + 1) * local]
            for key, value in batch.items()
        }
    )
    options = grain.ReadOptions(num_threads=1, prefetch_buffer_size=2)
    return iter(dataset.to_iter_dataset(options))


def split_micro_batches(
    batch: dict[str, np.ndarray], micro_batches: int
) -> dict[str, np.ndarray]:
    """[b, t] -> [k, b / k, t] for the step's gradient-accumulation scan."""
    return {
        key: value.reshape(micro_batches, -1, *value.shape[1:])
        for key, value in batch.items()
    }


class RunData:
    """The batches of a run: how many, how long, and fresh iterators."""

    def __init__(self, config: DataSection, vocab_size: int, tokenizer: Any):
        self._config = config
        self._vocab_size = vocab_size
        self._tokenizer = tokenizer
        self._prepared: dict[Any, Any] = {}
        if config.source == "synthetic":
            self._synthetic = SyntheticSource(config, vocab_size)
            self.seq_len = config.max_length
            self.steps = (
                config.num_epochs * len(self._synthetic) // config.batch_size
            )
        else:
            from bnll_jax.data import prepare_data

            prepared = prepare_data(config, tokenizer)
            self._prepared[config.resolved()] = prepared
            self.seq_len = prepared.report.seq_len
            self.steps = prepared.report.steps

    def iterator(
        self,
        process_index: int,
        process_count: int,
        *,
        evaluation: bool = False,
    ) -> grain.DatasetIterator:
        """The training order, or for `evaluation` one unshuffled pass."""
        config = self._config
        if evaluation:
            config = dataclasses.replace(config, shuffle=False, num_epochs=1)
        if config.source == "synthetic":
            return synthetic_iterator(
                self._synthetic,
                batch_size=config.batch_size,
                num_epochs=config.num_epochs,
                seed=config.seed,
                shuffle=config.shuffle,
                process_index=process_index,
                process_count=process_count,
            )
        from bnll_jax.data import make_iterator, prepare_data

        key = config.resolved()
        if key not in self._prepared:
            self._prepared[key] = prepare_data(config, self._tokenizer)
        return make_iterator(
            config,
            self._tokenizer,
            process_index,
            process_count,
            prepared=self._prepared[key],
        )
