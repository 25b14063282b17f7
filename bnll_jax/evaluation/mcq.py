"""Answer letters of multiple-choice completions (the medical benchmarks).

The protocol follows the reference medical evaluation, which tries four
rules in turn and stops at the first that yields a letter:

1. an explicit "answer is X" (strict);
2. a lone option letter, e.g. "(C)", "C." or "**C**" (loose);
3. the text of an option quoted in the completion;
4. the option whose text is most similar to the completion (difflib).

For rules 1-3 the *last* occurrence wins, since a reasoning model states
its final choice at the end. The reference also keeps the first occurrence
and reports, per source, the better of first-match and last-match
accuracy; `Choice.first` supports that secondary figure.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import string

STRICT, LOOSE, OPTION_TEXT, SIMILARITY, NONE = (
    "strict",
    "loose",
    "option_text",
    "similarity",
    "none",
)


@dataclasses.dataclass(frozen=True)
class Choice:
    """Letters read from a completion: last and first match, and the rule."""

    last: str | None
    first: str | None
    method: str


def option_letters(count: int) -> str:
    if not 1 <= count <= 26:
        raise ValueError(
            f"a question has {count} options; multiple choice needs 1-26"
        )
    return string.ascii_uppercase[:count]


def _strict_re(letters: str) -> re.Pattern:
    # Unlike the reference, the letter must not start a longer word, so
    # "the answer is Cardiomyopathy" is not read as option C, and the
    # letter may sit in brackets or bold.
    return re.compile(
        rf"answer is\s*:?\s*[\(\[\*]*\s*([{letters}])(?![A-Za-z])",
        re.IGNORECASE,
    )


def _loose_re(letters: str) -> re.Pattern:
    # A capital option letter standing alone: preceded by a non-word
    # character or "is ", followed by a non-word character or the end. The
    # negative look-ahead skips the English article "A " ("A patient...").
    return re.compile(
        rf"(?:^|(?<=\W)|(?<=is ))(?!A )([{letters}])(?=\W|$)",
    )


def match_choice(completion: str, options: dict[str, str]) -> Choice:
    """Reads the chosen option letter from a completion.

    `options` maps letters to option texts. An empty completion yields no
    letter (the reference would fall through to rule 4 and pick the last
    option, scoring an empty answer as a guess).
    """
    if not completion.strip():
        return Choice(None, None, NONE)
    letters = "".join(sorted(options))

    strict = [
        m.group(1).upper() for m in _strict_re(letters).finditer(completion)
    ]
    if strict:
        return Choice(strict[-1], strict[0], STRICT)

    loose = [m.group(1) for m in _loose_re(letters).finditer(completion)]
    if loose:
        return Choice(loose[-1], loose[0], LOOSE)

    lowered = completion.lower()
    quoted = {
        letter: (lowered.find(text.lower()), lowered.rfind(text.lower()))
        for letter, text in options.items()
        if text.strip() and text.lower() in lowered
    }
    if quoted:
        first = min(quoted, key=lambda letter: quoted[letter][0])
        last = max(quoted, key=lambda letter: quoted[letter][1])
        return Choice(last, first, OPTION_TEXT)

    def similarity(letter: str) -> float:
        matcher = difflib.SequenceMatcher(
            None, options[letter].lower(), lowered
        )
        return matcher.ratio()

    best = max(sorted(options), key=similarity)
    return Choice(best, best, SIMILARITY)


def is_correct(letter: str | None, answer_letter: str) -> bool:
    """Case-insensitive comparison of a chosen letter with the gold one."""
    return letter is not None and letter.upper() == answer_letter.upper()


def format_question(question: str, options: dict[str, str]) -> str:
    """The question followed by one `X. option` line per option."""
    lines = [question.strip()]
    lines += [f"{letter}. {options[letter]}" for letter in sorted(options)]
    return "\n".join(lines)
