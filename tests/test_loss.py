import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from bnll_jax import loss
from bnll_jax.objectives import parse
from tests.reference_trainer import reference_loss

REFERENCE_KEYS = (
    "original",
    "logp",
    "p",
    "GeneralFamily-10",
    "GeneralFamily-0.5",
    "OnlyTopP-0.2",
    "OnlyBottomP-0.5",
    "OnlyTopLogP-0.2",
    "OnlyBottomLogP-0.3",
)
FUSED_SPECS = (
    "nll",
    "p",
    "power:10",
    "top_logp:0.2",
    "bottom_p:0.5",
    "log1m_p",
    "dft",
    "focal:2",
)


def _batch(seed=0, batch=3, seq=11, vocab=37, scale=2.5):
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    logits = scale * jax.random.normal(keys[0], (batch, seq, vocab))
    targets = jax.random.randint(keys[1], (batch, seq), 0, vocab)
    mask = jax.random.uniform(keys[2], (batch, seq)) > 0.3
    return logits, targets, mask


def _mean(out: loss.LossOutput):
    return out.loss_sum / jnp.maximum(out.token_count, 1.0)


@pytest.mark.parametrize("key", REFERENCE_KEYS)
def test_sequence_loss_matches_reference_trainer_value_and_gradient(key):
    logits, targets, mask = _batch()
    objective = parse(key)

    def ours(z):
        return _mean(loss.sequence_loss(z, targets, mask, objective))

    value, grad = jax.value_and_grad(ours)(logits)

    torch_logits = torch.tensor(np.asarray(logits), requires_grad=True)
    ref = reference_loss(
        torch_logits,
        torch.tensor(np.asarray(targets), dtype=torch.long),
        torch.tensor(np.asarray(mask)),
        key,
    )
    ref.backward()
    assert (
        float(loss.sequence_loss(logits, targets, mask, objective).token_count)
        > 0
    )
    np.testing.assert_allclose(float(value), ref.item(), rtol=1e-5)
    np.testing.assert_allclose(
        grad, torch_logits.grad.numpy(), rtol=1e-5, atol=1e-8
    )


def test_sequence_loss_diagnostics_count_response_tokens():
    logits, targets, mask = _batch()
    out = loss.sequence_loss(logits, targets, mask, parse("top_logp:0.2"))
    logp = np.asarray(loss.target_logprobs(logits, targets))
    m = np.asarray(mask)
    assert float(out.response_count) == m.sum()
    assert float(out.token_count) == (m & (np.exp(logp) >= 0.2)).sum()
    np.testing.assert_allclose(
        float(out.prob_sum), np.exp(logp)[m].sum(), rtol=1e-5
    )
    np.testing.assert_allclose(float(out.nll_sum), -logp[m].sum(), rtol=1e-5)


def _hidden_head(seed, tokens_shape=(3, 11), dim=16, vocab=37, dtype=None):
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    hidden = jax.random.normal(keys[0], (*tokens_shape, dim))
    head = 0.6 * jax.random.normal(keys[1], (vocab, dim))
    targets = jax.random.randint(keys[2], tokens_shape, 0, vocab)
    mask = jax.random.uniform(keys[3], tokens_shape) > 0.3
    if dtype is not None:
        hidden, head = hidden.astype(dtype), head.astype(dtype)
    return hidden, head, targets, mask


def _plain_and_fused(objective, targets, mask, **fused_kwargs):
    def plain(hidden, head):
        logits = jnp.einsum(
            "btd,vd->btv", hidden, head, preferred_element_type=jnp.float32
        )
        return _mean(loss.sequence_loss(logits, targets, mask, objective))

    def fused(hidden, head):
        out = loss.fused_sequence_loss(
            hidden, head, targets, mask, objective, **fused_kwargs
        )
        return _mean(out)

    grad = lambda f: jax.jit(jax.value_and_grad(f, argnums=(0, 1)))  # noqa: E731
    return grad(plain), grad(fused)


def _assert_close(expected, got, rtol, atol):
    (value_a, grads_a), (value_b, grads_b) = expected, got
    np.testing.assert_allclose(float(value_b), float(value_a), rtol=rtol)
    for a, b in zip(grads_a, grads_b, strict=True):
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol * np.abs(a).max())


@pytest.mark.parametrize(
    "spec, vocab_block, token_chunk",
    [(spec, 8, None) for spec in FUSED_SPECS]
    + [
        (spec, block, chunk)
        for spec in ("p", "top_logp:0.2")
        for block, chunk in [(37, None), (16, 11), (5, 7), (64, 33)]
    ],
)
def test_fused_loss_equals_plain_loss_in_value_and_gradients(
    spec, vocab_block, token_chunk
):
    # vocab 37 is prime, so blocks 5, 8 and 16 leave a remainder; token
    # chunks of 11 and 33 divide the 33 tokens, 7 does not.
    hidden, head, targets, mask = _hidden_head(1)
    plain, fused = _plain_and_fused(
        parse(spec),
        targets,
        mask,
        vocab_block=vocab_block,
        token_chunk=token_chunk,
    )
    _assert_close(plain(hidden, head), fused(hidden, head), 1e-5, 1e-6)


