import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnll_jax.generation.sampling import (
    SamplingConfig,
    next_token,
    top_p_filter,
)


def test_top_p_keeps_the_smallest_nucleus_reaching_p():
    probs = jnp.array([[0.5, 0.3, 0.15, 0.05]])
    kept = jnp.isfinite(top_p_filter(jnp.log(probs), 0.7))
    # 0.5 alone is below 0.7; 0.5 + 0.3 reaches it.
    assert kept.tolist() == [[True, True, False, False]]
    kept = jnp.isfinite(top_p_filter(jnp.log(probs), 0.01))
    assert kept.tolist() == [[True, False, False, False]]


def test_greedy_is_argmax():
    logits = jnp.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])
    keys = jax.random.split(jax.random.key(0), 2)
    tokens = next_token(logits, keys, SamplingConfig(temperature=0.0))
    assert tokens.tolist() == [1, 0]


def test_temperature_one_draws_follow_the_softmax():
    probs = np.array([0.6, 0.3, 0.1])
    rows = 6000
    logits = jnp.tile(jnp.log(jnp.asarray(probs)), (rows, 1))
    keys = jax.random.split(jax.random.key(1), rows)
    tokens = next_token(logits, keys, SamplingConfig(temperature=1.0))
    freq = np.bincount(np.asarray(tokens), minlength=3) / rows
    # 4 standard errors of a binomial proportion at n = 6000.
    assert np.allclose(freq, probs, atol=4 * np.sqrt(0.25 / rows))


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="temperature"):
        SamplingConfig(temperature=-1.0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=0.0)
    with pytest.raises(ValueError, match="identical samples"):
        SamplingConfig(temperature=0.0, num_samples=4)
