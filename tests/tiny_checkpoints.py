"""Tiny random-initialised transformers checkpoints shared by model tests.

Each config exercises one family's options; weights are random but biases
and norm scales are perturbed away from their 0/1 initialisation so that a
port that ignored them would fail.
"""

from __future__ import annotations

import torch
import transformers

VOCAB = 128  # divisible by every mesh axis the sharding tests use

CONFIGS = {
    # Qwen2: q/k/v biases, tied head, GQA, large rotary base.
    "qwen2_tied": lambda: transformers.Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        rope_theta=1e6,
        tie_word_embeddings=True,
        max_position_embeddings=256,
    ),
    # Llama 3.1-style: untied head, GQA, llama3 rope scaling (a short
    # original context so that all three frequency bands occur), and
    # attention biases on every projection.
    "llama3_untied": lambda: transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
        max_position_embeddings=256,
        attention_bias=True,
        rope_theta=500000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 32,
        },
    ),
}


def make_hf_model(name: str, seed: int = 0):
    """A random transformers model for one of CONFIGS, in eval mode."""
    torch.manual_seed(seed)
    config = CONFIGS[name]()
    model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if param_name.endswith("bias") or "norm" in param_name:
                param.add_(0.1 * torch.randn_like(param))
    return model.eval()
