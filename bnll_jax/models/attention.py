"""Causal attention over packed, padded sequences, behind a named seam.

Segment convention (the whole package uses it): `segment_ids[b, t] > 0`
numbers the sequence that token t belongs to, 0 marks padding. Query t may
attend key s iff they share a segment and s comes no later than t:

    allowed[b, t, s] = (seg_q[b, t] == seg_k[b, s]) and (s <= offset + t)

where `offset` is the number of keys in front of the first query (0 without
a KV cache). Padding attends only to padding, so no softmax row is empty
and no NaN appears; its outputs are meaningless and must be masked by the
caller's loss.

Implementations take segment ids rather than a dense mask so that kernels
which consume them natively (TPU splash attention, flash kernels with
segment ids) plug in through `register` without changing the model.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

# (q_btnh, k_bskh, v_bskh, segment_q_bt, segment_k_bs, offset) -> out_btnh
AttentionFn = Callable[..., jax.Array]
_IMPLEMENTATIONS: dict[str, AttentionFn] = {}


def register(name: str, fn: AttentionFn) -> None:
    """Makes an attention implementation selectable by config name."""
    _IMPLEMENTATIONS[name] = fn


def get(name: str) -> AttentionFn:
    try:
        return _IMPLEMENTATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown attention_impl {name!r}; registered: "
            f"{sorted(_IMPLEMENTATIONS)}"
        ) from None


def segment_causal_mask(
    segment_q_bt: jax.Array, segment_k_bs: jax.Array, offset: jax.Array | int
) -> jax.Array:
    """The boolean mask [B, 1, T, S] of the convention above."""
    t = segment_q_bt.shape[1]
    s = segment_k_bs.shape[1]
    causal_ts = jnp.arange(s)[None, :] <= offset + jnp.arange(t)[:, None]
    same_bts = segment_q_bt[:, :, None] == segment_k_bs[:, None, :]
    return (same_bts & causal_ts[None])[:, None]


def _dot_product(implementation: str | None) -> AttentionFn:
    def attend(q_btnh, k_bskh, v_bskh, segment_q_bt, segment_k_bs, offset):
        mask = segment_causal_mask(segment_q_bt, segment_k_bs, offset)
        # jax groups query heads onto key/value heads itself (GQA).
        return jax.nn.dot_product_attention(
            q_btnh, k_bskh, v_bskh, mask=mask, implementation=implementation
        )

    return attend


# XLA's fused attention; on GPU "cudnn" selects cuDNN's fused kernel.
# TODO: register TPU splash attention (jax.experimental.pallas.ops.tpu.
# splash_attention), which takes segment ids directly; it needs a TPU to
# test, which this project's CI does not have.
register("xla", _dot_product("xla"))
register("cudnn", _dot_product("cudnn"))
register("auto", _dot_product(None))
