"""The token cache: reused while nothing changes, rebuilt when it does."""

import dataclasses
import json
import logging

import numpy as np
import tensorflow_datasets as tfds

from bnll_jax.data import cache, pipeline
from bnll_jax.data.config import DataConfig
from tests.data_tokenizers import qwen25, smollm2

tfds.disable_progress_bar()


def test_cached_examples_equal_fresh_ones(tmp_path, caplog):
    rows = [
        {"q": f"What is {i} + 1?", "a": f"It is {i + 1}."} for i in range(9)
    ]
    rows[4] = {"q": "no answer"}
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    config = DataConfig(
        dataset="generic",
        path=str(path),
        data_dir=str(tmp_path / "tfds"),
        prompt_field="q",
        response_field="a",
        max_length=40,
        batch_size=2,
    )
    fresh = pipeline.prepare_data(config, smollm2())
    with caplog.at_level(logging.INFO, logger="bnll_jax.data.cache"):
        cached = pipeline.prepare_data(config, smollm2())
    assert "read tokenized examples" in caplog.text
    for name in ("tokens", "loss_mask", "offsets", "indices", "lengths"):
        assert np.array_equal(
            getattr(fresh.examples, name), getattr(cached.examples, name)
        )
    assert cached.report == fresh.report
    assert [b.index for b in cached.report.bad_rows] == [4]

    # Another tokenizer or length is another key; no cache, no file.
    source = "generic:rows"
    key = cache.cache_key(source, config.resolved(), smollm2())
    longer = dataclasses.replace(config, max_length=41).resolved()
    assert cache.cache_key(source, longer, smollm2()) != key
    assert cache.cache_key(source, config.resolved(), qwen25()) != key

    caplog.clear()
    uncached = dataclasses.replace(config, cache_tokenized=False)
    with caplog.at_level(logging.INFO, logger="bnll_jax.data.cache"):
        pipeline.prepare_data(uncached, smollm2())
    assert "read tokenized examples" not in caplog.text
