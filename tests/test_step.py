"""The jitted step: accumulation, normalisation, non-finite guard."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from bnll_jax.training import config as config_lib
from bnll_jax.training import data, loop, state

OVERRIDES = [
    "model.dtype=float32",
    "model.remat=false",
    "data.source=synthetic",
    "data.max_length=32",
    "data.batch_size=8",
    "data.synthetic.num_examples=64",
    "steps=4",
    "optimizer.warmup_ratio=0",
    "optimizer.learning_rate=1e-4",
    "loss_vocab_block=128",
    "mesh.fsdp=1",
]


def _setup(*overrides, devices=1):
    config = config_lib.load_config(None, OVERRIDES + list(overrides))
    mesh = loop.make_mesh(config, jax.devices()[:devices])
    parts = state.abstract_parts(state.tiny_model_config(config.model))
    source = data.SyntheticSource(config.data, parts.config.vocab_size)
    setup = loop.prepare(config, parts, mesh, steps=4)
    return source, setup


@pytest.fixture(scope="module")
def tiny_params():
    # One random initialisation for the whole module: compiling the
    # initialisers costs more than every step below.
    _, setup = _setup()
    fresh = state.init_random_state(
        setup.parts, setup.optimizer, setup.shardings, seed=0
    )
    return jax.device_get(fresh.params)


def _fresh(setup, params):
    return state.init_state_from_params(
        params, setup.optimizer, setup.shardings, seed=0
    )


def _batch(source, micro_batches, batch_size=8):
    iterator = data.synthetic_iterator(
        source, batch_size=batch_size, num_epochs=1, seed=0
    )
    batch = data.split_micro_batches(next(iterator), micro_batches)
    return {k: jnp.asarray(v) for k, v in batch.items()}


def _max_diff(a, b):
    a, b = jax.device_get((a, b))
    diffs = jax.tree.map(lambda x, y: np.max(np.abs(x - y)), a, b)
    return float(max(jax.tree.leaves(diffs)))


@pytest.fixture(scope="module")
def one_and_four(tiny_params):
    source, whole = _setup("micro_batches=1")
    _, split = _setup("micro_batches=4")
    return whole, split, tiny_params, source


def test_accumulating_micro_batches_equals_one_step_on_concatenation(
    one_and_four,
):
    whole, split, params, source = one_and_four
    batch = _batch(source, 1)
    state_a, metrics_a = whole.step_fn(_fresh(whole, params), batch)
    state_b, metrics_b = split.step_fn(
        _fresh(split, params),
        {k: v.reshape(4, 2, -1) for k, v in batch.items()},
    )
    assert abs(float(metrics_a["loss"]) - float(metrics_b["loss"])) < 1e-6
    grad_a, grad_b = (
        float(metrics_a["grad_norm"]),
        float(metrics_b["grad_norm"]),
    )
    assert grad_a > 0 and abs(grad_a - grad_b) < 1e-6 * grad_a
    assert _max_diff(state_a.params, state_b.params) < 1e-5
    assert _max_diff(state_a.params, params) > 5e-5  # it did train


def test_reference_normalisation_is_mean_of_per_rank_micro_batch_means(
    one_and_four,
):
    whole, _, params, _ = one_and_four
    # 2 micro-batches of 16 rows, each split over 2 reference ranks: four
    # groups of 8 rows, the reference trainer's per-GPU micro-batches.
    source, reference = _setup(
        "micro_batches=2",
        "data.batch_size=32",
        "loss_normalization=reference",
        "reference_ranks=2",
    )
    batch = _batch(source, 2, batch_size=32)
    _, metrics = reference.step_fn(_fresh(reference, params), batch)

    # A one-micro-batch token-mean step of 8 rows reports that group's mean.
    groups = [
        {k: v[m : m + 1, 8 * g : 8 * g + 8] for k, v in batch.items()}
        for m in range(2)
        for g in range(2)
    ]
    means = [
        float(whole.step_fn(_fresh(whole, params), group)[1]["loss"])
        for group in groups
    ]
    assert np.std(means) > 1e-3  # the two normalisations really differ
    assert abs(np.mean(means) - float(metrics["loss"])) < 1e-5
    tokens = [float(np.sum(group["loss_mask"])) for group in groups]
    token_mean = np.dot(means, tokens) / np.sum(tokens)
    assert abs(token_mean - float(metrics["loss"])) > 1e-4


def test_non_finite_step_is_skipped_and_counted(one_and_four):
    whole, _, params, source = one_and_four
    batch = _batch(source, 1)
    good = _fresh(whole, params)
    head = good.params["lm_head"]
    poisoned = good.replace(
        params={**good.params, "lm_head": head.at[0, 0].set(jnp.nan)}
    )
    before = jax.device_get(poisoned)

    after, metrics = whole.step_fn(poisoned, batch)
    assert not np.isfinite(float(metrics["loss"]))
    assert int(metrics["skipped"]) == 1
    assert int(after.nonfinite_total) == 1
    assert int(after.nonfinite_streak) == 1
    assert int(after.step) == 1
    # Parameters and optimizer state are exactly what they were.
    same = jax.tree.map(
        lambda x, y: np.array_equal(x, y, equal_nan=True),
        jax.device_get((after.params, after.opt_state)),
        (before.params, before.opt_state),
    )
    assert all(jax.tree.leaves(same))

    # A finite step afterwards resets the streak but not the total.
    repaired = after.replace(params={**after.params, "lm_head": head})
    final, metrics = whole.step_fn(repaired, batch)
    assert int(metrics["skipped"]) == 0
    assert int(final.nonfinite_streak) == 0
    assert int(final.nonfinite_total) == 1


@pytest.mark.parametrize(
    "mesh", [("data=2", "fsdp=2", "tensor=2"), ("data=1", "fsdp=8", "tensor=1")]
)
def test_sharded_step_matches_single_device_step(one_and_four, mesh):
    whole, _, params, source = one_and_four
    _, sharded = _setup(*(f"mesh.{axis}" for axis in mesh), devices=8)
    assert dict(sharded.mesh.shape) == {
        k: int(v) for k, v in (axis.split("=") for axis in mesh)
    }
    # Parameters really are split: the head's vocabulary over "tensor",
    # its embedding axis over "fsdp".
    head_spec = sharded.shardings.params["lm_head"].spec
    expected = ("tensor", "fsdp") if "tensor=2" in mesh else (None, "fsdp")
    assert head_spec == PartitionSpec(*expected)
    batch = _batch(source, 1)

    state_1, metrics_1 = whole.step_fn(_fresh(whole, params), batch)
    state_8, metrics_8 = sharded.step_fn(_fresh(sharded, params), batch)
    assert abs(float(metrics_1["loss"]) - float(metrics_8["loss"])) < 1e-5
    assert _max_diff(state_1.params, state_8.params) < 1e-5
    assert _max_diff(state_1.opt_state, state_8.opt_state) < 1e-5
