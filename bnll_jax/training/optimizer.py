"""The Optax optimizer and learning-rate schedule built from the config.

Defaults follow the paper: AdamW (b1 0.9, b2 0.95, weight decay 0.01),
linear warmup over the first 10% of steps then cosine decay to zero,
global-norm clipping at 1.0, peak learning rate 5e-5.
"""

from __future__ import annotations

import jax
import optax

from bnll_jax.training.config import OptimizerSection


def learning_rate_schedule(
    config: OptimizerSection, total_steps: int
) -> optax.Schedule:
    """Learning rate as a function of the optimizer step (0-based)."""
    peak = config.learning_rate
    end = peak * config.end_lr_ratio
    warmup = int(config.warmup_ratio * total_steps)
    if config.schedule == "constant":
        decay = optax.constant_schedule(peak)
    elif config.schedule == "linear":
        decay = optax.linear_schedule(peak, end, max(1, total_steps - warmup))
    else:
        decay = optax.cosine_decay_schedule(
            peak, max(1, total_steps - warmup), alpha=config.end_lr_ratio
        )
    if warmup == 0:
        return decay
    return optax.join_schedules(
        [optax.linear_schedule(0.0, peak, warmup), decay], [warmup]
    )


def _matrices(params: optax.Params) -> optax.Params:
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def build_optimizer(
    config: OptimizerSection, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(optimizer, schedule); clipping runs before AdamW sees the gradient."""
    schedule = learning_rate_schedule(config, total_steps)
    adamw = optax.adamw(
        schedule,
        b1=config.b1,
        b2=config.b2,
        eps=config.eps,
        weight_decay=config.weight_decay,
        mask=None if config.decay_all else _matrices,
    )
    if config.grad_clip > 0:
        return optax.chain(
            optax.clip_by_global_norm(config.grad_clip), adamw
        ), schedule
    return adamw, schedule
