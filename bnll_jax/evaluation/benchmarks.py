"""Loaders for the evaluation sets, all returning `Problem`s.

Benchmark files are not shipped; users pass paths. Supported layouts:

- math: JSONL (or a JSON list) in the formats of the Qwen2.5-Math harness
  the paper used: MATH-500 (`problem`, `answer`), Minerva-Math (`problem`,
  `solution` with a boxed answer), OlympiadBench (`question`,
  `final_answer` list), AIME24 (`problem`, `answer`), AMC23 (`question`,
  `answer` number or list), GSM8K (`question`, `answer` ending `#### n`);
- mcq: the medical evaluation JSON, `{source: [item, ...]}` or a list,
  or JSONL; items have `question`, `options` (letter -> text, or a list)
  and `answer_idx` (the gold letter);
- figfont / gsm_symbolic: JSONL rows of reasoning-gym entries (`question`,
  `answer`), optionally nested under `extra_info` (verl's layout), or
  generated on the fly from reasoning-gym.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterable

from bnll_jax.evaluation import gsm_symbolic, math_answers, mcq

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Problem:
    """One evaluation question with its gold answer.

    `source` names the benchmark (math) or sub-benchmark (mcq) the problem
    belongs to; metrics are reported per source. `options` is set for
    multiple-choice questions only.
    """

    id: str
    question: str
    answer: str
    source: str
    options: dict[str, str] | None = None


def read_records(path: str) -> list[dict]:
    """Rows of a JSONL file, or of a JSON file holding a list or a dict."""
    if not os.path.isfile(path):
        raise ValueError(f"benchmark file not found: {path}")
    with open(path, encoding="utf-8") as file:
        text = file.read()
    if not text.strip():
        raise ValueError(f"benchmark file {path} is empty")
    if path.endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None
        if isinstance(data, dict):
            # {source: [items]}: the source becomes a field of each item.
            return [
                {**item, "source": source}
                for source, items in data.items()
                for item in items
            ]
        if isinstance(data, list):
            return data
        raise ValueError(f"{path} must hold a JSON list or object")
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path} line {number} is not valid JSON ({error}); "
                "benchmark files are JSONL, one object per line"
            ) from None
    return records


def benchmark_name(path: str) -> str:
    """`minerva_math` for `minerva_math.jsonl` and `minerva_math/test.jsonl`."""
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem in ("test", "train", "validation", "dev"):
        return os.path.basename(os.path.dirname(os.path.abspath(path)))
    return stem


def _record_id(record: dict, fallback: str) -> str:
    for key in ("id", "unique_id", "idx", "ID"):
        if record.get(key) is not None:
            return str(record[key])
    return fallback


def _field(record: dict, keys: Iterable[str]) -> object | None:
    for key in keys:
        if record.get(key) is not None:
            return record[key]
    return None


def _require(value: object, what: str, path: str, index: int) -> object:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(
            f"record {index} of {path} has no {what}; fix or drop that row"
        )
    return value


def _math_gold(record: dict) -> str | None:
    final = _field(record, ("final_answer", "answer", "gt", "target"))
    if isinstance(final, list):
        final = final[0] if final else None
    if isinstance(final, float) and final.is_integer():
        final = int(final)
    if final is not None:
        text = str(final)
        # GSM8K keeps its rationale in `answer`; the value ends the text.
        if "####" in text:
            text = text.rsplit("####", 1)[1]
        return text.strip().strip("$").strip()
    solution = record.get("solution")
    if isinstance(solution, str):
        return math_answers.last_boxed(solution)
    return None


def load_math(path: str, name: str | None = None) -> list[Problem]:
    """One math benchmark file (see the module docstring for formats)."""
    source = name or benchmark_name(path)
    problems = []
    for index, record in enumerate(read_records(path)):
        question = _require(
            _field(record, ("problem", "question", "input")),
            "question ('problem' or 'question' field)",
            path,
            index,
        )
        gold = _require(
            _math_gold(record),
            "answer ('answer', 'final_answer', or a 'solution' with \\boxed{})",
            path,
            index,
        )
        problems.append(
            Problem(
                _record_id(record, f"{source}-{index}"),
                str(question),
                str(gold),
                source,
            )
        )
    logger.info("loaded %d problems of %s from %s", len(problems), source, path)
    return problems


def _options(raw: object, path: str, index: int) -> dict[str, str]:
    if isinstance(raw, dict) and raw:
        return {str(k).strip().upper(): str(v) for k, v in raw.items()}
    if isinstance(raw, list) and raw:
        letters = mcq.option_letters(len(raw))
        return dict(zip(letters, map(str, raw), strict=True))
    raise ValueError(
        f"record {index} of {path} has no options: expected 'options' as "
        "a {letter: text} object or a list"
    )


def load_mcq(path: str) -> list[Problem]:
    """Multiple-choice questions, grouped into sources (sub-benchmarks)."""
    default_source = benchmark_name(path)
    problems = []
    for index, record in enumerate(read_records(path)):
        options = _options(record.get("options"), path, index)
        question = _require(record.get("question"), "question", path, index)
        gold = (
            str(
                _require(
                    _field(record, ("answer_idx", "answer_letter")),
                    "gold letter ('answer_idx')",
                    path,
                    index,
                )
            )
            .strip()
            .upper()
        )
        if gold not in options:
            raise ValueError(
                f"record {index} of {path} has gold letter {gold!r}, which "
                f"is not among its options {sorted(options)}"
            )
        source = str(record.get("source") or default_source)
        problems.append(
            Problem(
                _record_id(record, f"{source}-{index}"),
                str(question),
                gold,
                source,
                options,
            )
        )
    logger.info("loaded %d questions from %s", len(problems), path)
    return problems


def _question_answer(record: dict) -> dict:
    nested = record.get("extra_info")
    if isinstance(nested, dict) and "question" in nested:
        return nested
    return record


def load_reasoning_gym(path: str, task: str) -> list[Problem]:
    """figfont or gsm_symbolic rows written from reasoning-gym entries."""
    problems = []
    for index, record in enumerate(read_records(path)):
        row = _question_answer(record)
        question = _require(row.get("question"), "question", path, index)
        gold = str(_require(row.get("answer"), "answer", path, index))
        _check_gold(task, gold, path, index)
        problems.append(
            Problem(
                _record_id(record, f"{task}-{index}"),
                str(question),
                gold,
                task,
            )
        )
    logger.info("loaded %d %s problems from %s", len(problems), task, path)
    return problems


def _check_gold(task: str, gold: str, where: str, index: int) -> None:
    if task == "gsm_symbolic" and gsm_symbolic.to_number(gold) is None:
        raise ValueError(
            f"record {index} of {where} has non-numeric answer {gold!r}; "
            "gsm_symbolic answers must be numbers"
        )


# reasoning-gym settings of the paper's figfont data (words of 2-5 letters,
# spaced); the reference generates 45,000 entries with seed 42 and tests on
# the last 5,000.
FIGFONT_CONFIG = {"min_word_len": 2, "max_word_len": 5, "space_letters": True}
REASONING_GYM_NAMES = {"figfont": "figlet_font", "gsm_symbolic": "gsm_symbolic"}


def generate_reasoning_gym(
    task: str, *, seed: int, start: int, size: int
) -> list[Problem]:
    """Held-out problems generated by reasoning-gym, entries start..start+size.

    reasoning-gym derives entry i from `seed + i`, so a test split is a
    range of indices disjoint from the training range.
    """
    import reasoning_gym

    config = FIGFONT_CONFIG if task == "figfont" else {}
    dataset = reasoning_gym.create_dataset(
        REASONING_GYM_NAMES[task], seed=seed, size=start + size, **config
    )
    problems = []
    for index in range(start, start + size):
        entry = dataset[index]
        _check_gold(task, str(entry["answer"]), "reasoning-gym", index)
        problems.append(
            Problem(
                f"{task}-{index}", entry["question"], str(entry["answer"]), task
            )
        )
    return problems
