import pytest

from bnll_jax.evaluation import tasks
from bnll_jax.evaluation.benchmarks import Problem


def sample(prompt_id, source, index, correct, **details):
    return {
        "prompt_id": prompt_id,
        "source": source,
        "sample": index,
        "correct": correct,
        "details": details,
    }


def test_math_scores_boxed_answers_with_math_verify():
    task = tasks.get("math")
    problem = Problem("p1", "Half of one?", r"\frac{1}{2}", "math_oai")
    scored = task.score(r"It is \boxed{0.5}.", problem)
    assert (scored.extracted, scored.correct) == ("0.5", True)
    assert "\\boxed{}" in task.user_message(problem)


def test_math_summary_averages_benchmarks_unweighted():
    task = tasks.get("math")
    samples = [
        # aime: one problem, 1 of 2 samples right -> 0.5
        sample("a1", "aime24", 0, True, method="boxed"),
        sample("a1", "aime24", 1, False, method="boxed"),
        # math: two problems, all right -> 1.0
        *(
            sample(pid, "math_oai", i, True, method="boxed")
            for pid in ("m1", "m2")
            for i in (0, 1)
        ),
    ]
    summary = task.summarise(samples)
    assert summary["benchmarks"]["aime24"]["mean_accuracy"] == 0.5
    assert summary["benchmarks"]["aime24"]["pass@2"] == 1.0
    assert summary["benchmarks"]["math_oai"]["problems"] == 2
    assert summary["average_mean_accuracy"] == pytest.approx(0.75)
    assert summary["extraction"] == {"boxed": 6}


def test_mcq_reports_per_source_mean_and_reference_figure():
    task = tasks.get("mcq")
    options = {"A": "yes", "B": "no"}
    problem = Problem("q", "Is it?", "B", "PubMedQA", options)
    scored = task.score("The answer is A. Wait, the answer is B.", problem)
    assert (scored.extracted, scored.correct) == ("B", True)
    assert scored.details["first_correct"] is False
    samples = [
        sample("q1", "MedQA", 0, True, first_correct=True, method="strict"),
        sample("q2", "MedQA", 0, False, first_correct=True, method="loose"),
        sample("q3", "GPQA", 0, False, first_correct=False, method="loose"),
    ]
    summary = task.summarise(samples)
    assert summary["accuracy"] == {"GPQA": 0.0, "MedQA": 0.5}
    assert summary["average_accuracy"] == 0.25
    assert summary["reference_accuracy"]["MedQA"] == 1.0


def test_figfont_scores_em_and_jaro_winkler():
    task = tasks.get("figfont")
    problem = Problem("f", "art", "MAD", "figfont")
    exact = task.score("MAD", problem)
    loose = task.score("mad\n", problem)
    assert exact.correct and not loose.correct
    assert loose.details["normalised_match"]
    assert loose.details["jaro_winkler"] == 1.0
    summary = task.summarise(
        [
            {"correct": True, "details": exact.details},
            {"correct": False, "details": loose.details},
        ]
    )
    assert summary["exact_match"] == 0.5
    assert summary["normalised_exact_match"] == 1.0


def test_math_needs_data_and_distinct_benchmark_names(tmp_path):
    task = tasks.get("math")
    with pytest.raises(ValueError, match="needs --data"):
        task.load([])
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "aime24.jsonl").write_text(
            '{"problem": "p", "answer": "1"}\n'
        )
    with pytest.raises(ValueError, match="distinct"):
        task.load(
            [str(tmp_path / "a/aime24.jsonl"), str(tmp_path / "b/aime24.jsonl")]
        )


def test_unknown_task_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown task"):
        tasks.get("poetry")
