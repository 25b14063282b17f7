"""Sequence losses for an objective, from logits or fused with the lm head.

Both paths return a `LossOutput` of unreduced sums: the trainer adds them
over micro-batches and hosts and divides once, `loss_sum / token_count`,
which is the exact token mean of the objective over kept tokens.

The fused path never builds the [tokens, vocab] logits. Its only
vocabulary-sized work is a scan over row blocks of the head:

    forward   z_nb = h_nd · E_bd^T           (one [N, Vb] block at a time)
              lse_n = logsumexp_b(z_nb)       (online, fp32)
              logp_n = z_{n,y_n} - lse_n
    backward  for g_n = dL/dlogp_n and π_nb = exp(z_nb - lse_n):
              dz_nb = g_n·(onehot_nb - π_nb)
              dh_nd += dz_nb · E_bd            (a [N, D] carry)
              dE_bd  = dz_nb^T · h_nd          (emitted per block)

with h the final hidden states, E the [vocab, embed] output head and
y the targets. The objective only ever sees logp_n, so every objective,
thresholds included, goes through the same kernel; autodiff of f(logp)
supplies g_n. Temporary memory is O(N·Vb + N·D): it grows with the
tokens or with the block size, never with tokens × vocabulary.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from bnll_jax.objectives import Objective

Array = jax.Array


class LossOutput(NamedTuple):
    """Unreduced sums of one batch (fp32 scalars).

    loss_sum: Σ f(p) over kept tokens (response mask AND threshold).
    token_count: number of kept tokens; the loss is loss_sum/token_count.
    nll_sum: Σ -log p over all response tokens, for comparing objectives.
    prob_sum: Σ p over all response tokens (the capability statistic).
    response_count: number of response tokens.
    """

    loss_sum: Array
    token_count: Array
    nll_sum: Array
    prob_sum: Array
    response_count: Array


def reduce_target_logprobs(
    logp: Array, mask: Array, objective: Objective
) -> LossOutput:
    """Applies `objective` to per-token target log-probs and sums."""
    logp = logp.astype(jnp.float32)
    mask = mask.astype(bool)
    kept = mask & objective.keep(logp)

    # A padding token's logp may be extreme; keep it out of f altogether so
    # it cannot leak a NaN into the gradient through jnp.where.
    per_token = objective.token_loss(jnp.where(mask, logp, -1.0))
    loss_sum = jnp.sum(jnp.where(mask, per_token, 0.0))

    stats_logp = jax.lax.stop_gradient(jnp.where(mask, logp, 0.0))
    return LossOutput(
        loss_sum=loss_sum,
        token_count=jnp.sum(kept, dtype=jnp.float32),
        nll_sum=-jnp.sum(stats_logp),
        prob_sum=jnp.sum(jnp.where(mask, jnp.exp(stats_logp), 0.0)),
        response_count=jnp.sum(mask, dtype=jnp.float32),
    )


def target_logprobs(logits: Array, targets: Array) -> Array:
    """log softmax(logits)[target] in fp32, from materialised logits."""
    logp_all = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(logp_all, targets[..., None], axis=-1)[..., 0]


def sequence_loss(
    logits: Array, targets: Array, mask: Array, objective: Objective
) -> LossOutput:
    """The plain path: objective sums from full [..., vocab] logits."""
    return reduce_target_logprobs(
        target_logprobs(logits, targets), mask, objective
    )


def fused_sequence_loss(
    hidden: Array,
    head: Array,
    targets: Array,
    mask: Array,
    objective: Objective,
    *,
    vocab_block: int = 1024,
    token_chunk: int | None = None,
) -> LossOutput:
    """Objective sums computed from hidden states and the lm head.

    Args:
        hidden: [..., D] final hidden states (fp32 or bf16).
        head: [V, D] output head in vocabulary-major layout (the embedding
            table when tied).
        targets: [...] int target ids.
        mask: [...] response mask (1 where the target counts).
        objective: the objective f(p).
        vocab_block: rows of the head per scan step; sets the O(N·Vb)
            temporary memory. Need not divide V (see `pick_vocab_block`).
        token_chunk: if set, tokens are processed in chunks of this size
            (need not divide the token count), bounding the [N, Vb] blocks
            for very long sequences at the cost of a [V, D] fp32
            head-gradient accumulator.
    """
    if hidden.shape[:-1] != targets.shape or targets.shape != mask.shape:
        raise ValueError(
            f"hidden {hidden.shape[:-1]}, targets {targets.shape} and mask "
            f"{mask.shape} must share their leading dimensions"
        )
    logp = fused_target_logprobs(
        hidden, head, targets, vocab_block=vocab_block, token_chunk=token_chunk
    )
    return reduce_target_logprobs(logp, mask, objective)


def fused_target_logprobs(
    hidden: Array,
    head: Array,
    targets: Array,
    *,
    vocab_block: int = 1024,
    token_chunk: int | None = None,
) -> Array:
    """log p of each target token, [...], without materialising logits.

    Differentiable (custom VJP); the arguments are as in
    `fused_sequence_loss`.
    """
    if head.ndim != 2 or head.shape[1] != hidden.shape[-1]:
        raise ValueError(
            f"head must be [vocab, {hidden.shape[-1]}] (vocabulary-major), "
            f"got {head.shape}"
        )
    hidden_nd = hidden.reshape(-1, hidden.shape[-1])
    targets_n = targets.reshape(-1).astype(jnp.int32)
    block = pick_vocab_block(head.shape[0], vocab_block)
    if token_chunk is None:
        logp_n = _fused_logprobs(hidden_nd, head, targets_n, block)
    else:
        logp_n = _chunked_logprobs(
            hidden_nd, head, targets_n, block, token_chunk
        )
    return logp_n.reshape(targets.shape)


def _chunked_logprobs(hidden_nd, head, targets_n, block, chunk):
    # Pad the tokens to whole chunks; padded rows are sliced off, so they
    # receive no gradient.
    n = hidden_nd.shape[0]
    chunks = -(-n // chunk)
    pad = chunks * chunk - n
    hidden_cnd = jnp.pad(hidden_nd, ((0, pad), (0, 0))).reshape(
        chunks, chunk, -1
    )
    targets_cn = jnp.pad(targets_n, (0, pad)).reshape(chunks, chunk)
    logp = jax.lax.map(
        lambda xs: _fused_logprobs(xs[0], head, xs[1], block),
        (hidden_cnd, targets_cn),
    )
    return logp.reshape(-1)[:n]


def _block_logits(hidden_nd, head, start, size):
    head_bd = jax.lax.dynamic_slice_in_dim(head, start, size, axis=0)
    z_nb = jnp.einsum(
        "nd,bd->nb", hidden_nd, head_bd, preferred_element_type=jnp.float32
    )
    return z_nb, head_bd


def _onehot_block(targets_n, start, size):
    return targets_n[:, None] == start + jnp.arange(size)[None, :]


def pick_vocab_block(vocab: int, requested: int) -> int:
    """The block size the fused loss uses for a vocabulary of `vocab` rows.

    A block that divides the vocabulary lets the backward pass emit the
    head gradient straight into its [V, D] output. With a remainder, the
    tail's gradient must be concatenated on, which costs a [V, D] copy, so
    the largest divisor of V within 8x of the request is preferred, and
    among those a multiple of 128 (the TPU lane width): 128 for Qwen2.5's
    151936 = 2^7 * 1187, 768 for Llama 3's 128256.
    """
    requested = min(requested, vocab)
    candidates = range(requested, max(requested // 8, 1) - 1, -1)
    divisors = [size for size in candidates if vocab % size == 0]
    lane_aligned = [size for size in divisors if size % 128 == 0]
    return (lane_aligned or divisors or [requested])[0]


def _block_starts(vocab: int, block: int) -> tuple[Array, int, int]:
    # Full blocks run in the scan; a remainder (V not a multiple of the
    # block) is one extra static-shaped step, so the head is never padded.
    full = vocab // block
    return jnp.arange(full) * block, full * block, vocab - full * block


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _fused_logprobs(hidden_nd, head, targets_n, block):
    logp, _ = _fused_forward(hidden_nd, head, targets_n, block)
    return logp


def _fused_forward(hidden_nd, head, targets_n, block):
    n = hidden_nd.shape[0]
    starts, tail_start, tail = _block_starts(head.shape[0], block)

    def absorb(carry, start, size):
        # Online logsumexp: rescale the running sum to the new maximum.
        running_max, running_sum, target_logit = carry
        z_nb, _ = _block_logits(hidden_nd, head, start, size)
        new_max = jnp.maximum(running_max, jnp.max(z_nb, axis=1))
        running_sum = running_sum * jnp.exp(running_max - new_max) + jnp.sum(
            jnp.exp(z_nb - new_max[:, None]), axis=1
        )
        # A masked sum rather than a gather: it needs no collective when
        # the tokens and the block are sharded on different mesh axes.
        onehot = _onehot_block(targets_n, start, size)
        target_logit = target_logit + jnp.sum(
            jnp.where(onehot, z_nb, 0.0), axis=1
        )
        return (new_max, running_sum, target_logit)

    carry = (
        jnp.full((n,), -jnp.inf, jnp.float32),
        jnp.zeros((n,), jnp.float32),
        jnp.zeros((n,), jnp.float32),
    )
    carry, _ = jax.lax.scan(
        lambda c, start: (absorb(c, start, block), None), carry, starts
    )
    if tail:
        carry = absorb(carry, tail_start, tail)
    running_max, running_sum, target_logit = carry
    lse_n = running_max + jnp.log(running_sum)
    return target_logit - lse_n, lse_n


def _fused_fwd(hidden_nd, head, targets_n, block):
    logp, lse_n = _fused_forward(hidden_nd, head, targets_n, block)
    return logp, (hidden_nd, head, targets_n, lse_n)


def _fused_bwd(block, residuals, g_n):
    hidden_nd, head, targets_n, lse_n = residuals
    starts, tail_start, tail = _block_starts(head.shape[0], block)
    g_n = g_n.astype(jnp.float32)

    def block_grads(d_hidden, start, size):
        z_nb, head_bd = _block_logits(hidden_nd, head, start, size)
        onehot = _onehot_block(targets_n, start, size)
        dz_nb = g_n[:, None] * (onehot - jnp.exp(z_nb - lse_n[:, None]))
        d_hidden = d_hidden + jnp.einsum(
            "nb,bd->nd",
            dz_nb.astype(head.dtype),
            head_bd,
            preferred_element_type=jnp.float32,
        )
        d_head_bd = jnp.einsum(
            "nb,nd->bd",
            dz_nb.astype(hidden_nd.dtype),
            hidden_nd,
            preferred_element_type=jnp.float32,
        )
        return d_hidden, d_head_bd.astype(head.dtype)

    d_hidden = jnp.zeros(hidden_nd.shape, jnp.float32)
    # Head-gradient blocks are scan outputs in the head's own row layout:
    # no [V, D] accumulator is carried through the loop.
    d_hidden, d_head_blocks = jax.lax.scan(
        lambda c, start: block_grads(c, start, block), d_hidden, starts
    )
    d_head = d_head_blocks.reshape(-1, head.shape[1])
    if tail:
        d_hidden, d_head_tail = block_grads(d_hidden, tail_start, tail)
        d_head = jnp.concatenate([d_head, d_head_tail], axis=0)
    return d_hidden.astype(hidden_nd.dtype), d_head, None


_fused_logprobs.defvjp(_fused_fwd, _fused_bwd)