def test_fused_loss_in_bf16_matches_plain_bf16_within_bf16_rounding():
    # Both paths multiply bf16 inputs with fp32 accumulation; gradients are
    # rounded to bf16 (8 bits of mantissa), so 2% of the largest entry.
    hidden, head, targets, mask = _hidden_head(2, dtype=jnp.bfloat16)
    plain, fused = _plain_and_fused(parse("p"), targets, mask, vocab_block=8)
    _assert_close(plain(hidden, head), fused(hidden, head), 1e-3, 2e-2)


def test_fused_loss_with_tied_head_matches_plain_through_both_uses():
    # A tied head is also the input embedding: the gradient reaches the
    # table through the lookup and through the loss.
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    table = 0.5 * jax.random.normal(keys[0], (29, 12))
    mix = jax.random.normal(keys[1], (12, 12)) / 4
    ids = jax.random.randint(keys[2], (2, 9), 0, 29)
    targets = jnp.roll(ids, -1, axis=1)
    mask = jnp.ones((2, 9), bool)
    objective = parse("power:10")

    def model_loss(table, fused):
        hidden = jnp.tanh(table[ids] @ mix)
        if fused:
            out = loss.fused_sequence_loss(
                hidden, table, targets, mask, objective, vocab_block=6
            )
        else:
            logits = jnp.einsum("btd,vd->btv", hidden, table)
            out = loss.sequence_loss(logits, targets, mask, objective)
        return _mean(out)

    value_and_grad = jax.jit(jax.value_and_grad(model_loss), static_argnums=1)
    plain = value_and_grad(table, False)
    fused = value_and_grad(table, True)
    np.testing.assert_allclose(float(fused[0]), float(plain[0]), rtol=1e-5)
    np.testing.assert_allclose(fused[1], plain[1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("fused", [False, True])
def test_batch_without_kept_tokens_gives_zero_loss_count_and_gradient(fused):
    hidden, head, targets, _ = _hidden_head(4)
    objective = parse("top_p:0.99")  # random logits never reach p >= 0.99
    mask = jnp.ones(targets.shape, bool)

    def sums(hidden, head):
        if fused:
            return loss.fused_sequence_loss(
                hidden, head, targets, mask, objective, vocab_block=8
            )
        logits = jnp.einsum("btd,vd->btv", hidden, head)
        return loss.sequence_loss(logits, targets, mask, objective)

    out = sums(hidden, head)
    grads = jax.grad(lambda h, e: sums(h, e).loss_sum, argnums=(0, 1))(
        hidden, head
    )
    assert float(out.loss_sum) == 0.0 and float(out.token_count) == 0.0
    assert float(out.response_count) == targets.size
    for g in grads:
        assert np.all(np.asarray(g) == 0.0)


def test_fully_masked_batch_gives_zeros_without_nan():
    hidden, head, targets, _ = _hidden_head(5)
    mask = jnp.zeros(targets.shape, bool)
    out, grads = jax.value_and_grad(
        lambda h, e: (
            loss.fused_sequence_loss(
                h, e, targets, mask, parse("log1m_p")
            ).loss_sum
        ),
        argnums=(0, 1),
    )(hidden, head)
    assert float(out) == 0.0
    assert all(np.all(np.asarray(g) == 0.0) for g in grads)


def test_fused_loss_under_jit_with_sharded_inputs_matches_unsharded():
    assert len(jax.devices()) >= 8, "conftest sets 8 host devices"
    mesh = jax.make_mesh(
        (2, 4), ("data", "tensor"), axis_types=(AxisType.Auto,) * 2
    )
    hidden, head, targets, mask = _hidden_head(
        6, tokens_shape=(4, 10), vocab=40
    )
    _, fused = _plain_and_fused(parse("p"), targets, mask, vocab_block=8)
    expected = fused(hidden, head)

    hidden_s = jax.device_put(hidden, NamedSharding(mesh, P("data")))
    head_s = jax.device_put(head, NamedSharding(mesh, P("tensor")))
    got = fused(hidden_s, head_s)
    _assert_close(expected, got, 1e-5, 1e-6)


def test_fused_loss_rejects_head_in_embed_major_layout():
    hidden, head, targets, mask = _hidden_head(7, dim=16, vocab=37)
    with pytest.raises(ValueError, match="vocabulary-major"):
        loss.fused_sequence_loss(hidden, head.T, targets, mask, parse("p"))


@pytest.mark.parametrize(
    "vocab, requested, expected",
    [
        (151936, 1024, 128),
        (49152, 1024, 1024),
        (128256, 1024, 768),
        (37, 16, 16),
        (100, 1024, 100),
    ],
)
def test_vocab_block_prefers_divisors_of_the_vocabulary(
    vocab, requested, expected
):
    assert loss.pick_vocab_block(vocab, requested) == expected
