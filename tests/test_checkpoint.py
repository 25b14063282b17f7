"""Orbax checkpoints: exact round trip, retention, partial saves."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bnll_jax.training import checkpoint, data, state
from bnll_jax.training.config import CheckpointSection, DataSection

MODEL_JSON = {"hf_config": {"model_type": "llama"}, "tokenizer": None}


def _iterator():
    config = DataSection(source="synthetic", max_length=16, batch_size=4)
    source = data.SyntheticSource(config, vocab_size=32)
    return data.synthetic_iterator(source, batch_size=4, num_epochs=2, seed=3)


def _state(step: int):
    """A small TrainState whose every leaf depends on `step`."""
    tx = optax.adamw(1e-2)
    params = {
        "w": jnp.arange(12.0).reshape(3, 4) + step,
        "layers": {"0": {"b": jnp.ones(4) * step}},
    }
    train_state = state.new_state(params, tx, seed=step)
    grads = jax.tree.map(jnp.ones_like, params)
    _, opt_state = tx.update(grads, train_state.opt_state, params)
    return train_state.replace(
        step=jnp.int32(step), opt_state=opt_state, nonfinite_total=jnp.int32(1)
    )


def _save(manager, step, iterator, metrics=None):
    checkpoint.save(
        manager,
        _state(step),
        iterator,
        model_config=MODEL_JSON,
        run_config={"objective": "p"},
        metrics=metrics,
    )
    manager.wait_until_finished()


def _equal(a, b) -> bool:
    same = jax.tree.map(np.array_equal, jax.device_get(a), jax.device_get(b))
    return all(jax.tree.leaves(same))


def test_restore_returns_state_and_data_position_exactly(tmp_path):
    config = CheckpointSection(every_steps=1, keep=3)
    manager = checkpoint.open_manager(str(tmp_path), config)
    iterator = _iterator()
    for _ in range(3):
        next(iterator)
    _save(manager, 3, iterator)
    expected_next = next(iterator)
    manager.close()

    manager = checkpoint.open_manager(str(tmp_path), config)
    fresh_iterator = _iterator()
    target = jax.eval_shape(lambda: _state(0))
    restored = checkpoint.restore(manager, target, fresh_iterator)
    assert _equal(restored, _state(3))
    assert _equal(next(fresh_iterator), expected_next)

    params, model_json, step = checkpoint.restore_params(str(tmp_path))
    assert step == 3 and model_json == MODEL_JSON
    assert _equal(params, _state(3).params)


def test_keeps_last_k_and_the_best_eval_loss(tmp_path):
    config = CheckpointSection(every_steps=2, keep=2, keep_best=True)
    manager = checkpoint.open_manager(str(tmp_path), config)
    iterator = _iterator()
    losses = {2: 1.0, 4: 0.5, 6: 0.9, 8: 0.8}
    for step, loss in losses.items():
        _save(manager, step, iterator, {"eval_loss": loss})
    # Step 3 is off the save interval and is not written.
    assert not checkpoint.save(
        manager,
        _state(3),
        iterator,
        model_config=MODEL_JSON,
        run_config={},
    )
    assert manager.all_steps() == [4, 6, 8]
    manager.close()


def test_partially_written_checkpoint_is_ignored(tmp_path):
    config = CheckpointSection(every_steps=2, keep=3)
    manager = checkpoint.open_manager(str(tmp_path), config)
    iterator = _iterator()
    _save(manager, 2, iterator)
    manager.close()
    # What a kill during the write of step 4 leaves: Orbax's temporary
    # directory with some of the items.
    partial = tmp_path / "4.orbax-checkpoint-tmp"
    shutil.copytree(tmp_path / "2", partial)
    shutil.rmtree(partial / "train")
    os.remove(partial / "commit_success.txt")

    manager = checkpoint.open_manager(str(tmp_path), config)
    assert manager.latest_step() == 2
    restored = checkpoint.restore(
        manager, jax.eval_shape(lambda: _state(0)), _iterator()
    )
    assert int(restored.step) == 2
    assert not partial.exists()  # cleaned up when the manager opened
    manager.close()


def test_export_of_an_empty_directory_says_what_to_pass(tmp_path):
    with pytest.raises(ValueError, match="no complete checkpoint"):
        checkpoint.restore_params(str(tmp_path))
