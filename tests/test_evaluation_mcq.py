from bnll_jax.evaluation import mcq

OPTIONS = {
    "A": "Aspirin",
    "B": "Beta blocker",
    "C": "Calcium channel blocker",
    "D": "Diuretic",
}


def test_last_answer_is_statement_wins():
    text = "The answer is A at first glance... no, the answer is C."
    got = mcq.match_choice(text, OPTIONS)
    assert (got.last, got.first, got.method) == ("C", "A", mcq.STRICT)


def test_letter_in_parentheses_after_answer_is():
    got = mcq.match_choice("Thus the answer is (B).", OPTIONS)
    assert (got.last, got.method) == ("B", mcq.STRICT)


def test_answer_is_does_not_read_the_first_letter_of_a_word():
    text = "The answer is Diuretic therapy, option (D)"
    got = mcq.match_choice(text, OPTIONS)
    assert (got.last, got.method) == ("D", mcq.LOOSE)


def test_loose_letter_skips_the_article_a():
    text = "A patient with hypertension should get \\boxed{B}"
    got = mcq.match_choice(text, OPTIONS)
    assert (got.last, got.method) == ("B", mcq.LOOSE)


def test_option_text_is_matched_when_no_letter():
    text = "i would give a diuretic, not a beta blocker"
    got = mcq.match_choice(text, OPTIONS)
    assert (got.last, got.first, got.method) == ("B", "D", mcq.OPTION_TEXT)


def test_most_similar_option_is_the_last_resort():
    got = mcq.match_choice("calcium chanel blockers", OPTIONS)
    assert (got.last, got.method) == ("C", mcq.SIMILARITY)


def test_empty_completion_picks_nothing():
    got = mcq.match_choice("  ", OPTIONS)
    assert got.last is None
    assert not mcq.is_correct(got.last, "A")


def test_comparison_is_case_insensitive():
    assert mcq.is_correct("c", "C")
    assert not mcq.is_correct("B", "C")


def test_letters_beyond_the_options_are_ignored():
    got = mcq.match_choice("The answer is F. Diuretic", OPTIONS)
    assert got.method != mcq.STRICT
    assert got.last == "D"
