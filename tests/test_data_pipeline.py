"""The grain pipeline: batch contract, sharding, shuffling, exact resume."""

import dataclasses
import json
import logging

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds

from bnll_jax.data import pipeline
from bnll_jax.data.config import DataConfig
from bnll_jax.data.packing import FIELDS
from tests.data_tokenizers import smollm2

tfds.disable_progress_bar()


@pytest.fixture(scope="module")
def gsm_config(tmp_path_factory):
    return DataConfig(
        dataset="gsm_symbolic",
        data_dir=str(tmp_path_factory.mktemp("tfds")),
        num_generated=(60, 2),
        max_length=512,
        batch_size=4,
        num_epochs=2,
        seed=3,
    )


@pytest.fixture(scope="module")
def prepared(gsm_config):
    return pipeline.prepare_data(gsm_config, smollm2())


def _stream(config, prepared, **kwargs):
    iterator = pipeline.make_iterator(
        config, smollm2(), prepared=prepared, **kwargs
    )
    return list(iterator)


def _equal(a, b):
    return all(np.array_equal(a[k], b[k]) for k in FIELDS)


def test_batches_follow_the_contract(gsm_config, prepared):
    batches = _stream(gsm_config, prepared)
    report = prepared.report
    assert len(batches) == report.steps
    for batch in batches:
        assert set(batch) == set(FIELDS)
        for value in batch.values():
            assert value.shape == (4, 512) and value.dtype == np.int32
        # Where the loss is on, target and next input are the same token
        # of the same segment.
        b, t = np.nonzero(batch["loss_mask"])
        assert (batch["targets"][b, t] == batch["input_ids"][b, t + 1]).all()
        seg = batch["segment_ids"]
        assert (seg[b, t] == seg[b, t + 1]).all() and (seg[b, t] > 0).all()

    # Every loss token of every example, once per epoch: nothing dropped.
    loss_tokens = sum(int(b["loss_mask"].sum()) for b in batches)
    assert loss_tokens == gsm_config.num_epochs * report.num_loss_tokens
    # The reported padding is the padding in the batches.
    segments = np.concatenate([b["segment_ids"] for b in batches])
    assert report.batch_padding_fraction == pytest.approx(
        (segments == 0).mean()
    )
    used = segments[segments.max(axis=1) > 0]
    assert len(used) == report.num_batch_rows - report.num_fill_rows
    assert report.padding_fraction == pytest.approx((used == 0).mean())


def test_every_epoch_holds_each_example_once_in_a_new_order(prepared):
    plan = [r for r in prepared.plan if r]
    examples = len(prepared.examples)
    seen, epochs, current = set(), [], []
    for row in plan:
        if seen & set(row):  # A repeat starts the next epoch.
            epochs.append(current)
            seen, current = set(), []
        seen |= set(row)
        current += row
    epochs.append(current)
    assert len(epochs) == 2
    assert all(sorted(e) == list(range(examples)) for e in epochs)
    assert epochs[0] != epochs[1]


def test_shuffle_is_deterministic_in_the_seed(gsm_config, prepared):
    again = pipeline.prepare_data(gsm_config, smollm2())
    assert again.plan == prepared.plan
    reseeded = dataclasses.replace(gsm_config, seed=4)
    other = pipeline.prepare_data(reseeded, smollm2())
    assert other.plan != prepared.plan


def test_hosts_split_each_global_batch(gsm_config, prepared):
    whole = _stream(gsm_config, prepared)
    hosts = [
        _stream(gsm_config, prepared, process_index=p, process_count=2)
        for p in range(2)
    ]
    assert len(hosts[0]) == len(hosts[1]) == len(whole)
    for step, batch in enumerate(whole):
        for key in FIELDS:
            joined = np.concatenate([h[step][key] for h in hosts])
            assert np.array_equal(joined, batch[key])


def test_restored_iterator_continues_the_same_stream(
    gsm_config, prepared, tmp_path
):
    expected = _stream(gsm_config, prepared)
    iterator = pipeline.make_iterator(gsm_config, smollm2(), prepared=prepared)
    for _ in range(3):
        next(iterator)
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        manager.save(
            3,
            args=ocp.args.Composite(
                data=grain.checkpoint.CheckpointSave(iterator)
            ),
        )
        manager.wait_until_finished()
    next(iterator)  # Moves on; the restore must not see this.

    fresh = pipeline.make_iterator(gsm_config, smollm2(), prepared=prepared)
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        manager.restore(
            3,
            args=ocp.args.Composite(
                data=grain.checkpoint.CheckpointRestore(fresh)
            ),
        )
    rest = list(fresh)
    assert len(rest) == len(expected) - 3
    assert all(_equal(a, b) for a, b in zip(rest, expected[3:], strict=True))


def test_unpacked_rows_hold_one_example_each(gsm_config):
    config = dataclasses.replace(gsm_config, packing=False, num_epochs=1)
    prepared = pipeline.prepare_data(config, smollm2())
    batches = _stream(config, prepared)
    segments = np.concatenate([b["segment_ids"] for b in batches])
    filled = segments.max(axis=1) == 1
    assert filled.sum() == prepared.report.num_examples
    assert prepared.report.padding_fraction > 0.5


def test_packing_pads_under_5_percent_at_paper_length(tmp_path):
    config = DataConfig(
        dataset="gsm_symbolic",
        data_dir=str(tmp_path),
        num_generated=(400, 1),
        max_length=3072,
        batch_size=1,
    )
    report = pipeline.prepare_data(config, smollm2()).report
    assert report.padding_fraction < 0.05
    assert report.unpacked_padding_fraction > 0.9


def test_bad_and_truncated_rows_are_counted_and_named(tmp_path, caplog):
    rows = [{"q": "What is 2 + 2?", "a": "It is 4."} for _ in range(6)]
    rows[1] = {"q": "What is 2 + 2?"}
    rows[3]["a"] = ""
    rows[4]["a"] = "It is 4. " * 40  # Longer than max_length.
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    config = DataConfig(
        dataset="generic",
        path=str(path),
        data_dir=str(tmp_path / "tfds"),
        prompt_field="q",
        response_field="a",
        max_length=96,
        batch_size=2,
    )

    with caplog.at_level(logging.WARNING):
        report = pipeline.prepare_data(config, smollm2()).report
    assert report.num_rows == 6 and report.num_examples == 4
    assert [(b.index, b.reason) for b in report.bad_rows] == [
        (1, "missing response field 'a'"),
        (3, "empty response in field 'a'"),
    ]
    assert report.truncated_rows == (4,)
    assert "bad row 1: missing response field 'a'" in caplog.text
    assert "truncated rows: 4" in caplog.text

    strict = dataclasses.replace(config, on_bad_row="error")
    with pytest.raises(
        ValueError, match="2 bad rows in bnll_generic.*row 1: missing"
    ):
        pipeline.prepare_data(strict, smollm2())


def test_batch_size_must_split_over_hosts(gsm_config, prepared):
    with pytest.raises(ValueError, match="does not split evenly over 3"):
        pipeline.make_iterator(
            gsm_config, smollm2(), prepared=prepared, process_count=3
        )
