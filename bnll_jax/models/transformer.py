"""Decoder-only transformer (Llama and Qwen2 families) in Flax NNX.

    hidden = embed[input_ids]
    for each block:
        hidden += attention(rms_norm(hidden))     # GQA, rotary, causal
        hidden += down(silu(gate(h)) * up(h)),  h = rms_norm(hidden)
    return rms_norm(hidden)                        # final norm applied

`Transformer.__call__` returns the normed final hidden states [B, T, D];
`Transformer.logits` applies the output head, and `head_weight` exposes it
as a [vocab, embed] array so a fused loss can consume hidden states and the
head directly without materialising B x T x V logits.

Packing and padding: `segment_ids[b, t] > 0` numbers the sequence a token
belongs to and 0 marks padding (see `attention.py`). Attention never
crosses segments, and when `positions` is omitted they restart at 0 in every
segment. Without `segment_ids` the batch is one unpadded sequence per row.

Every parameter carries logical axis names in its `out_sharding` metadata
(`vocab`, `embed`, `heads`, `kv_heads`, `head_dim`, `mlp`); the model
itself never shards. `nnx.get_partition_spec` under
`nnx.logical_axis_rules(rules)` turns them into mesh partition specs.
Weights are stored in `param_dtype` and cast to the compute `dtype` at use.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from bnll_jax.models import attention, rope
from bnll_jax.models.config import ModelConfig

_INIT_STD = 0.02  # transformers' initializer_range for both families


def _param(rngs: nnx.Rngs | None, shape, names, config, init="normal"):
    dtype = config.jnp_param_dtype
    if init == "normal":
        value = _INIT_STD * jax.random.normal(rngs.params(), shape, dtype)
    elif init == "ones":
        value = jnp.ones(shape, dtype)
    else:
        value = jnp.zeros(shape, dtype)
    # eager_sharding=False: placement is the caller's job (see
    # checkpoint loading), so a model built inside a mesh context is not
    # sharded behind the caller's back.
    return nnx.Param(value, out_sharding=names, eager_sharding=False)


class RMSNorm(nnx.Module):
    """x / sqrt(mean(x^2) + eps) * scale, the statistics in float32."""

    def __init__(self, config: ModelConfig):
        self.eps = config.rms_norm_eps
        self.scale = _param(
            None, (config.hidden_size,), ("embed",), config, "ones"
        )

    def __call__(self, x_btd: jax.Array) -> jax.Array:
        x32 = x_btd.astype(jnp.float32)
        var_bt1 = jnp.mean(x32 * x32, axis=-1, keepdims=True)
        normed = (x32 * jax.lax.rsqrt(var_bt1 + self.eps)).astype(x_btd.dtype)
        return self.scale.value.astype(x_btd.dtype) * normed


class Attention(nnx.Module):
    """Grouped-query self-attention with rotary embeddings."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        c = config
        d, n, k, h = c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim
        q_axes, kv_axes = ("heads", "head_dim"), ("kv_heads", "head_dim")
        self.config = config
        self.q_kernel = _param(rngs, (d, n, h), ("embed", *q_axes), c)
        self.k_kernel = _param(rngs, (d, k, h), ("embed", *kv_axes), c)
        self.v_kernel = _param(rngs, (d, k, h), ("embed", *kv_axes), c)
        self.o_kernel = _param(rngs, (n, h, d), (*q_axes, "embed"), c)
        if c.qkv_bias:
            self.q_bias = _param(None, (n, h), q_axes, c, "zeros")
            self.k_bias = _param(None, (k, h), kv_axes, c, "zeros")
            self.v_bias = _param(None, (k, h), kv_axes, c, "zeros")
        if c.o_bias:
            self.o_bias = _param(None, (d,), ("embed",), c, "zeros")

    def _project(self, x_btd, kernel, bias_name):
        dtype = self.config.jnp_dtype
        y = jnp.einsum("btd,dnh->btnh", x_btd, kernel.value.astype(dtype))
        if self.config.qkv_bias:
            y = y + getattr(self, bias_name).value.astype(dtype)
        return y

    def __call__(self, x_btd, cos_bth, sin_bth, segment_ids_bt, cache=None):
        """Attention output [B, T, D]; with `cache`, also the new (k, v).

        `cache` is (k_bskh, v_bskh, segment_k_bs, index): this call's keys
        and values are written at slots [index, index + T) and queries
        attend over all S slots.
        """
        q_btnh = rope.apply_rotary(
            self._project(x_btd, self.q_kernel, "q_bias"), cos_bth, sin_bth
        )
        k_btkh = rope.apply_rotary(
            self._project(x_btd, self.k_kernel, "k_bias"), cos_bth, sin_bth
        )
        v_btkh = self._project(x_btd, self.v_kernel, "v_bias")

        if cache is None:
            keys, values, segment_k, offset = k_btkh, v_btkh, segment_ids_bt, 0
            new_kv = None
        else:
            k_cache, v_cache, segment_k, offset = cache
            new_kv = tuple(
                jax.lax.dynamic_update_slice_in_dim(
                    full, new.astype(full.dtype), offset, axis=1
                )
                for full, new in ((k_cache, k_btkh), (v_cache, v_btkh))
            )
            keys, values = (x.astype(q_btnh.dtype) for x in new_kv)

        attend = attention.get(self.config.attention_impl)
        out_btnh = attend(
            q_btnh, keys, values, segment_ids_bt, segment_k, offset
        )
        dtype = self.config.jnp_dtype
        out_btd = jnp.einsum(
            "btnh,nhd->btd", out_btnh, self.o_kernel.value.astype(dtype)
        )
        if self.config.o_bias:
            out_btd = out_btd + self.o_bias.value.astype(dtype)
        return out_btd, new_kv


