import pytest

from bnll_jax.evaluation import gsm_symbolic


@pytest.mark.parametrize(
    ("completion", "gold"),
    [
        ("12 + 58 = 70 students.\n#### 70", "70"),
        (r"The total is \boxed{1,250}.", "1250"),
        (r"So she pays \boxed{\$12.50}", "12.5"),
        ("The answer is 93 students.", "93"),
        (r"\boxed{\frac{3}{4}}", "0.75"),
        ("Finally 20 - 5 = 15", 15.0),
    ],
)
def test_numeric_answers_are_read_and_matched(completion, gold):
    extracted = gsm_symbolic.extract_answer(completion).answer
    assert gsm_symbolic.is_correct(extracted, gold)


def test_wrong_and_missing_numbers_are_incorrect():
    assert not gsm_symbolic.is_correct("71", "70")
    assert not gsm_symbolic.is_correct(None, "70")
    extracted = gsm_symbolic.extract_answer("").answer
    assert not gsm_symbolic.is_correct(extracted, "70")


def test_to_number_ignores_units_and_percent():
    assert gsm_symbolic.to_number("45%") == 45.0
    assert gsm_symbolic.to_number("-3 apples") == -3.0
    assert gsm_symbolic.to_number("no digits") is None
