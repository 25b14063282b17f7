import pytest

from bnll_jax.evaluation import figfont


def test_exact_match_is_raw_and_normalised_match_is_not():
    assert figfont.exact_match("MAD", "MAD")
    assert not figfont.exact_match("mad\n", "MAD")
    assert figfont.normalised_match("mad\n", "MAD")


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        # Textbook values (Winkler 1990; also on Wikipedia).
        ("MARTHA", "MARHTA", 0.9611),
        ("DWAYNE", "DUANE", 0.84),
        ("DIXON", "DICKSONX", 0.8133),
    ],
)
def test_jaro_winkler_matches_textbook_values(a, b, expected):
    assert figfont.jaro_winkler(a, b) == pytest.approx(expected, abs=1e-4)


def test_jaro_winkler_lowercases_and_strips():
    assert figfont.jaro_winkler("  usnic\n", "USNIC") == 1.0


def test_jaro_winkler_of_disjoint_and_empty_strings():
    assert figfont.jaro_winkler("abc", "xyz") == 0.0
    assert figfont.jaro_winkler("", "MAD") == 0.0
    assert figfont.jaro_winkler("", "") == 1.0


def test_prefix_bonus_counts_at_most_four_characters():
    jaro = figfont.jaro("abcdefgh", "abcdefgx")
    assert figfont.jaro_winkler("abcdefgh", "abcdefgx") == pytest.approx(
        jaro + 4 * 0.1 * (1 - jaro)
    )
