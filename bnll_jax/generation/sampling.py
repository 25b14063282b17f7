"""Choosing the next token from logits: greedy, temperature and top-p.

Sampling at temperature tau draws y ~ softmax(logits / tau). Top-p
(nucleus) sampling first keeps the smallest set of most likely tokens whose
probability mass reaches p and renormalises over it. Temperature 0 means
greedy decoding, argmax of the logits.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True, kw_only=True)
class SamplingConfig:
    """How tokens are chosen and when generation stops.

    Attributes:
      temperature: 0 for greedy decoding; the paper samples math at 1.0.
      top_p: nucleus mass in (0, 1]; 1 keeps the whole vocabulary.
      max_new_tokens: generated tokens per sample, stop token included.
      num_samples: completions per prompt (distinct draws when sampling).
      seed: the base of every random draw; the same seed reproduces the
        same completions whatever the batch composition.
    """

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    num_samples: int = 1
    seed: int = 0

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(
                f"temperature must be >= 0 (0 = greedy), got {self.temperature}"
            )
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1 or self.num_samples < 1:
            raise ValueError("max_new_tokens and num_samples must be >= 1")
        if self.temperature == 0 and self.num_samples > 1:
            raise ValueError(
                "greedy decoding (temperature 0) gives identical samples; "
                "use num_samples=1 or a temperature > 0"
            )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def top_p_filter(logits_bv: jax.Array, top_p: float) -> jax.Array:
    """Sets logits outside the top-p nucleus of each row to -inf.

    A token is kept when the mass of the tokens strictly more likely than
    it is below p, so the most likely token is always kept.
    """
    if top_p >= 1.0:
        return logits_bv
    probs_bv = jax.nn.softmax(logits_bv.astype(jnp.float32), axis=-1)
    sorted_bv = jnp.sort(probs_bv, axis=-1)[:, ::-1]
    mass_before_bv = jnp.cumsum(sorted_bv, axis=-1) - sorted_bv
    kept_bv = mass_before_bv < top_p
    # The smallest kept probability of each row is its threshold.
    threshold_b = jnp.min(
        jnp.where(kept_bv, sorted_bv, jnp.inf), axis=-1, keepdims=True
    )
    return jnp.where(probs_bv >= threshold_b, logits_bv, -jnp.inf)


def next_token(
    logits_bv: jax.Array, keys_b: jax.Array, config: SamplingConfig
) -> jax.Array:
    """One token per row: argmax, or a draw with that row's own key."""
    if config.greedy:
        return jnp.argmax(logits_bv, axis=-1).astype(jnp.int32)
    scaled_bv = logits_bv.astype(jnp.float32) / config.temperature
    scaled_bv = top_p_filter(scaled_bv, config.top_p)
    draw = jax.vmap(lambda key, row: jax.random.categorical(key, row))
    return draw(keys_b, scaled_bv).astype(jnp.int32)
