"""Rotary position embeddings, computed as the Hugging Face models do.

For head dimension H and rotary base theta, frequency i (0 <= i < H/2) is
    inv_freq_i = theta ** (-2i / H),
optionally rescaled (`linear`: divided by a factor; `llama3`: long
wavelengths divided by the factor, short ones kept, a smooth band between).
A vector x at position p is rotated as
    x * cos(p inv_freq) + rotate_half(x) * sin(p inv_freq),
with the angle vector repeated over both halves of x ("rotate_half"
layout, not the interleaved pairs of the original paper or llama.cpp).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from bnll_jax.models.config import ModelConfig


def inv_frequencies(config: ModelConfig) -> np.ndarray:
    """Inverse frequencies [head_dim // 2], float32, scaling applied."""
    dim = config.head_dim
    # float32 throughout, like transformers, so angles agree to the ulp.
    exponent = np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)
    inv_freq = (1.0 / (np.float32(config.rope_theta) ** exponent)).astype(
        np.float32
    )
    scaling = config.rope_scaling
    if scaling is None:
        return inv_freq
    if scaling.rope_type == "linear":
        return (inv_freq / np.float32(scaling.factor)).astype(np.float32)
    if scaling.rope_type == "llama3":
        return _llama3_scaling(inv_freq, scaling)
    raise ValueError(f"rope type {scaling.rope_type!r} is not implemented")


def _llama3_scaling(inv_freq: np.ndarray, scaling) -> np.ndarray:
    factor = scaling.factor
    low, high = scaling.low_freq_factor, scaling.high_freq_factor
    old_len = scaling.original_max_position_embeddings
    if None in (low, high, old_len):
        raise ValueError(
            "llama3 rope scaling needs low_freq_factor, high_freq_factor "
            "and original_max_position_embeddings in rope_parameters"
        )
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    # Interpolate between scaled and unscaled inside the middle band.
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return np.where(medium, smoothed, scaled).astype(np.float32)


def rotary_angles(
    positions_bt: jax.Array, inv_freq: np.ndarray, dtype: jnp.dtype
) -> tuple[jax.Array, jax.Array]:
    """cos and sin tables [B, T, head_dim] for integer positions."""
    freqs_bth = positions_bt.astype(jnp.float32)[..., None] * inv_freq
    angles_bth = jnp.concatenate([freqs_bth, freqs_bth], axis=-1)
    # transformers casts the tables to the compute dtype before use.
    return jnp.cos(angles_bth).astype(dtype), jnp.sin(angles_bth).astype(dtype)


def apply_rotary(
    x_btnh: jax.Array, cos_bth: jax.Array, sin_bth: jax.Array
) -> jax.Array:
    """Rotates every head of x by the angles of its position."""
    half = x_btnh.shape[-1] // 2
    rotated = jnp.concatenate([-x_btnh[..., half:], x_btnh[..., :half]], -1)
    cos, sin = cos_bth[:, :, None, :], sin_bth[:, :, None, :]
    return x_btnh * cos + rotated * sin
