import json

import pytest

from bnll_jax.evaluation import benchmarks


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_math_formats_of_the_paper_benchmarks(tmp_path):
    rows = {
        "math_oai": {"problem": "1+1?", "answer": "2", "unique_id": "u1"},
        "minerva_math": {"problem": "p", "solution": r"so \boxed{\frac12}"},
        "olympiadbench": {"question": "q", "final_answer": ["$x=3$"]},
        "aime24": {"problem": "p", "answer": 204},
        "amc23": {"question": "q", "answer": [27.0]},
        "gsm8k": {"question": "q", "answer": "2 + 2 = 4\n#### 4"},
    }
    golds = {}
    for name, row in rows.items():
        (tmp_path / name).mkdir()
        path = write_jsonl(tmp_path / name / "test.jsonl", [row])
        (problem,) = benchmarks.load_math(path)
        assert problem.source == name
        golds[name] = problem.answer
    assert golds == {
        "math_oai": "2",
        "minerva_math": r"\frac12",
        "olympiadbench": "x=3",
        "aime24": "204",
        "amc23": "27",
        "gsm8k": "4",
    }


def test_missing_answer_field_names_the_record(tmp_path):
    path = write_jsonl(
        tmp_path / "bench.jsonl",
        [{"problem": "a", "answer": "1"}, {"problem": "b"}],
    )
    with pytest.raises(ValueError, match="record 1 of .*no answer"):
        benchmarks.load_math(path)


def test_empty_and_missing_files_are_clear_errors(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        benchmarks.load_math(str(empty))
    with pytest.raises(ValueError, match="not found"):
        benchmarks.load_math(str(tmp_path / "absent.jsonl"))


def test_malformed_line_reports_its_number(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"problem": "a", "answer": "1"}\n{oops\n')
    with pytest.raises(ValueError, match="line 2"):
        benchmarks.load_math(str(path))


def test_mcq_json_by_source_and_list_options(tmp_path):
    data = {
        "MedQA": [
            {
                "question": "q1",
                "options": {"A": "x", "B": "y"},
                "answer_idx": "b",
            }
        ],
        "PubMedQA": [
            {"question": "q2", "options": ["yes", "no"], "answer_idx": "A"}
        ],
    }
    path = tmp_path / "medical.json"
    path.write_text(json.dumps(data))
    first, second = benchmarks.load_mcq(str(path))
    assert (first.source, first.answer) == ("MedQA", "B")
    assert second.options == {"A": "yes", "B": "no"}


def test_mcq_gold_letter_must_be_an_option(tmp_path):
    path = write_jsonl(
        tmp_path / "m.jsonl",
        [{"question": "q", "options": {"A": "x"}, "answer_idx": "C"}],
    )
    with pytest.raises(ValueError, match="not among its options"):
        benchmarks.load_mcq(path)


def test_reasoning_gym_rows_plain_and_nested(tmp_path):
    path = write_jsonl(
        tmp_path / "figfont.jsonl",
        [
            {"question": "art", "answer": "MAD"},
            {"extra_info": {"question": "art2", "answer": "USNIC"}},
        ],
    )
    problems = benchmarks.load_reasoning_gym(path, "figfont")
    assert [p.answer for p in problems] == ["MAD", "USNIC"]


def test_gsm_symbolic_rejects_non_numeric_gold(tmp_path):
    path = write_jsonl(
        tmp_path / "g.jsonl", [{"question": "q", "answer": "seventy"}]
    )
    with pytest.raises(ValueError, match="non-numeric"):
        benchmarks.load_reasoning_gym(path, "gsm_symbolic")


def test_generated_figfont_split_is_deterministic():
    first = benchmarks.generate_reasoning_gym(
        "figfont", seed=42, start=40_000, size=2
    )
    again = benchmarks.generate_reasoning_gym(
        "figfont", seed=42, start=40_000, size=2
    )
    assert first == again
    assert first[0].id == "figfont-40000"
    assert first[0].answer.isupper() and 2 <= len(first[0].answer) <= 5
