"""The optimizer and schedule match the paper's settings."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bnll_jax.training.config import OptimizerSection
from bnll_jax.training.optimizer import build_optimizer, learning_rate_schedule


def test_linear_warmup_over_ten_percent_then_cosine_to_zero():
    schedule = learning_rate_schedule(OptimizerSection(), total_steps=100)
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(2.5e-5)
    assert float(schedule(10)) == pytest.approx(5e-5)
    # Halfway through the decay the cosine is at half the peak.
    assert float(schedule(55)) == pytest.approx(2.5e-5, rel=1e-5)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-12)


def test_update_is_clipped_adamw_with_the_configured_betas():
    config = OptimizerSection(warmup_ratio=0.0, schedule="constant")
    tx, _ = build_optimizer(config, total_steps=10)
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    grads = {"w": jnp.full((2, 2), 10.0), "b": jnp.full(2, 10.0)}
    expected_tx = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adamw(5e-5, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.01),
    )
    state, expected_state = tx.init(params), expected_tx.init(params)
    for _ in range(3):
        updates, state = tx.update(grads, state, params)
        expected, expected_state = expected_tx.update(
            grads, expected_state, params
        )
        for key in params:
            np.testing.assert_allclose(updates[key], expected[key], rtol=1e-6)


def test_decay_all_false_leaves_vectors_undecayed():
    config = OptimizerSection(
        warmup_ratio=0.0, schedule="constant", decay_all=False, grad_clip=0.0
    )
    tx, _ = build_optimizer(config, total_steps=10)
    params = {"w": jnp.ones((2, 2)), "scale": jnp.ones(2)}
    zeros = {"w": jnp.zeros((2, 2)), "scale": jnp.zeros(2)}
    updates, _ = tx.update(zeros, tx.init(params), params)
    assert float(jnp.abs(updates["scale"]).max()) == 0.0
    assert float(updates["w"][0, 0]) == pytest.approx(-5e-5 * 0.01)
