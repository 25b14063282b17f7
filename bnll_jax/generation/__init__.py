"""Batched KV-cache generation: sampling rules, the engine, text I/O."""

from bnll_jax.generation.engine import Generation, generate
from bnll_jax.generation.sampling import SamplingConfig
from bnll_jax.generation.text import Completion, generate_text

__all__ = [
    "Completion",
    "Generation",
    "SamplingConfig",
    "generate",
    "generate_text",
]
