import math

import pytest

from bnll_jax.evaluation import metrics


def test_pass_at_k_equals_the_combinatorial_formula():
    n, c, k = 16, 3, 4
    expected = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert metrics.pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_1_is_the_fraction_correct():
    assert metrics.pass_at_k(16, 4, 1) == pytest.approx(0.25)
    assert metrics.pass_at_k(16, 0, 16) == 0.0
    assert metrics.pass_at_k(16, 1, 16) == 1.0


def test_summary_reports_mean_accuracy_over_samples():
    correct = [[True, False, False, False], [True, True, True, True]]
    summary = metrics.summarise(correct)
    assert summary["mean_accuracy"] == pytest.approx(5 / 8)
    assert summary["first_sample_accuracy"] == 1.0
    assert summary["pass@4"] == 1.0
    assert summary["pass@2"] == pytest.approx((0.5 + 1.0) / 2)


def test_summary_rejects_ragged_or_empty_input():
    with pytest.raises(ValueError, match="same"):
        metrics.summarise([[True], [True, False]])
    with pytest.raises(ValueError, match="empty"):
        metrics.summarise([])


def test_per_source_accuracy_and_unweighted_mean():
    per_source = metrics.by_source([("a", True), ("a", False), ("b", True)])
    assert per_source == {"a": 0.5, "b": 1.0}
    assert metrics.unweighted_mean(per_source) == 0.75
