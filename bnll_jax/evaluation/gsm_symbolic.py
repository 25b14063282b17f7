"""Numeric final answers of grade-school word problems (gsm_symbolic).

reasoning-gym's gsm_symbolic answers are numbers; the chain-of-thought
targets end with a `#### <number>` line. A completion's final answer is
read with the math extraction rules (boxed, `####`, "answer is", last
number) and compared numerically.
"""

from __future__ import annotations

import fractions
import re

from bnll_jax.evaluation import math_answers

# Relative tolerance for "equal": answers are integers or short decimals,
# so anything looser would accept rounding mistakes.
REL_TOL = 1e-6

_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def to_number(text: str | None) -> float | None:
    """The first number in `text` (commas, `$`, `%` and units ignored)."""
    if text is None:
        return None
    cleaned = text.replace("\\$", "").replace("\\%", "").replace("\\!", "")
    frac = re.search(r"\\d?frac\{(-?\d+)\}\{(\d+)\}", cleaned)
    if frac:
        return float(fractions.Fraction(int(frac[1]), int(frac[2])))
    match = _NUMBER_RE.search(cleaned)
    if match is None:
        return None
    token = match.group(0).replace(",", "")
    try:
        return float(fractions.Fraction(token))
    except (ValueError, ZeroDivisionError):
        return None


def extract_answer(completion: str) -> math_answers.Extracted:
    """The final answer string of a completion (see `math_answers`)."""
    return math_answers.extract_answer(completion)


def is_correct(predicted: str | None, gold: str | float) -> bool:
    """Whether the predicted answer equals the gold number."""
    value = to_number(predicted)
    gold_value = gold if isinstance(gold, float | int) else to_number(gold)
    if value is None or gold_value is None:
        return False
    return abs(value - gold_value) <= REL_TOL * max(1.0, abs(gold_value))
