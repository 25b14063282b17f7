"""Final answers of math solutions: extraction and equivalence grading.

A solution's final answer is read, in order of preference, from the last
`\\boxed{...}` (braces may nest); else the later of a `#### answer` line
(GSM8K style) and a "the answer is ..." sentence; else the last number in
the text. The Qwen2.5-Math evaluation harness the paper used falls back in
the same way from the boxed answer to the last number.
Equivalence is decided by math-verify, which compares numerically (so
`\\frac{1}{2}` equals `0.5`), symbolically, and after stripping units.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re

logger = logging.getLogger(__name__)

# How an answer was found; recorded with every sample so that a low score
# caused by unparseable completions is visible in the output.
BOXED, HASH, ANSWER_IS, LAST_NUMBER, NONE = (
    "boxed",
    "hash",
    "answer_is",
    "last_number",
    "none",
)

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_HASH_RE = re.compile(r"^\s*####\s*(.+?)\s*$", re.MULTILINE)
_ANSWER_IS_RE = re.compile(
    r"answer is[:\s]*(.+?)(?:\.\s|\.?$|\n)", re.IGNORECASE
)
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")


@dataclasses.dataclass(frozen=True)
class Extracted:
    """An extracted final answer and the rule that found it."""

    answer: str | None
    method: str


def _braced_content(text: str, open_index: int) -> str | None:
    """Content of the brace group opening at `open_index`, nesting aware."""
    depth = 0
    for index in range(open_index, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[open_index + 1 : index]
    return None  # unbalanced: the generation was cut off inside the box


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`) in `text`.

    `\\boxed 5` (no braces, legal TeX for one token) is also accepted.
    """
    starts = [
        (text.rfind(command), command)
        for command in _BOX_COMMANDS
        if command in text
    ]
    if not starts:
        return None
    start, command = max(starts)
    rest_index = start + len(command)
    rest = text[rest_index:]
    if rest.startswith("{"):
        return _braced_content(text, rest_index)
    if rest.startswith(" "):
        token = rest.strip().split(maxsplit=1)
        return token[0].rstrip("$.") if token else None
    return None


def _clean(answer: str) -> str:
    answer = answer.strip()
    # Sentence punctuation and math delimiters around an answer are not
    # part of it.
    answer = answer.strip("$").strip()
    return answer.rstrip(".").strip()


def extract_answer(text: str) -> Extracted:
    """The final answer of a solution, with the rule that found it."""
    boxed = last_boxed(text)
    if boxed is not None and boxed.strip():
        return Extracted(_clean(boxed), BOXED)

    # A "#### x" line and an "answer is x" sentence rank equally: the
    # later one is the model's final word.
    stated = [
        (match.start(), _clean(match.group(1)), method)
        for pattern, method in ((_HASH_RE, HASH), (_ANSWER_IS_RE, ANSWER_IS))
        for match in pattern.finditer(text)
        if _clean(match.group(1))
    ]
    if stated:
        _, answer, method = max(stated)
        return Extracted(answer, method)

    numbers = _NUMBER_RE.findall(text)
    if numbers:
        return Extracted(numbers[-1].replace(",", ""), LAST_NUMBER)
    return Extracted(None, NONE)


def is_equivalent(predicted: str | None, gold: str) -> bool:
    """Whether a predicted final answer equals the gold one (math-verify).

    Both are wrapped in `$...$` so math-verify reads them as LaTeX; a gold
    answer that already carries `$` delimiters is unwrapped first.
    """
    if predicted is None or not predicted.strip():
        return False
    from math_verify import verify

    gold_parsed = _parse(gold)
    predicted_parsed = _parse(predicted)
    if not gold_parsed:
        # A gold answer math-verify cannot read would mark every sample
        # wrong; fall back to a normalised string comparison and say so.
        logger.warning("math-verify cannot parse gold answer %r", gold)
        return _normalise(predicted) == _normalise(gold)
    return bool(verify(list(gold_parsed), list(predicted_parsed)))


@functools.lru_cache(maxsize=4096)
def _parse(answer: str) -> tuple:
    # Cached: with 16 samples per problem the gold answer and frequent
    # predictions are parsed once.
    from math_verify import parse

    return tuple(parse(f"${_clean(answer)}$"))


def _normalise(answer: str) -> str:
    return re.sub(r"\s+", "", _clean(answer)).lower()
