import numpy as np
import pytest

from bnll_jax import continuum
from bnll_jax.objectives import parse


def _sample(mean, examples=200, tokens=50, seed=0):
    rng = np.random.default_rng(seed)
    # Beta-distributed token probabilities with the requested mean.
    probs = rng.beta(8 * mean, 8 * (1 - mean), size=(examples, tokens))
    ids = np.repeat(np.arange(examples), tokens)
    return probs.reshape(-1), ids


def test_capability_is_the_token_micro_average_not_the_example_mean():
    probs = np.array([0.9, 0.9, 0.9, 0.1])
    ids = np.array([0, 0, 0, 1])
    result = continuum.diagnose(probs, ids, bootstrap=10)
    assert result.capability == pytest.approx(0.7)
    assert result.example_mean == pytest.approx(0.5)
    assert result.strong_token_share == pytest.approx(0.75)
    assert result.num_examples == 2 and result.num_tokens == 4


@pytest.mark.parametrize(
    "mean, band, objective",
    [
        (0.8, "model-strong", "p"),
        (0.55, "intermediate", "nll"),
        (0.03, "model-weak", "nll"),
    ],
)
def test_bands_and_recommendations_follow_the_papers_table_5(
    mean, band, objective
):
    probs, ids = _sample(mean)
    result = continuum.diagnose(probs, ids)
    assert result.recommendation.band == band
    assert result.recommendation.objective == objective
    assert not result.borderline
    low, high = result.capability_ci
    assert low < result.capability < high
    for spec in result.recommendation.alternatives:
        parse(spec)  # every suggestion is a valid objective


def test_paper_table_5_values_land_in_their_bands():
    strong = (0.80, 0.76, 0.80, 0.81)
    intermediate = (0.50, 0.53, 0.56, 0.59)
    weak = (0.01, 0.01, 0.01, 0.07)
    assert {continuum.band_of(v) for v in strong} == {"model-strong"}
    assert {continuum.band_of(v) for v in intermediate} == {"intermediate"}
    assert {continuum.band_of(v) for v in weak} == {"model-weak"}


def test_confidence_interval_narrows_with_more_examples():
    small = continuum.diagnose(*_sample(0.6, examples=20))
    large = continuum.diagnose(*_sample(0.6, examples=800))
    width = lambda d: d.capability_ci[1] - d.capability_ci[0]  # noqa: E731
    assert width(large) < width(small) / 3


def test_quantile_thresholds_keep_the_stated_share_of_tokens():
    probs, ids = _sample(0.8)
    result = continuum.diagnose(probs, ids)
    q30 = result.percentiles[30]
    assert np.mean(probs >= q30) == pytest.approx(0.70, abs=0.01)
    spec = next(
        s
        for s in result.recommendation.alternatives
        if s.startswith("top_logp:") and s != "top_logp:0.2"
    )
    assert parse(spec).q <= q30


def test_histogram_counts_every_token():
    probs, ids = _sample(0.4)
    edges, counts = continuum.diagnose(probs, ids, bins=20).histogram
    assert len(edges) == 21 and sum(counts) == probs.size


def test_borderline_when_interval_crosses_a_band_edge():
    probs, ids = _sample(continuum.STRONG_FROM, examples=15, tokens=5)
    assert continuum.diagnose(probs, ids).borderline


def test_empty_input_is_a_clear_error():
    with pytest.raises(ValueError, match="empty loss mask"):
        continuum.diagnose(np.array([]), np.array([]))
