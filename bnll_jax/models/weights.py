"""Names and layouts of parameters: this port versus Hugging Face.

Hugging Face stores every projection as a torch Linear weight [out, in];
this port stores kernels input-major with heads split out so that heads
can be sharded: q [D, N, H], k/v [D, K, H], o [N, H, D], gate/up [D, F],
down [F, D]. Embedding and output head are [V, D] on both sides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from bnll_jax.models.config import ModelConfig

Path = tuple[str | int, ...]


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    """One parameter: its path here, its HF tensor name, both layouts."""

    path: Path
    hf_name: str
    to_ours: Callable[[np.ndarray], np.ndarray]
    to_hf: Callable[[np.ndarray], np.ndarray]


def _same(x: np.ndarray) -> np.ndarray:
    return x


def _transpose(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.T)


def _heads_in(heads: int, head_dim: int):
    """HF [heads * head_dim, D] <-> ours [D, heads, head_dim]."""

    def to_ours(w):
        return np.ascontiguousarray(w.T).reshape(-1, heads, head_dim)

    def to_hf(w):
        return np.ascontiguousarray(w.reshape(w.shape[0], -1).T)

    return to_ours, to_hf


def _heads_out(heads: int, head_dim: int):
    """HF o_proj [D, heads * head_dim] <-> ours [heads, head_dim, D]."""

    def to_ours(w):
        return np.ascontiguousarray(w.T).reshape(heads, head_dim, -1)

    def to_hf(w):
        return np.ascontiguousarray(w.reshape(heads * head_dim, -1).T)

    return to_ours, to_hf


def _bias_heads(heads: int, head_dim: int):
    def to_ours(b):
        return b.reshape(heads, head_dim)

    def to_hf(b):
        return b.reshape(heads * head_dim)

    return to_ours, to_hf


def weight_specs(config: ModelConfig) -> list[WeightSpec]:
    """Every parameter of a Transformer built from `config`."""
    c = config
    n, k, h = c.num_heads, c.num_kv_heads, c.head_dim
    specs = [
        WeightSpec(("embed",), "model.embed_tokens.weight", _same, _same),
        WeightSpec(("final_norm", "scale"), "model.norm.weight", _same, _same),
    ]
    if not c.tie_word_embeddings:
        specs.append(WeightSpec(("lm_head",), "lm_head.weight", _same, _same))

    for i in range(c.num_layers):
        hf = f"model.layers.{i}."

        def add(path, name, to_ours=_same, to_hf=_same, i=i, hf=hf):
            specs.append(
                WeightSpec(("layers", i, *path), hf + name, to_ours, to_hf)
            )

        add(("input_norm", "scale"), "input_layernorm.weight")
        add(("post_attention_norm", "scale"), "post_attention_layernorm.weight")
        for proj, heads in (("q", n), ("k", k), ("v", k)):
            add(
                ("attention", f"{proj}_kernel"),
                f"self_attn.{proj}_proj.weight",
                *_heads_in(heads, h),
            )
            if c.qkv_bias:
                add(
                    ("attention", f"{proj}_bias"),
                    f"self_attn.{proj}_proj.bias",
                    *_bias_heads(heads, h),
                )
        add(
            ("attention", "o_kernel"),
            "self_attn.o_proj.weight",
            *_heads_out(n, h),
        )
        if c.o_bias:
            add(("attention", "o_bias"), "self_attn.o_proj.bias")
        for proj in ("gate", "up", "down"):
            add(
                ("mlp", f"{proj}_kernel"),
                f"mlp.{proj}_proj.weight",
                _transpose,
                _transpose,
            )
            if c.mlp_bias:
                add(("mlp", f"{proj}_bias"), f"mlp.{proj}_proj.bias")
    return specs
