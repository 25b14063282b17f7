"""Aggregate metrics over samples: mean accuracy and pass@k.

With n samples per problem of which c are correct, the paper's math
metric is the *mean accuracy over samples*, mean_i c_i / n, i.e. the
expected accuracy of one sample at that temperature. pass@k is the
unbiased estimator of Chen et al. (2021),
    pass@k = mean_i [1 - C(n - c_i, k) / C(n, k)],
the probability that at least one of k samples drawn without replacement
from the n is correct.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with c correct out of n samples."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(
            f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}"
        )
    if n - c < k:
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i), stable for
    # large n where the binomials overflow.
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def default_ks(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself."""
    ks = [1]
    while ks[-1] * 2 <= n:
        ks.append(ks[-1] * 2)
    if ks[-1] != n:
        ks.append(n)
    return ks


def summarise(correct: Sequence[Sequence[bool]]) -> dict[str, float]:
    """Metrics of one benchmark from per-problem lists of sample results.

    Returns `mean_accuracy` (over all samples, the paper's figure),
    `first_sample_accuracy` (sample 0 only) and `pass@k` for each default
    k; every problem must have the same number of samples.
    """
    if not correct:
        raise ValueError("no problems were scored; the benchmark is empty")
    counts = {len(samples) for samples in correct}
    if len(counts) != 1 or 0 in counts:
        raise ValueError(
            f"every problem needs the same, non-zero number of samples; "
            f"got sample counts {sorted(counts)}"
        )
    n = counts.pop()
    per_problem = np.array(
        [[bool(s) for s in samples] for samples in correct], dtype=float
    )
    result = {
        "problems": float(len(correct)),
        "samples_per_problem": float(n),
        "mean_accuracy": float(per_problem.mean()),
        "first_sample_accuracy": float(per_problem[:, 0].mean()),
    }
    for k in default_ks(n):
        result[f"pass@{k}"] = float(
            np.mean([pass_at_k(n, int(c), k) for c in per_problem.sum(1)])
        )
    return result


def by_source(
    items: Iterable[tuple[str, bool]],
) -> dict[str, float]:
    """Accuracy per source from (source, correct) pairs."""
    hits: dict[str, list[bool]] = collections.defaultdict(list)
    for source, correct in items:
        hits[source].append(bool(correct))
    return {source: float(np.mean(v)) for source, v in sorted(hits.items())}


def unweighted_mean(values: dict[str, float]) -> float:
    """Mean over benchmarks/sources, each counting once (the paper's Avg)."""
    if not values:
        raise ValueError("cannot average over zero benchmarks")
    return float(np.mean(list(values.values())))
