import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnll_jax import objectives
from bnll_jax.objectives import Objective, parse

jax.config.update("jax_enable_x64", False)

# Every kind, thresholds on every base, and parameters on both sides of
# the interesting boundaries (a < 0, 0 < a < 1, a > 1; g < 1, g > 1).
ALL_SPECS = (
    "nll",
    "p",
    "power:10",
    "power:0.5",
    "power:-0.5",
    "power:1e-6",
    "log1m_p",
    "dft",
    "focal:2",
    "focal:0.5",
    "huber:0.3",
    "top_logp:0.2",
    "bottom_logp:0.6",
    "top_p:0.3",
    "bottom_p:0.5",
    "top_log1m_p:0.1",
)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("nll", Objective("nll")),
        ("NLL", Objective("nll")),
        ("original", Objective("nll")),
        ("logp", Objective("nll")),
        ("p", Objective("p")),
        ("power:10", Objective("power", 10.0)),
        ("power:-1.5", Objective("power", -1.5)),
        ("GeneralFamily-10", Objective("power", 10.0)),
        ("GeneralFamily-0.5", Objective("power", 0.5)),
        ("top_logp:0.2", Objective("nll", threshold="top", q=0.2)),
        ("OnlyTopLogP-0.2", Objective("nll", threshold="top", q=0.2)),
        ("OnlyBottomLogP-0.4", Objective("nll", threshold="bottom", q=0.4)),
        ("OnlyTopP-0.3", Objective("p", threshold="top", q=0.3)),
        ("bottom_p:0.5", Objective("p", threshold="bottom", q=0.5)),
        ("OnlyBottomP-0.5", Objective("p", threshold="bottom", q=0.5)),
        ("top_log1m_p:0.3", Objective("log1m_p", threshold="top", q=0.3)),
        ("log1m_p", Objective("log1m_p")),
        ("dft", Objective("dft")),
        ("focal:2", Objective("focal", 2.0)),
        ("huber:0.5", Objective("huber", 0.5)),
    ],
)
def test_parse_accepts_readable_names_and_reference_keys(spec, expected):
    assert parse(spec) == expected
    assert parse(parse(spec).spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "bogus",
        "power",
        "power:x",
        "power:nan",
        "GeneralFamily-0",
        "GeneralFamily-abc",
        "OnlyTopP-1",
        "OnlyTopP-1.5",
        "OnlyBottomP-0",
        "top_p:-0.1",
        "bottom_logp:1.2",
        "focal:-1",
        "huber:0",
        "huber:2",
        "middle_p:0.5",
        "NotAKey-3",
    ],
)
def test_parse_rejects_bad_specs_and_lists_valid_forms(spec):
    with pytest.raises(ValueError, match="valid forms: nll") as info:
        parse(spec)
    assert "GeneralFamily-<a>" in str(info.value)


def _token_loss(objective, logits, target):
    return objective.token_loss(jax.nn.log_softmax(logits)[target])