class MLP(nnx.Module):
    """SwiGLU: down(silu(gate x) * up x)."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        c = config
        d, f = c.hidden_size, c.intermediate_size
        self.config = config
        self.gate_kernel = _param(rngs, (d, f), ("embed", "mlp"), c)
        self.up_kernel = _param(rngs, (d, f), ("embed", "mlp"), c)
        self.down_kernel = _param(rngs, (f, d), ("mlp", "embed"), c)
        if c.mlp_bias:
            self.gate_bias = _param(None, (f,), ("mlp",), c, "zeros")
            self.up_bias = _param(None, (f,), ("mlp",), c, "zeros")
            self.down_bias = _param(None, (d,), ("embed",), c, "zeros")

    def _dense(self, x, name):
        dtype = self.config.jnp_dtype
        y = x @ getattr(self, name + "_kernel").value.astype(dtype)
        if self.config.mlp_bias:
            y = y + getattr(self, name + "_bias").value.astype(dtype)
        return y

    def __call__(self, x_btd: jax.Array) -> jax.Array:
        h_btf = jax.nn.silu(self._dense(x_btd, "gate"))
        h_btf = h_btf * self._dense(x_btd, "up")
        return self._dense(h_btf, "down")


class DecoderBlock(nnx.Module):
    """Pre-norm residual block: attention, then SwiGLU MLP."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        self.input_norm = RMSNorm(config)
        self.attention = Attention(config, rngs)
        self.post_attention_norm = RMSNorm(config)
        self.mlp = MLP(config, rngs)

    def __call__(self, x_btd, cos_bth, sin_bth, segment_ids_bt, cache=None):
        attn_btd, new_kv = self.attention(
            self.input_norm(x_btd), cos_bth, sin_bth, segment_ids_bt, cache
        )
        x_btd = x_btd + attn_btd
        x_btd = x_btd + self.mlp(self.post_attention_norm(x_btd))
        return x_btd, new_kv


@flax.struct.dataclass
class KVCache:
    """Keys and values of every layer for incremental decoding.

    Slots [0, end_index) are filled; `segment_ids_bs` follows the package's
    segment convention (0 = padding or empty slot).
    """

    k_lbskh: jax.Array
    v_lbskh: jax.Array
    segment_ids_bs: jax.Array
    end_index: jax.Array

    @classmethod
    def init(
        cls, config: ModelConfig, batch: int, max_len: int, dtype=None
    ) -> KVCache:
        dtype = dtype or config.jnp_dtype
        shape = (
            config.num_layers,
            batch,
            max_len,
            config.num_kv_heads,
            config.head_dim,
        )
        return cls(
            k_lbskh=jnp.zeros(shape, dtype),
            v_lbskh=jnp.zeros(shape, dtype),
            segment_ids_bs=jnp.zeros((batch, max_len), jnp.int32),
            end_index=jnp.zeros((), jnp.int32),
        )


