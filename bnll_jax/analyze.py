"""`bnll analyze`: the gradient weight each objective puts on a token.

W(p) is measured, not taken from a formula: for each p we build logits
whose softmax gives the target probability p, differentiate the
objective's per-token loss with `jax.grad`, and read -dL/dz_y, the weight
on the correct logit (the paper's Lemma 3.1). Where W peaks tells whether
an objective leans on the model's prior (peak at p >= 1/2) or is
prior-averse (peak below 1/2); Proposition 3.2 says concave f always
leans on the prior and convex f never does. Thresholded objectives are
neither concave nor convex; for them the peak and the share of the weight
above p = 1/2 tell the story.

A gradient-flow simulation (`bnll_jax.gradient_flow`) then shows the
paper's Theorem 6.4 at work: which objective raises accuracy fastest on a
model-weak and on a model-strong base.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os

import numpy as np

logger = logging.getLogger(__name__)

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
        return objective.token_loss(jax.nn.log_softmax(logits)[0])

    p = jnp.asarray(p, jnp.float32)
    correct_logit = jnp.log(p) - jnp.log1p(-p)
    return -jax.vmap(jax.grad(token_loss))(correct_logit)


def curvature(objective, points: int = 99) -> str:
    """'concave', 'convex', 'linear' or 'neither': the shape of f.

    f' is taken by jax.grad; f'' by finite differences of f', because an
    objective written with a stop-gradient (DFT) has an effective f' that
    differs from the derivative of its loss value.
    """
    import jax
    import jax.numpy as jnp

    if objective.masks_tokens:
        # The indicator makes f jump at q: no curvature class applies.
        return "neither"
    p = np.linspace(0.01, 0.99, points)
    logp = jnp.log(jnp.asarray(p, jnp.float32))
    first = (
        np.asarray(
            jax.vmap(jax.grad(objective.per_token_loss))(logp), np.float64
        )
        / p
    )  # df/dp = (df/dlogp) / p
    second = np.gradient(first, p)
    # Rounding leaves |f''| of a linear f near 1e-5 of |f'|; a real bend
    # is far above that.
    tolerance = 1e-3 * float(np.max(np.abs(first)))
    if np.all(np.abs(second) <= tolerance):
        return "linear"
    if np.all(second <= tolerance):
        return "concave"
    if np.all(second >= -tolerance):
        return "convex"
    return "neither"


@dataclasses.dataclass(frozen=True)
class WeightProfile:
    """W(p) of one objective on a grid, where it peaks, and its shape."""

    spec: str
    probs: np.ndarray
    weights: np.ndarray
    peak_p: float
    upper_share: float  # share of ∫W dp that lies on p >= 1/2
    curvature: str

    @property
    def prior_leaning(self) -> bool:
        return self.peak_p >= 0.5


def profile(objective, points: int = 4001) -> WeightProfile:
    """Samples W(p) on (0, 1) and locates its maximum."""
    probs = np.linspace(0.0, 1.0, points + 2)[1:-1]
    weights = np.asarray(autodiff_gradient_weight(objective, probs))
    total = max(float(weights.sum()), 1e-30)
    return WeightProfile(
        spec=objective.spec,
        probs=probs,
        weights=weights,
        peak_p=float(probs[int(np.argmax(weights))]),
        upper_share=float(weights[probs >= 0.5].sum() / total),
        curvature=curvature(objective),
    )


def plot(profiles: list[WeightProfile], path: str) -> None:
    """Writes W(p) of every objective, each scaled to peak 1, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2))
    for shape in profiles:
        peak = max(float(shape.weights.max()), 1e-30)
        ax.plot(shape.probs, shape.weights / peak, label=shape.spec)
        ax.plot([shape.peak_p], [1.0], "o", ms=3, color="black")
    ax.axvline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("p, probability of the target token")
    ax.set_ylabel("W(p) / max W")
    ax.set_title("Gradient weight on the correct logit (jax.grad)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--objectives",
        default=",".join(DEFAULT_OBJECTIVES),
        help="comma-separated objective specs (see bnll_jax.objectives)",
    )
    parser.add_argument(
        "--out", default=None, help="directory for analysis.json and a PNG"
    )
    parser.add_argument(
        "--no-flow",
        action="store_true",
        help="skip the gradient-flow simulation of Theorem 6.4",
    )


def _print_weights(parsed, profiles) -> None:
    header = "".join(f"{p:>8g}" for p in TABLE_PROBS)
    print("Gradient weight W(p) on the correct logit, by jax.grad")
    print(f"{'objective':<16}{header}{'peak p':>8}{'W>=.5':>7}  shape")
    for objective, shape in zip(parsed, profiles, strict=True):
        row = np.asarray(autodiff_gradient_weight(objective, TABLE_PROBS))
        cells = "".join(f"{w:>8.4f}" for w in row)
        leaning = "prior-leaning" if shape.prior_leaning else "prior-averse"
        print(
            f"{objective.spec:<16}{cells}{shape.peak_p:>8.3f}"
            f"{shape.upper_share:>7.2f}  {leaning}, {shape.curvature}"
        )


def _print_flow(results) -> None:
    specs = list(results[0].rates)
    print("\nGradient flow at t=0: dAccuracy/dt (Theorem 6.4 setting)")
    print(
        f"{'base':<14}{'noise':>6}{'mean p*':>8}{'K':>6}  "
        + "".join(f"{s:>14}" for s in specs)
        + "  fastest"
    )
    for r in results:
        cells = "".join(f"{r.rates[s]:>14.3e}" for s in specs)
        print(
            f"{r.base:<14}{r.noise:>6.2f}{r.mean_true_prob:>8.3f}"
            f"{r.strong_share:>6.2f}  {cells}  {r.fastest}"
        )
    if "nll" in specs and "p" in specs:
        for base in ("model-weak", "model-strong"):
            winners = {
                r.noise: ("1-p" if r.rates["p"] > r.rates["nll"] else "NLL")
                for r in results
                if r.base == base
            }
            print(f"1-p vs NLL on the {base} base, by noise: {winners}")


def run(args: argparse.Namespace) -> int:
    from bnll_jax import gradient_flow, objectives

    parsed = [objectives.parse(s) for s in args.objectives.split(",")]
    profiles = [profile(o) for o in parsed]
    _print_weights(parsed, profiles)

    flow = [] if args.no_flow else gradient_flow.simulate(parsed)
    if flow:
        _print_flow(flow)

    if args.out:
        os.makedirs(args.out, exist_ok=True)
        plot(profiles, os.path.join(args.out, "gradient_weights.png"))
        summary = {
            "objectives": [
                {
                    "spec": s.spec,
                    "peak_p": s.peak_p,
                    "upper_share": s.upper_share,
                    "curvature": s.curvature,
                    "prior_leaning": s.prior_leaning,
                }
                for s in profiles
            ],
            "gradient_flow": [dataclasses.asdict(r) for r in flow],
        }
        with open(os.path.join(args.out, "analysis.json"), "w") as f:
            json.dump(summary, f, indent=2)
        logger.info(
            "wrote analysis.json and gradient_weights.png to %s", args.out
        )
    return 0
