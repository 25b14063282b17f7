import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnll_jax import gradient_flow
from bnll_jax.objectives import parse


def test_uniform_base_rate_matches_closed_form():
    # On a uniform base every p = 1/V, so dA/dt = w(1/V)·(1/V)·((1-E) - 1/V)
    # (the MW case of the paper's Theorem 6.4).
    vocab, noise = 16, 0.2
    base = gradient_flow.model_weak(64, vocab)
    for spec in ("nll", "p", "power:2"):
        objective = parse(spec)
        w = float(objective.ce_scale(jnp.float32(1 / vocab)))
        expected = w / vocab * ((1 - noise) - 1 / vocab)
        got = gradient_flow.accuracy_rate(base, objective, noise)
        assert got == pytest.approx(expected, rel=1e-4), spec


def test_rate_agrees_with_a_finite_gradient_step():
    # dA/dt is the first-order change of accuracy after a tiny step along
    # the expected negative gradient; check it against an explicit step.
    base = gradient_flow.model_strong(8, 6, seed=1)
    objective, noise, step = parse("p"), 0.1, 0.05
    vocab = base.logits.shape[1]

    def expected_loss(z, true_token):
        labels = jnp.arange(vocab)
        weights = jnp.where(
            labels == true_token, 1 - noise, noise / (vocab - 1)
        )
        logp = jax.nn.log_softmax(z)[labels]
        return jnp.sum(weights * objective.per_token_loss(logp))

    grads = jax.vmap(jax.grad(expected_loss))(base.logits, base.true_tokens)

    def accuracy(z):
        probs = jax.nn.softmax(z)
        return jnp.mean(
            jnp.take_along_axis(probs, base.true_tokens[:, None], axis=1)
        )

    # A central difference: second-order accurate, and large enough a step
    # that fp32 rounding of the accuracy stays far below the change.
    finite = accuracy(base.logits - step * grads) - accuracy(
        base.logits + step * grads
    )
    rate = gradient_flow.accuracy_rate(base, objective, noise)
    np.testing.assert_allclose(float(finite) / (2 * step), rate, rtol=2e-3)


def test_nll_and_one_minus_p_trade_places_between_weak_and_strong_bases():
    results = gradient_flow.simulate(
        [parse("nll"), parse("p")], noises=(0.3,), contexts=500
    )
    weak, strong = results
    assert weak.base == "model-weak" and strong.base == "model-strong"
    assert weak.rates["nll"] > weak.rates["p"]
    assert strong.rates["p"] > strong.rates["nll"]
    assert strong.mean_true_prob > 0.7 and strong.strong_share >= 0.7
    assert gradient_flow.pairwise_signs(weak)[("nll", "p")] == 1
    assert gradient_flow.pairwise_signs(strong)[("nll", "p")] == -1