def positions_from_segments(segment_ids_bt: jax.Array) -> jax.Array:
    """Positions restarting at 0 wherever the segment id changes."""
    t = segment_ids_bt.shape[1]
    index_bt = jnp.broadcast_to(jnp.arange(t), segment_ids_bt.shape)
    starts_bt = jnp.concatenate(
        [
            jnp.ones_like(segment_ids_bt[:, :1], bool),
            segment_ids_bt[:, 1:] != segment_ids_bt[:, :-1],
        ],
        axis=1,
    )
    # Index of the most recent segment start at or before each token.
    start_index_bt = jax.lax.cummax(jnp.where(starts_bt, index_bt, 0), axis=1)
    return index_bt - start_index_bt


class Transformer(nnx.Module):
    """The Llama/Qwen2 decoder; see the module docstring for the contract."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        c = config
        self.config = config
        self.embed = _param(
            rngs, (c.vocab_size, c.hidden_size), ("vocab", "embed"), c
        )
        self.layers = nnx.List(
            [DecoderBlock(config, rngs) for _ in range(c.num_layers)]
        )
        self.final_norm = RMSNorm(config)
        if not c.tie_word_embeddings:
            self.lm_head = _param(
                rngs, (c.vocab_size, c.hidden_size), ("vocab", "embed"), c
            )

    def head_weight(self) -> jax.Array:
        """Output head [vocab, embed]: the embedding table when tied."""
        if self.config.tie_word_embeddings:
            return self.embed.value
        return self.lm_head.value

    def logits(self, hidden_btd: jax.Array) -> jax.Array:
        """Logits [B, T, V] in float32 (matmul in the compute dtype)."""
        dtype = self.config.jnp_dtype
        return jnp.einsum(
            "btd,vd->btv",
            hidden_btd.astype(dtype),
            self.head_weight().astype(dtype),
            preferred_element_type=jnp.float32,
        )

    def _run_blocks(self, input_ids_bt, positions_bt, segment_ids_bt, cache):
        dtype = self.config.jnp_dtype
        if segment_ids_bt is None:
            segment_ids_bt = jnp.ones(input_ids_bt.shape, jnp.int32)
        if positions_bt is None:
            positions_bt = positions_from_segments(segment_ids_bt)
        x_btd = jnp.take(self.embed.value, input_ids_bt, axis=0).astype(dtype)
        cos_bth, sin_bth = rope.rotary_angles(
            positions_bt, rope.inv_frequencies(self.config), dtype
        )

        def run_block(block, x_btd, layer_cache):
            return block(x_btd, cos_bth, sin_bth, segment_ids_bt, layer_cache)

        if self.config.remat and cache is None:
            run_block = nnx.remat(
                run_block, policy=jax.checkpoint_policies.nothing_saveable
            )

        new_kv = []
        for i, block in enumerate(self.layers):
            layer_cache = None
            if cache is not None:
                layer_cache = (
                    cache.k_lbskh[i],
                    cache.v_lbskh[i],
                    cache.segment_ids_bs,
                    cache.end_index,
                )
            x_btd, kv = run_block(block, x_btd, layer_cache)
            new_kv.append(kv)
        return self.final_norm(x_btd), new_kv

    def __call__(
        self,
        input_ids_bt: jax.Array,
        positions: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
    ) -> jax.Array:
        """Final (normed) hidden states [B, T, D] for token ids [B, T]."""
        hidden_btd, _ = self._run_blocks(
            input_ids_bt, positions, segment_ids, None
        )
        return hidden_btd

    def decode(
        self,
        input_ids_bt: jax.Array,
        positions_bt: jax.Array,
        cache: KVCache,
        segment_ids_bt: jax.Array | None = None,
    ) -> tuple[jax.Array, KVCache]:
        """Runs T new tokens against a KV cache (prefill or one step).

        The tokens occupy cache slots [end_index, end_index + T); their
        positions are explicit because a cache may hold left padding.
        """
        if segment_ids_bt is None:
            segment_ids_bt = jnp.ones(input_ids_bt.shape, jnp.int32)
        segment_k_bs = jax.lax.dynamic_update_slice_in_dim(
            cache.segment_ids_bs,
            segment_ids_bt.astype(jnp.int32),
            cache.end_index,
            axis=1,
        )
        cache = cache.replace(segment_ids_bs=segment_k_bs)
        hidden_btd, new_kv = self._run_blocks(
            input_ids_bt, positions_bt, segment_ids_bt, cache
        )
        cache = cache.replace(
            k_lbskh=jnp.stack([k for k, _ in new_kv]),
            v_lbskh=jnp.stack([v for _, v in new_kv]),
            end_index=cache.end_index + input_ids_bt.shape[1],
        )
        return hidden_btd, cache