def _random_tokens(seed, tokens=64, vocab=12, scale=3.0):
    key_logits, key_targets = jax.random.split(jax.random.PRNGKey(seed))
    logits = scale * jax.random.normal(key_logits, (tokens, vocab))
    targets = jax.random.randint(key_targets, (tokens,), 0, vocab)
    return logits, targets


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_logit_gradient_is_ce_gradient_scaled_by_w(spec):
    objective = parse(spec)
    logits, targets = _random_tokens(0)
    grads = jax.vmap(jax.grad(_token_loss, argnums=1), (None, 0, 0))(
        objective, logits, targets
    )
    probs = jax.nn.softmax(logits)
    p = jnp.take_along_axis(probs, targets[:, None], axis=1)[:, 0]
    onehot = jax.nn.one_hot(targets, logits.shape[1])
    closed_form = objective.ce_scale(p)[:, None] * (probs - onehot)
    np.testing.assert_allclose(grads, closed_form, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_gradient_weight_equals_autodiff_derivative(spec):
    objective = parse(spec)
    p = jnp.linspace(0.01, 0.99, 99)

    f_prime = jax.vmap(jax.grad(lambda q: objective.token_loss(jnp.log(q))))(p)
    expected = -f_prime * p * (1 - p)
    np.testing.assert_allclose(
        objective.gradient_weight(p), expected, rtol=2e-5, atol=1e-7
    )


def test_gradient_weights_match_the_papers_closed_forms():
    p = np.linspace(0.01, 0.99, 99)
    cases = {
        "nll": 1 - p,
        "p": p * (1 - p),
        "power:10": p**10 * (1 - p),
        "log1m_p": p,
        "dft": p * (1 - p),
        "focal:2": (1 - p) ** 2 * ((1 - p) - 2 * p * np.log(p)),
        "huber:0.3": np.where(
            1 - p <= 0.3, p * (1 - p) ** 2, 0.3 * p * (1 - p)
        ),
    }
    for spec, expected in cases.items():
        np.testing.assert_allclose(
            parse(spec).gradient_weight(p),
            expected,
            rtol=1e-5,
            atol=1e-7,
            err_msg=spec,
        )


def test_power_family_is_exact_in_fp32_at_tiny_and_large_exponents():
    logp = jnp.log(jnp.asarray([1e-6, 1e-3, 0.1, 0.5, 0.9, 0.999999]))
    # The reference is evaluated in float64 at the same fp32 inputs.
    logp64 = np.asarray(logp, np.float64)
    for a in (1e-6, 1e-3, 1.0, 10.0, -0.5):
        expected = -np.expm1(a * logp64) / a
        got = parse(f"power:{a}").per_token_loss(logp)
        np.testing.assert_allclose(got, expected, rtol=2e-6, err_msg=str(a))
    # a -> 0 recovers NLL.
    np.testing.assert_allclose(
        parse("power:1e-6").per_token_loss(logp), -logp64, rtol=1e-5
    )


def test_negative_power_is_more_prior_averse_than_nll():
    p = jnp.linspace(0.05, 0.95, 19)
    ratio = parse("power:-1").gradient_weight(p) / parse("nll").gradient_weight(
        p
    )
    # W_a / W_nll = p^a, which decreases in p for a < 0.
    assert np.all(np.diff(np.asarray(ratio)) < 0)


@pytest.mark.parametrize("spec", ALL_SPECS)
@pytest.mark.parametrize("margin", [-60.0, -20.0, 20.0, 60.0])
def test_extreme_probabilities_give_finite_loss_and_gradient(spec, margin):
    # margin >> 0 drives p to 1 (exactly 1.0 in fp32 at 60); << 0 to ~0.
    objective = parse(spec)
    logits = jnp.zeros(8).at[3].set(margin)
    value, grad = jax.value_and_grad(_token_loss, argnums=1)(
        objective, logits, 3
    )
    assert np.isfinite(value)
    assert np.all(np.isfinite(grad))


def test_log1m_p_stays_finite_and_exact_near_one():
    logp = jnp.asarray([-1e-3, -1e-6, -1e-9, 0.0])
    loss = parse("log1m_p").per_token_loss(logp)
    assert np.all(np.isfinite(loss))
    np.testing.assert_allclose(
        loss[:3],
        np.log(-np.expm1(np.asarray([-1e-3, -1e-6, -1e-9]))),
        rtol=1e-6,
    )


def test_threshold_uses_current_p_without_gradient_through_indicator():
    objective = parse("top_logp:0.5")
    # p = 0.5 exactly sits on the boundary; the indicator is a step, so the
    # gradient must be that of -log p alone (w = 1), not a delta spike.
    logp = jnp.log(jnp.asarray(0.5))
    grad = jax.grad(objective.token_loss)(logp)
    assert float(grad) == -1.0


@pytest.mark.parametrize(
    "thresholded, plain",
    [
        ("top_p:0", "p"),
        ("bottom_p:1", "p"),
        ("top_logp:0", "nll"),
        ("bottom_logp:1", "nll"),
    ],
)
def test_thresholds_at_zero_and_one_keep_every_token(thresholded, plain):
    p = jnp.linspace(0.0, 1.0, 11)
    assert np.all(np.asarray(parse(thresholded).keep(jnp.log(p))))
    np.testing.assert_allclose(
        parse(thresholded).gradient_weight(p[1:-1]),
        parse(plain).gradient_weight(p[1:-1]),
    )


def test_objectives_are_hashable_static_jit_arguments():
    calls = []

    @jax.jit
    def loss(logp):
        return parse("power:10").per_token_loss(logp)

    def traced(objective, logp):
        calls.append(objective)
        return objective.per_token_loss(logp)

    jitted = jax.jit(traced, static_argnums=0)
    jitted(parse("GeneralFamily-10"), jnp.zeros(3))
    jitted(parse("power:10"), jnp.zeros(3))
    assert len(calls) == 1  # equal objectives share one compilation
    assert np.isfinite(loss(jnp.zeros(3))).all()


def test_valid_forms_message_names_every_reference_key():
    for key in (
        "GeneralFamily",
        "OnlyTopP",
        "OnlyBottomP",
        "OnlyTopLogP",
        "OnlyBottomLogP",
        "original",
    ):
        assert key in objectives.VALID_FORMS
