"""Architecture of the decoder-only backbones, read from checkpoint configs.

One `ModelConfig` describes both families the project fine-tunes:

- Llama (Llama 3.1/3.2 with `llama3` rotary scaling, DeepSeek-Math-7B,
  SmolLM2): no attention biases by default, untied head on large sizes.
- Qwen2 (Qwen2.5, Qwen2.5-Math): q/k/v biases, tied embeddings on the small
  sizes, large rotary base.

Hugging Face configs come in two forms: hub checkpoints keep `rope_theta`
and `rope_scaling` at the top level, transformers v5 writes a
`rope_parameters` dictionary. Both are read here; anything this port does
not implement raises an error naming the field instead of being
approximated.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax.numpy as jnp

SUPPORTED_ARCHITECTURES = ("llama", "qwen2")
_HF_CLASS = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}
_ROPE_TYPES = ("default", "linear", "llama3")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RopeScaling:
    """Rotary frequency scaling (`linear` or Llama 3.1's `llama3`)."""

    rope_type: str
    factor: float
    # llama3 only: frequencies with wavelength above
    # original_max_position_embeddings / low_freq_factor are divided by
    # `factor`, those below .../ high_freq_factor are kept, and the band in
    # between is interpolated.
    low_freq_factor: float | None = None
    high_freq_factor: float | None = None
    original_max_position_embeddings: int | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Architecture plus the runtime settings (dtypes, remat, attention)."""

    architecture: str = "llama"
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None

    # Runtime settings, not part of the checkpoint. fp32 master weights with
    # bf16 compute is the training default; parity checks use fp32 both.
    param_dtype: str = "float32"
    dtype: str = "float32"
    remat: bool = False
    # Name of an implementation registered in `attention.py`.
    attention_impl: str = "xla"

    def __post_init__(self):
        if self.architecture not in SUPPORTED_ARCHITECTURES:
            raise ValueError(
                f"model_type {self.architecture!r} is not supported; "
                f"supported: {SUPPORTED_ARCHITECTURES}"
            )
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_heads}) must be a multiple "
                f"of num_key_value_heads ({self.num_kv_heads})"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even, got {self.head_dim}")

    @property
    def jnp_param_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.param_dtype)

    @property
    def jnp_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)

    def _num_block_params(self) -> int:
        d, h = self.hidden_size, self.head_dim
        n, k, f = self.num_heads, self.num_kv_heads, self.intermediate_size
        attention = d * (n + 2 * k) * h + n * h * d
        attention += (n + 2 * k) * h if self.qkv_bias else 0
        attention += d if self.o_bias else 0
        mlp = 3 * d * f + (2 * f + d if self.mlp_bias else 0)
        return attention + mlp + 2 * d  # two RMSNorm scales

    def num_params(self) -> int:
        """Number of parameters, a tied embedding/head counted once."""
        embedding = self.vocab_size * self.hidden_size
        head = 0 if self.tie_word_embeddings else embedding
        body = self.num_layers * self._num_block_params() + self.hidden_size
        return body + embedding + head

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 6 N plus the attention score term.

        N is every parameter but the input embedding, which is a lookup
        rather than a matmul (a tied table still counts once, as the
        head). Attention adds 12 * layers * heads * head_dim * seq_len
        (QK^T and AV, forward and backward, without causal halving: the
        usual MFU convention).
        """
        embedding = self.vocab_size * self.hidden_size
        lookup = 0 if self.tie_word_embeddings else embedding
        attention = (
            12 * self.num_layers * self.num_heads * self.head_dim * seq_len
        )
        return 6.0 * (self.num_params() - lookup) + attention


def _rope_from_hf(cfg: dict[str, Any], source: str):
    """Returns (rope_theta, RopeScaling | None) from either config form."""
    params = cfg.get("rope_parameters")
    if params is None:
        params = dict(cfg.get("rope_scaling") or {})
        params.setdefault("rope_theta", cfg.get("rope_theta", 10000.0))
    if "rope_type" not in params and "type" in params:
        params["rope_type"] = params["type"]
    rope_type = params.get("rope_type", "default")
    if rope_type not in _ROPE_TYPES:
        raise ValueError(
            f"{source}: rope scaling type {rope_type!r} (field "
            f"rope_parameters.rope_type / rope_scaling.type) is not "
            f"implemented; supported: {_ROPE_TYPES}"
        )
    if params.get("partial_rotary_factor", 1.0) != 1.0:
        raise ValueError(
            f"{source}: partial_rotary_factor != 1 is not implemented"
        )
    theta = float(params["rope_theta"])
    if rope_type == "default":
        return theta, None
    scaling = RopeScaling(
        rope_type=rope_type,
        factor=float(params["factor"]),
        low_freq_factor=params.get("low_freq_factor"),
        high_freq_factor=params.get("high_freq_factor"),
        original_max_position_embeddings=params.get(
            "original_max_position_embeddings",
            cfg.get("max_position_embeddings"),
        ),
    )
    return theta, scaling


def _check_unsupported(cfg: dict[str, Any], source: str) -> None:
    act = cfg.get("hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"{source}: hidden_act {act!r} is not implemented")
    if cfg.get("attention_dropout", 0.0):
        raise ValueError(
            f"{source}: attention_dropout > 0 is not implemented; set it to 0"
        )
    sliding = cfg.get("use_sliding_window", False) or any(
        t != "full_attention" for t in cfg.get("layer_types") or ()
    )
    if sliding:
        raise ValueError(
            f"{source}: sliding-window attention (use_sliding_window / "
            "layer_types) is not implemented"
        )


def from_hf_config(cfg: dict[str, Any], source: str = "config") -> ModelConfig:
    """Builds a ModelConfig from a Hugging Face `config.json` dictionary."""
    arch = cfg.get("model_type")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ValueError(
            f"{source}: model_type {arch!r} (architectures="
            f"{cfg.get('architectures')}) is not supported; supported: "
            f"{SUPPORTED_ARCHITECTURES}"
        )
    _check_unsupported(cfg, source)
    theta, scaling = _rope_from_hf(cfg, source)
    heads = cfg["num_attention_heads"]
    attention_bias = cfg.get("attention_bias", False)
    eos = cfg.get("eos_token_id")
    return ModelConfig(
        architecture=arch,
        vocab_size=cfg["vocab_size"],
        hidden_size=cfg["hidden_size"],
        num_layers=cfg["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=cfg.get("num_key_value_heads") or heads,
        head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
        intermediate_size=cfg["intermediate_size"],
        rms_norm_eps=cfg.get("rms_norm_eps", 1e-6),
        rope_theta=theta,
        rope_scaling=scaling,
        max_position_embeddings=cfg.get("max_position_embeddings", 4096),
        tie_word_embeddings=cfg.get("tie_word_embeddings", False),
        # Qwen2 always has q/k/v biases and no o_proj bias; Llama's
        # `attention_bias` switches all four projections.
        qkv_bias=arch == "qwen2" or attention_bias,
        o_bias=arch == "llama" and attention_bias,
        mlp_bias=cfg.get("mlp_bias", False),
        bos_token_id=cfg.get("bos_token_id"),
        eos_token_id=tuple(eos) if isinstance(eos, list) else eos,
        pad_token_id=cfg.get("pad_token_id"),
    )


def read_hf_config(directory: str) -> ModelConfig:
    """Reads `config.json` from a checkpoint directory."""
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        raise ValueError(f"no config.json in checkpoint directory {directory}")
    try:
        with open(path) as f:
            cfg = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    try:
        return from_hf_config(cfg, source=path)
    except KeyError as e:
        raise ValueError(f"{path}: required field {e} is missing") from e


def to_hf_config(config: ModelConfig) -> dict[str, Any]:
    """The transformers v5 `config.json` dictionary for a ModelConfig."""
    rope: dict[str, Any] = {"rope_theta": config.rope_theta}
    if config.rope_scaling is None:
        rope["rope_type"] = "default"
    else:
        fields = dataclasses.asdict(config.rope_scaling)
        rope.update({k: v for k, v in fields.items() if v is not None})
    eos = config.eos_token_id
    cfg: dict[str, Any] = {
        "architectures": [_HF_CLASS[config.architecture]],
        "model_type": config.architecture,
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.head_dim,
        "intermediate_size": config.intermediate_size,
        "hidden_act": "silu",
        "rms_norm_eps": config.rms_norm_eps,
        "rope_parameters": rope,
        "max_position_embeddings": config.max_position_embeddings,
        "tie_word_embeddings": config.tie_word_embeddings,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": list(eos) if isinstance(eos, tuple) else eos,
        "pad_token_id": config.pad_token_id,
        "attention_dropout": 0.0,
        "dtype": config.param_dtype,
    }
    if config.architecture == "llama":
        if config.qkv_bias != config.o_bias:
            raise ValueError(
                "a llama config cannot express q/k/v biases without an "
                "o_proj bias; use architecture='qwen2'"
            )
        cfg["attention_bias"] = config.qkv_bias
        cfg["mlp_bias"] = config.mlp_bias
    else:
        if not config.qkv_bias or config.o_bias or config.mlp_bias:
            raise ValueError(
                "a qwen2 config has q/k/v biases and no o_proj or MLP bias"
            )
        cfg["use_sliding_window"] = False
    return cfg
