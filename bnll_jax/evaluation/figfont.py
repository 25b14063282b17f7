"""Scores for figfont decoding: exact match and Jaro-Winkler similarity.

The paper reports exact match (EM) of the decoded word and the
Jaro-Winkler similarity (JW) between the completion and the word, both
averaged over the test set.
"""

from __future__ import annotations

# Winkler's boost for a common prefix: weight per prefix character and the
# longest prefix that counts.
PREFIX_WEIGHT = 0.1
MAX_PREFIX = 4


def exact_match(completion: str, answer: str) -> bool:
    """Raw string equality, as the reference's `score`."""
    return completion == answer


def normalised_match(completion: str, answer: str) -> bool:
    """Equality after stripping whitespace and lower-casing."""
    return completion.strip().lower() == answer.strip().lower()


def jaro(a: str, b: str) -> float:
    """Jaro similarity in [0, 1].

    Characters match when equal and at most max(|a|, |b|) // 2 - 1 apart;
    with m matches and t half the number of matched characters out of
    order, jaro = (m/|a| + m/|b| + (m - t)/m) / 3.
    """
    if not a and not b:
        return 1.0
    if not a or not b:
        return 0.0
    window = max(max(len(a), len(b)) // 2 - 1, 0)
    a_matched = [False] * len(a)
    b_matched = [False] * len(b)
    matches = 0
    for i, char in enumerate(a):
        for j in range(max(0, i - window), min(len(b), i + window + 1)):
            if not b_matched[j] and b[j] == char:
                a_matched[i] = b_matched[j] = True
                matches += 1
                break
    if matches == 0:
        return 0.0

    a_chars = [c for c, hit in zip(a, a_matched, strict=True) if hit]
    b_chars = [c for c, hit in zip(b, b_matched, strict=True) if hit]
    transpositions = (
        sum(x != y for x, y in zip(a_chars, b_chars, strict=True)) / 2
    )
    return (
        matches / len(a)
        + matches / len(b)
        + (matches - transpositions) / matches
    ) / 3


def jaro_winkler(completion: str, answer: str) -> float:
    """Jaro-Winkler similarity of lower-cased, stripped strings.

    jw = jaro + l * p * (1 - jaro), with l the common prefix length capped
    at 4 and p = 0.1.
    """
    a, b = completion.strip().lower(), answer.strip().lower()
    similarity = jaro(a, b)
    prefix = 0
    for x, y in zip(a[:MAX_PREFIX], b[:MAX_PREFIX], strict=False):
        if x != y:
            break
        prefix += 1
    return similarity + prefix * PREFIX_WEIGHT * (1 - similarity)
