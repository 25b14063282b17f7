"""Reading llama.cpp GGUF files (Llama and Qwen2 architectures).

Quantised tensors are dequantised to float32 with the `gguf` package, as
transformers' GGUF loader does, and renamed to Hugging Face tensor names so
the rest of the loader treats GGUF and safetensors alike.

llama.cpp's converter permutes the rows of Llama's q and k projections from
the Hugging Face "rotate_half" rotary layout to interleaved pairs: within
each head, row r of [first half | second half] goes to row 2r or 2r + 1.
`_unpermute` inverts that (Qwen2 files are not permuted).
"""

from __future__ import annotations

import re

import gguf
import numpy as np

from bnll_jax.models.config import ModelConfig, RopeScaling

_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_RE = re.compile(r"blk\.(\d+)\.(.+)")


def _unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """Interleaved rotary rows [heads, H/2, 2, D] -> halves [heads, 2, H/2]."""
    half = w.shape[0] // heads // 2
    w = w.reshape(heads, half, 2, *w.shape[1:])
    return w.swapaxes(1, 2).reshape(heads * 2 * half, *w.shape[3:])


class GGUFFile:
    """Config and dequantised tensors of a GGUF file, under HF names."""

    def __init__(self, path: str):
        self.path = path
        try:
            self._reader = gguf.GGUFReader(path)
        except Exception as e:
            raise ValueError(f"{path} is not a readable GGUF file ({e})") from e
        self._tensors = {}
        for tensor in self._reader.tensors:
            hf_name = self._hf_name(tensor.name)
            self._tensors[hf_name] = tensor
        self.config = self._read_config()

    def _field(self, key: str, default=None):
        field = self._reader.fields.get(key)
        if field is None:
            return default
        return field.contents()

    def _hf_name(self, name: str) -> str:
        if name in _GLOBAL_NAMES:
            return _GLOBAL_NAMES[name]
        match = _LAYER_RE.fullmatch(name)
        if match and match.group(2) in _LAYER_NAMES:
            layer, rest = match.groups()
            return f"model.layers.{layer}.{_LAYER_NAMES[rest]}"
        raise ValueError(
            f"{self.path}: tensor {name!r} is not part of a supported Llama "
            "or Qwen2 model (e.g. rope_freqs of Llama 3.1 GGUFs is not "
            "implemented); load the Hugging Face checkpoint instead"
        )

    def _read_config(self) -> ModelConfig:
        arch = self._field("general.architecture")
        if arch not in ("llama", "qwen2"):
            raise ValueError(
                f"{self.path}: general.architecture {arch!r} is not "
                "supported; supported: ('llama', 'qwen2')"
            )

        def get(key, default=None):
            value = self._field(f"{arch}.{key}", default)
            if value is None:
                raise ValueError(f"{self.path}: metadata {arch}.{key} missing")
            return value

        heads = int(get("attention.head_count"))
        hidden = int(get("embedding_length"))
        tokens = self._field("tokenizer.ggml.tokens") or ()
        vocab = int(self._field(f"{arch}.vocab_size", len(tokens)))
        scaling = self._rope_scaling(arch)
        return ModelConfig(
            architecture=arch,
            vocab_size=vocab,
            hidden_size=hidden,
            num_layers=int(get("block_count")),
            num_heads=heads,
            num_kv_heads=int(get("attention.head_count_kv", heads)),
            head_dim=int(get("rope.dimension_count", hidden // heads)),
            intermediate_size=int(get("feed_forward_length")),
            rms_norm_eps=float(get("attention.layer_norm_rms_epsilon")),
            rope_theta=float(get("rope.freq_base", 10000.0)),
            rope_scaling=scaling,
            max_position_embeddings=int(get("context_length", 4096)),
            tie_word_embeddings="lm_head.weight" not in self._tensors,
            qkv_bias=arch == "qwen2",
            bos_token_id=self._field("tokenizer.ggml.bos_token_id"),
            eos_token_id=self._field("tokenizer.ggml.eos_token_id"),
            pad_token_id=self._field("tokenizer.ggml.padding_token_id"),
        )

    def _rope_scaling(self, arch: str) -> RopeScaling | None:
        kind = self._field(f"{arch}.rope.scaling.type", "none")
        if kind == "none":
            return None
        if kind != "linear":
            raise ValueError(
                f"{self.path}: {arch}.rope.scaling.type {kind!r} is not "
                "implemented for GGUF files; load the HF checkpoint instead"
            )
        return RopeScaling(
            rope_type="linear",
            factor=float(self._field(f"{arch}.rope.scaling.factor")),
        )

    def names(self) -> set[str]:
        return set(self._tensors)

    def location(self, name: str) -> str:
        return self.path

    def get(self, name: str) -> np.ndarray:
        tensor = self._tensors[name]
        weights = gguf.dequantize(tensor.data, tensor.tensor_type)
        weights = np.asarray(weights, dtype=np.float32)
        if self.config.architecture == "llama":
            if name.endswith("q_proj.weight"):
                weights = _unpermute(weights, self.config.num_heads)
            elif name.endswith("k_proj.weight"):
                weights = _unpermute(weights, self.config.num_kv_heads)
        return weights
