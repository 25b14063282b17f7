"""bnll_jax: supervised fine-tuning with probability-based objectives."""

__version__ = "0.1.0"
