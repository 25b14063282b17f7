"""The training data pipeline: rows to fixed-shape batches, with grain.

Batch contract (what every iterator from `make_iterator` yields): a dict of
numpy int32 arrays, all shaped [local_batch, seq_len], where local_batch is
`batch_size // process_count` and seq_len is the config's `max_length`:

    input_ids    token ids; padding positions hold the pad id
    targets      targets[b, t] = input_ids[b, t + 1] within the same
                 segment; the last position of a segment and padding hold
                 the pad id
    loss_mask    1 where targets[b, t] is a response or EOS token, else 0;
                 never 1 on a segment's last position or on padding
    segment_ids  1, 2, ... for the examples packed in a row; 0 on padding
    positions    0, 1, ... restarting at every segment; 0 on padding

Targets and the loss never cross a segment boundary; the model is expected
to keep attention within a segment. Without packing each row holds one
example (segment id 1) followed by padding.

Order and resumption: `prepare_data` tokenizes every row once, counts bad
and truncated rows, and plans the rows of all epochs: each epoch shuffles
the examples with `(seed, epoch)`, packs them, and shuffles the packed rows.
The plan is then cut into global batches; host p of P takes rows
`[p * B/P, (p + 1) * B/P)` of every global batch of B rows. The last global
batch is filled with all-padding rows rather than dropping examples. The
iterator is a grain `DatasetIterator` over this plan, so its state (a
position) is checkpointed with `grain.checkpoint.CheckpointSave` under
Orbax, and a restored run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import grain
import numpy as np
import tqdm

from bnll_jax.data import builders, cache, packing
from bnll_jax.data.config import DataConfig
from bnll_jax.data.examples import (
    BadRow,
    Example,
    ExampleEncoder,
    TokenizedExamples,
)

logger = logging.getLogger(__name__)

_ENCODE_CHUNK = 512  # Rows per tokenizer call; the tokenizer batches them.
_LISTED = 20  # Bad or truncated rows named one by one in the log.


@dataclasses.dataclass(frozen=True)
class DataReport:
    """What became of the rows, and how full the batches are.

    Attributes:
      source: the dataset, builder config and split that was read.
      num_rows: rows in the split.
      num_examples: rows that became examples.
      bad_rows: rows skipped, with their source index and reason.
      truncated_rows: source indices of examples cut to `seq_len`.
      num_tokens / num_loss_tokens: tokens in all examples, and those in
        the loss (response and EOS).
      seq_len: tokens per row.
      packing: whether examples were packed.
      num_batch_rows: rows over all epochs, fill rows included.
      num_fill_rows: all-padding rows that complete the last batch.
      padding_fraction: share of the positions of rows holding examples
        that are padding: what packing (or right-padding) wastes.
      batch_padding_fraction: the same over all rows, fill rows included.
      unpacked_padding_fraction: the share one right-padded example per
        row would waste, for comparison.
      steps: global batches over all epochs.
      examples_per_step: mean examples in a global batch.
    """

    source: str
    num_rows: int
    num_examples: int
    bad_rows: tuple[BadRow, ...]
    truncated_rows: tuple[int, ...]
    num_tokens: int
    num_loss_tokens: int
    seq_len: int
    packing: bool
    num_batch_rows: int
    num_fill_rows: int
    padding_fraction: float
    batch_padding_fraction: float
    unpacked_padding_fraction: float
    steps: int
    examples_per_step: float

    def summary(self) -> str:
        lines = [
            f"data {self.source}: {self.num_examples}/{self.num_rows} rows "
            f"used, {len(self.bad_rows)} bad, {len(self.truncated_rows)} "
            f"truncated to {self.seq_len} tokens",
            f"  {self.num_tokens} tokens, {self.num_loss_tokens} in the loss;"
            f" {self.num_batch_rows} rows ({self.num_fill_rows} fill) in "
            f"{self.steps} steps of {self.examples_per_step:.1f} examples",
            f"  padding {self.padding_fraction:.2%} "
            f"({'packed' if self.packing else 'unpacked'}; one example per "
            f"row would pad {self.unpacked_padding_fraction:.2%}), "
            f"{self.batch_padding_fraction:.2%} with fill rows",
        ]
        for bad in self.bad_rows[:_LISTED]:
            lines.append(f"  bad row {bad.index}: {bad.reason}")
        if len(self.bad_rows) > _LISTED:
            lines.append(f"  ... and {len(self.bad_rows) - _LISTED} more")
        if self.truncated_rows:
            shown = ", ".join(map(str, self.truncated_rows[:_LISTED]))
            more = len(self.truncated_rows) > _LISTED
            lines.append(f"  truncated rows: {shown}{', ...' if more else ''}")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """Tokenized examples and the row plan of all epochs."""

    config: DataConfig
    examples: TokenizedExamples
    plan: list[list[int]]
    pad_id: int
    report: DataReport


def prepare_data(config: DataConfig, tokenizer: Any) -> PreparedData:
    """Reads and tokenizes every row, plans all epochs, logs the report."""
    config = config.resolved()
    rows = builders.open_rows(config)
    tokenized, bad_rows, truncated = _tokenize(rows, config, tokenizer)
    if bad_rows and config.on_bad_row == "error":
        first = bad_rows[0]
        raise ValueError(
            f"{len(bad_rows)} bad rows in {rows.name}, the first is row "
            f"{first.index}: {first.reason}; fix the rows or set "
            "on_bad_row='skip'"
        )
    if not len(tokenized):
        raise ValueError(
            f"no row of {rows.name} became an example ({len(bad_rows)} bad;"
            " first: "
            f"{bad_rows[0].reason if bad_rows else 'the split is empty'}); "
            "check prompt_field/response_field and max_length"
        )

    plan: list[list[int]] = []
    for epoch in range(config.num_epochs):
        plan += epoch_rows(tokenized.lengths, config, epoch)
    num_fill = -len(plan) % config.batch_size
    plan += [[] for _ in range(num_fill)]

    report = _report(rows, config, tokenized, plan, bad_rows, truncated)
    pad_id = tokenizer.pad_token_id
    pad_id = tokenizer.eos_token_id if pad_id is None else pad_id
    log = logger.warning if bad_rows or report.truncated_rows else logger.info
    log("%s", report.summary())
    return PreparedData(config, tokenized, plan, int(pad_id), report)


def _report(
    rows: builders.RowSource,
    config: DataConfig,
    tokenized: TokenizedExamples,
    plan: list[list[int]],
    bad_rows: list[BadRow],
    truncated: tuple[int, ...],
) -> DataReport:
    seq_len = config.max_length
    num_fill = sum(1 for row in plan if not row)
    steps = len(plan) // config.batch_size
    return DataReport(
        source=rows.name,
        num_rows=len(rows),
        num_examples=len(tokenized),
        bad_rows=tuple(bad_rows),
        truncated_rows=truncated,
        num_tokens=int(tokenized.lengths.sum()),
        num_loss_tokens=int(tokenized.loss_mask.sum()),
        seq_len=seq_len,
        packing=config.packing,
        num_batch_rows=len(plan),
        num_fill_rows=num_fill,
        padding_fraction=packing.padding_fraction(
            tokenized.lengths, [row for row in plan if row], seq_len
        ),
        batch_padding_fraction=packing.padding_fraction(
            tokenized.lengths, plan, seq_len
        ),
        unpacked_padding_fraction=1.0
        - float(tokenized.lengths.mean()) / seq_len,
        steps=steps,
        examples_per_step=len(tokenized) * config.num_epochs / steps,
    )


def _tokenize(
    rows: builders.RowSource, config: DataConfig, tokenizer: Any
) -> tuple[TokenizedExamples, list[BadRow], tuple[int, ...]]:
    """Examples, bad rows and truncated row indices, via the cache."""
    path = os.path.join(
        rows.cache_dir,
        cache.cache_key(rows.fingerprint, config, tokenizer) + ".npz",
    )
    if config.cache_tokenized and (cached := cache.load(path)) is not None:
        return cached

    encoder = ExampleEncoder(tokenizer, config)
    examples: list[Example] = []
    bad_rows: list[BadRow] = []
    for start in tqdm.trange(
        0, len(rows), _ENCODE_CHUNK, desc=f"tokenizing {rows.name}"
    ):
        stop = min(start + _ENCODE_CHUNK, len(rows))
        for result in encoder.encode(rows.read(start, stop)):
            if isinstance(result, Example):
                examples.append(result)
            else:
                bad_rows.append(result)
    # Array-record files hold rows in a hashed order; source order makes
    # the unshuffled stream and the report read naturally.
    examples.sort(key=lambda e: e.index)
    bad_rows.sort(key=lambda b: b.index)
    tokenized = TokenizedExamples(examples)
    truncated = tuple(e.index for e in examples if e.truncated)
    if config.cache_tokenized:
        cache.save(path, tokenized, bad_rows, truncated)
    return tokenized, bad_rows, truncated


def epoch_rows(
    lengths: np.ndarray, config: DataConfig, epoch: int
) -> list[list[int]]:
    """The rows of one epoch, each a list of example ids."""
    rng = np.random.default_rng([config.seed, epoch])
    n = len(lengths)
    order = rng.permutation(n) if config.shuffle else np.arange(n)
    if not config.packing:
        return [[int(i)] for i in order]
    rows = packing.best_fit_decreasing(lengths, config.max_length, order)
    if config.shuffle:
        # Best-fit decreasing creates rows longest-first; shuffling the
        # rows keeps long and short examples spread over the epoch.
        rows = [rows[i] for i in rng.permutation(len(rows))]
    return rows


def make_iterator(
    config: DataConfig,
    tokenizer: Any,
    process_index: int = 0,
    process_count: int = 1,
    *,
    prepared: PreparedData | None = None,
) -> grain.DatasetIterator:
    """A grain iterator over this host's share of every global batch.

    Pass `prepared` (from `prepare_data`) to reuse tokenized data; its
    config must be this config. The iterator ends after `num_epochs`.
    """
    if config.batch_size % process_count:
        raise ValueError(
            f"batch_size={config.batch_size} does not split evenly over "
            f"{process_count} hosts; use a multiple of {process_count}"
        )
    if not 0 <= process_index < process_count:
        raise ValueError(
            f"process_index {process_index} not in [0, {process_count})"
        )
    if prepared is None:
        prepared = prepare_data(config, tokenizer)
    elif prepared.config != config.resolved():
        raise ValueError("prepared data was made with a different DataConfig")

    global_batch = config.batch_size
    local_batch = global_batch // process_count
    seq_len = prepared.report.seq_len

    def local_row(i: int) -> dict[str, np.ndarray]:
        step, r = divmod(i, local_batch)
        row = step * global_batch + process_index * local_batch + r
        return packing.pack_row(
            prepared.examples, prepared.plan[row], seq_len, prepared.pad_id
        )

    dataset = (
        grain.MapDataset.range(prepared.report.steps * local_batch)
        .map(local_row)
        .batch(local_batch, drop_remainder=True)
    )
    read_options = grain.ReadOptions(
        num_threads=config.read_threads,
        prefetch_buffer_size=config.prefetch_buffer_size,
    )
    return iter(dataset.to_iter_dataset(read_options))


def data_report(prepared: PreparedData) -> DataReport:
    """The report of prepared data (also logged by `prepare_data`)."""
    return prepared.report
