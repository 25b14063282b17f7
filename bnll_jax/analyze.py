"""`bnll analyze`: the gradient weight each objective puts on a token.

W(p) is measured, not taken from a formula: for each p we build logits
whose softmax gives the target probability p, differentiate the
objective's per-token loss with `jax.grad`, and read -dL/dz_y, the weight
on the correct logit (the paper's Lemma 3.1). Where W peaks tells whether
an objective leans on the model's prior (peak at p >= 1/2, concave f) or
is prior-averse (peak below 1/2, convex f), the paper's Proposition 3.2.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

DEFAULT_OBJECTIVES = ("nll", "p", "power:10", "top_logp:0.2", "log1m_p")
TABLE_PROBS = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def autodiff_gradient_weight(objective, p):
    """W(p) = -dL/dz_y through a two-way softmax, by jax.grad.

    Two logits suffice: W depends on p alone, whatever the vocabulary.
    """
    import jax
    import jax.numpy as jnp

    def token_loss(correct_logit):
        logits = jnp.stack([correct_logit, jnp.zeros_like(correct_logit)])
        logp = jax.nn.log_softmax(logits)[0]
        return jnp.where(
            objective.keep(logp), objective.per_token_loss(logp), 0.0
        )

    p = jnp.asarray(p, jnp.float32)
    correct_logit = jnp.log(p) - jnp.log1p(-p)
    return -jax.vmap(jax.grad(token_loss))(correct_logit)


@dataclasses.dataclass(frozen=True)
class WeightProfile:
    """W(p) of one objective on a grid, and where it peaks."""

    spec: str
    probs: np.ndarray
    weights: np.ndarray
    peak_p: float
    prior_leaning: bool


def profile(objective, points: int = 4001) -> WeightProfile:
    """Samples W(p) on (0, 1) and locates its maximum."""
    probs = np.linspace(0.0, 1.0, points + 2)[1:-1]
    weights = np.asarray(autodiff_gradient_weight(objective, probs))
    peak = int(np.argmax(weights))
    return WeightProfile(
        spec=objective.spec,
        probs=probs,
        weights=weights,
        peak_p=float(probs[peak]),
        prior_leaning=bool(probs[peak] >= 0.5),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--objectives",
        default=",".join(DEFAULT_OBJECTIVES),
        help="comma-separated objective specs (see bnll_jax.objectives)",
    )


def run(args: argparse.Namespace) -> int:
    from bnll_jax import objectives

    parsed = [objectives.parse(s) for s in args.objectives.split(",")]
    header = "".join(f"{p:>8g}" for p in TABLE_PROBS)
    print("Gradient weight W(p) on the correct logit, by jax.grad")
    print(f"{'objective':<16}{header}{'peak p':>9}  leaning")
    for objective in parsed:
        row = np.asarray(autodiff_gradient_weight(objective, TABLE_PROBS))
        shape = profile(objective)
        cells = "".join(f"{w:>8.4f}" for w in row)
        leaning = "prior-leaning" if shape.prior_leaning else "prior-averse"
        print(f"{objective.spec:<16}{cells}{shape.peak_p:>9.3f}  {leaning}")
    return 0
