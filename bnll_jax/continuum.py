"""Where a (model, dataset) pair sits on the capability continuum.

The paper's quantitative proxy (its Eq. 5) is the base model's mean
predicted probability of the training targets under teacher forcing,
micro-averaged over every response token:

    capability = (1/N) Σ_i Σ_t p_θ(ỹ_i,t | ỹ_i,<t, x_i),   N = Σ_i T_i.

Band edges. The paper gives no cut-offs, only values (its Table 5): the
model-strong pairs (math) measure 0.76-0.81, the intermediate ones
(medical) 0.50-0.59 and the model-weak ones (figlet fonts) 0.01-0.07. We
put each edge midway between neighbouring clusters:

    weak < 0.28 <= intermediate < 0.68 <= strong

(0.28 ≈ (0.07 + 0.50)/2, 0.68 ≈ (0.59 + 0.76)/2). A pair whose confidence
interval crosses an edge is reported as borderline.

Recommendation (the paper's practical rule): model-strong -> a
prior-leaning objective (1 - p; (1 - p^10)/10 and thresholded -log p are
close seconds); model-weak -> NLL; intermediate -> no single objective
wins, so a small sweep.

Quantile thresholds (the paper's Fig. 5) keep tokens whose base-model
probability lies above a percentile of the base model's token
probabilities; the diagnosis turns each percentile into the fixed q that a
`top_logp:<q>` or `top_p:<q>` objective needs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

WEAK_BELOW = 0.28
STRONG_FROM = 0.68
STRONG_TOKEN_P = 0.55  # the theory's per-token strength threshold
PERCENTILES = (5, 10, 20, 30, 50, 70, 90)


@dataclasses.dataclass(frozen=True)
class Recommendation:
    band: str  # "model-strong", "intermediate" or "model-weak"
    objective: str
    alternatives: tuple[str, ...]
    reason: str


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """Statistics of the base model's target-token probabilities."""

    num_examples: int
    num_tokens: int
    capability: float  # micro-average of p over response tokens (Eq. 5)
    capability_ci: tuple[float, float]  # 95% bootstrap over examples
    example_mean: float  # macro-average: mean over examples of their mean
    strong_token_share: float  # share of tokens with p > 0.55
    percentiles: dict[int, float]  # percentile -> p
    histogram: tuple[tuple[float, ...], tuple[int, ...]]  # edges, counts
    recommendation: Recommendation
    borderline: bool

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["percentiles"] = {str(k): v for k, v in self.percentiles.items()}
        return out


def band_of(capability: float) -> str:
    if capability >= STRONG_FROM:
        return "model-strong"
    if capability < WEAK_BELOW:
        return "model-weak"
    return "intermediate"


def recommend(
    capability: float, percentiles: dict[int, float]
) -> Recommendation:
    """The paper's practical rule, with thresholds from this model's p."""
    band = band_of(capability)
    # The paper's best quantile thresholds on its model-strong pair:
    # -log p on tokens above the 30th percentile, 1-p above the 5th.
    top_logp = f"top_logp:{_round_down(percentiles[30])}"
    top_p = f"top_p:{_round_down(percentiles[5])}"
    if band == "model-strong":
        return Recommendation(
            band,
            "p",
            ("power:10", "top_logp:0.2", top_logp, top_p),
            f"mean p {capability:.3f} >= {STRONG_FROM}: the base model is "
            "strong here, so a prior-leaning objective beats NLL",
        )
    if band == "model-weak":
        return Recommendation(
            band,
            "nll",
            ("power:0.1",),
            f"mean p {capability:.3f} < {WEAK_BELOW}: the base model is "
            "weak here, so NLL's weight on low-p tokens is what learns",
        )
    return Recommendation(
        band,
        "nll",
        ("p", "power:0.5", top_logp, "top_logp:0.2"),
        f"mean p {capability:.3f} is intermediate: no objective wins "
        "reliably; sweep NLL against the alternatives on a held-out set",
    )


def _round_down(p: float) -> str:
    # Three decimals, rounded down so the percentile's own tokens pass.
    return f"{np.floor(max(p, 0.0) * 1000) / 1000:.3f}"


def diagnose(
    token_probs: np.ndarray,
    example_ids: np.ndarray,
    *,
    bootstrap: int = 1000,
    bins: int = 50,
    seed: int = 0,
) -> Diagnosis:
    """Summarises per-token target probabilities of response tokens.

    Args:
        token_probs: [N] p of every response token, in any order.
        example_ids: [N] which example each token belongs to; the
            confidence interval resamples whole examples, since tokens of
            one example are not independent.
    """
    token_probs = np.asarray(token_probs, np.float64)
    example_ids = np.asarray(example_ids)
    if token_probs.size == 0:
        raise ValueError(
            "no response tokens to diagnose: every sampled example has an "
            "empty loss mask; check the response field and the truncation"
        )
    examples, inverse = np.unique(example_ids, return_inverse=True)
    sums = np.bincount(inverse, weights=token_probs)
    counts = np.bincount(inverse).astype(np.float64)
    capability = float(sums.sum() / counts.sum())

    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(examples), (bootstrap, len(examples)))
    resampled = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    ci = (
        float(np.percentile(resampled, 2.5)),
        float(np.percentile(resampled, 97.5)),
    )

    percentiles = {q: float(np.percentile(token_probs, q)) for q in PERCENTILES}
    hist_counts, hist_edges = np.histogram(
        token_probs, bins=bins, range=(0.0, 1.0)
    )
    return Diagnosis(
        num_examples=int(len(examples)),
        num_tokens=int(token_probs.size),
        capability=capability,
        capability_ci=ci,
        example_mean=float(np.mean(sums / counts)),
        strong_token_share=float(np.mean(token_probs > STRONG_TOKEN_P)),
        percentiles=percentiles,
        histogram=(
            tuple(float(e) for e in hist_edges),
            tuple(int(c) for c in hist_counts),
        ),
        recommendation=recommend(capability, percentiles),
        borderline=band_of(ci[0]) != band_of(ci[1]),
    )
