import pytest

from bnll_jax.evaluation import math_answers
from bnll_jax.evaluation.math_answers import extract_answer, is_equivalent


def test_last_boxed_handles_nested_braces():
    text = r"so \boxed{\frac{1}{\sqrt{2}}} holds"
    assert math_answers.last_boxed(text) == r"\frac{1}{\sqrt{2}}"


def test_last_of_several_boxed_answers_wins():
    text = r"first \boxed{3}, then corrected: \boxed{4}."
    got = extract_answer(text)
    assert (got.answer, got.method) == ("4", math_answers.BOXED)


def test_truncated_box_falls_back_to_other_rules():
    got = extract_answer(r"#### 12" + "\n" + r"\boxed{\frac{1}{2")
    assert (got.answer, got.method) == ("12", math_answers.HASH)


def test_hash_line_is_read_when_no_box():
    got = extract_answer("3 + 4 = 7 apples\n#### 7")
    assert (got.answer, got.method) == ("7", math_answers.HASH)


def test_answer_is_sentence_and_last_number_fallbacks():
    assert extract_answer("So the answer is $12$.").answer == "12"
    got = extract_answer("we get 3 then 1,024")
    assert (got.answer, got.method) == ("1024", math_answers.LAST_NUMBER)


def test_empty_completion_has_no_answer():
    got = extract_answer("")
    assert (got.answer, got.method) == (None, math_answers.NONE)
    assert not is_equivalent(got.answer, "5")


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [
        (r"\frac{1}{2}", "0.5"),
        (r"\dfrac12", r"\frac{1}{2}"),
        (r"5\text{ cm}", "5"),
        ("27", "27.0"),
        (r"\frac{\sqrt{2}}{2}", r"\sqrt{2}/2"),
        ("1+x^2", "x^2 + 1"),
        ("$36$", "36"),
    ],
)
def test_equivalent_answers_are_accepted(predicted, gold):
    assert is_equivalent(predicted, gold)


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [("3", "4"), (r"\frac{1}{3}", "0.33"), ("x^2", "x^3")],
)
def test_different_answers_are_rejected(predicted, gold):
    assert not is_equivalent(predicted, gold)


def test_later_of_hash_line_and_answer_sentence_wins():
    text = "#### 1\nthen 1850 + 50 = 1900\nThe answer is 1900."
    got = extract_answer(text)
    assert (got.answer, got.method) == ("1900", math_answers.ANSWER_IS)
    got = extract_answer("The answer is 3?\nNo.\n#### 4")
    assert (got.answer, got.method) == ("4", math_answers.HASH)
