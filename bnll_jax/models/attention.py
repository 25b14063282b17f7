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
which consume them natively plug in through `register` without changing
the model: `xla` (default; any backend), `cudnn` (GPU fused kernel),
`auto` (jax picks), and `splash` (the TPU Pallas splash-attention kernel,
run in interpret mode on other backends so that CPU tests exercise it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu.splash_attention import (
    splash_attention_kernel as splash,
)
from jax.experimental.pallas.ops.tpu.splash_attention import (
    splash_attention_mask as splash_mask,
)

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


_SPLASH_BLOCKS = (512, 256, 128)


@functools.lru_cache(maxsize=32)
def _splash_kernel(group: int, length: int, block: int, interpret: bool):
    """A splash kernel for one key/value head and its `group` query heads."""
    mask = splash_mask.MultiHeadMask(
        [splash_mask.CausalMask((length, length))] * group
    )
    sizes = splash.BlockSizes(
        block_q=block,
        block_kv=block,
        block_kv_compute=block,
        block_q_dkv=block,
        block_kv_dkv=block,
        block_kv_dkv_compute=block,
        block_q_dq=block,
        block_kv_dq=block,
    )
    return splash.make_splash_mqa(
        mask,
        head_shards=1,
        q_seq_shards=1,
        block_sizes=sizes,
        interpret=interpret,
    )


def _splash_attention(
    q_btnh, k_bskh, v_bskh, segment_q_bt, segment_k_bs, offset
):
    """TPU splash attention (Pallas); interpreted on other backends.

    Training-time self-attention only: queries and keys are the same T
    tokens (no KV cache), T a multiple of 128.
    """
    b, t, n, h = q_btnh.shape
    k = k_bskh.shape[2]
    if not isinstance(offset, int) or offset or k_bskh.shape[1] != t:
        raise ValueError(
            "attention_impl 'splash' supports training-time self-attention "
            "only; decode with attention_impl='xla'"
        )
    block = next((x for x in _SPLASH_BLOCKS if t % x == 0), None)
    if block is None:
        raise ValueError(
            f"attention_impl 'splash' needs a sequence length that is a "
            f"multiple of 128, got {t}; pad the batch"
        )
    kernel = _splash_kernel(
        n // k, t, block, interpret=jax.default_backend() != "tpu"
    )

    # Query head j uses key/value head j // (n // k), as in transformers.
    q_bkgth = q_btnh.reshape(b, t, k, n // k, h).transpose(0, 2, 3, 1, 4)
    q_bkgth = q_bkgth * (h**-0.5)  # splash does not scale the scores
    k_bkth = k_bskh.transpose(0, 2, 1, 3)
    v_bkth = v_bskh.transpose(0, 2, 1, 3)

    def one_row(q_kgth, k_kth, v_kth, segment_q_t, segment_k_t):
        segments = splash.SegmentIds(q=segment_q_t, kv=segment_k_t)
        per_head = jax.vmap(
            lambda q, k, v: kernel(q, k, v, segment_ids=segments)
        )
        return per_head(q_kgth, k_kth, v_kth)

    # TODO: under a device mesh the kernel must run inside shard_map over
    # the batch and head axes (XLA cannot partition a Pallas call); until
    # the trainer passes its mesh here, use it on one device per replica.
    out_bkgth = jax.vmap(one_row)(
        q_bkgth,
        k_bkth,
        v_bkth,
        segment_q_bt.astype(jnp.int32),
        segment_k_bs.astype(jnp.int32),
    )
    return out_bkgth.transpose(0, 3, 1, 2, 4).reshape(b, t, n, h)


# XLA's fused attention; on GPU "cudnn" selects cuDNN's fused kernel.
register("xla", _dot_product("xla"))
register("cudnn", _dot_product("cudnn"))
register("auto", _dot_product(None))
register("splash", _splash_attention)
