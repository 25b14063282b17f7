"""Flax NNX ports of the paper's backbones and their checkpoint I/O."""

from bnll_jax.models.checkpoint import (
    check_vocab,
    from_pretrained,
    save_pretrained,
)
from bnll_jax.models.config import ModelConfig, RopeScaling
from bnll_jax.models.transformer import KVCache, Transformer

__all__ = [
    "KVCache",
    "ModelConfig",
    "RopeScaling",
    "Transformer",
    "check_vocab",
    "from_pretrained",
    "save_pretrained",
]
