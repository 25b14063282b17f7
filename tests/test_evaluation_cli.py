"""`bnll eval` end to end on a tiny model saved as a Hugging Face directory."""

import argparse
import json

import pytest
from flax import nnx
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from bnll_jax.evaluation import cli, loading
from bnll_jax.models import ModelConfig, Transformer, save_pretrained

WORDS = "what is one two three four answer boxed the yes no A B".split()
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }}"
    " <|im_end|> {% endfor %}{% if add_generation_prompt %}<|im_start|> "
    "assistant {% endif %}"
)


def tiny_tokenizer():
    specials = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
    vocab = {token: i for i, token in enumerate(specials + WORDS)}
    word_level = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    word_level.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=word_level,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tokenizer = tiny_tokenizer()
    config = ModelConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_layers=1,
        num_heads=2,
        num_kv_heads=1,
        head_dim=8,
        intermediate_size=32,
        max_position_embeddings=256,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = nnx.jit(lambda: Transformer(config, rngs=nnx.Rngs(0)))()
    directory = str(tmp_path_factory.mktemp("tiny_hf"))
    save_pretrained(model, directory, tokenizer=tokenizer)
    return directory


def run_eval(argv):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_math_eval_writes_every_sample_and_a_summary(
    model_dir, tmp_path, capsys
):
    aime = write_jsonl(
        tmp_path / "aime24.jsonl",
        [
            {"problem": "what is one", "answer": "1", "id": 7},
            {"problem": "what is two", "answer": "2", "id": 8},
        ],
    )
    amc = write_jsonl(
        tmp_path / "amc23.jsonl", [{"question": "three", "answer": [3.0]}]
    )
    out = tmp_path / "out"
    argv = ["--model", model_dir, "--task", "math", "--data", aime]
    argv += ["--data", amc, "--n", "3", "--max-new-tokens", "6"]
    argv += ["--batch-size", "2", "--out", str(out)]
    assert run_eval(argv) == 0

    rows = [json.loads(line) for line in open(out / "samples.jsonl")]
    assert len(rows) == 3 * 3
    assert {(r["prompt_id"], r["sample"]) for r in rows} == {
        (pid, i) for pid in ("7", "8", "amc23-0") for i in range(3)
    }
    assert all(r["num_tokens"] <= 6 for r in rows)
    summary = json.load(open(out / "summary.json"))
    assert summary["sampling"]["num_samples"] == 3
    assert summary["sampling"]["temperature"] == 1.0  # the paper's default
    assert set(summary["metrics"]["benchmarks"]) == {"aime24", "amc23"}
    mean = sum(r["correct"] for r in rows) / len(rows)
    per_bench = summary["metrics"]["benchmarks"]
    assert per_bench["aime24"]["samples_per_problem"] == 3
    assert summary["metrics"]["average_mean_accuracy"] == pytest.approx(
        (
            per_bench["aime24"]["mean_accuracy"]
            + per_bench["amc23"]["mean_accuracy"]
        )
        / 2
    )
    assert 0.0 <= mean <= 1.0
    assert "average_mean_accuracy" in capsys.readouterr().out


def test_mcq_eval_groups_sources(model_dir, tmp_path):
    data = {
        "MedQA": [
            {
                "question": "yes or no",
                "options": ["yes", "no"],
                "answer_idx": "A",
            }
        ],
        "GPQA": [
            {
                "question": "one or two",
                "options": {"A": "one", "B": "two"},
                "answer_idx": "B",
            }
        ],
    }
    path = tmp_path / "medical.json"
    path.write_text(json.dumps(data))
    out = tmp_path / "out"
    argv = ["--model", model_dir, "--task", "mcq", "--data", str(path)]
    argv += ["--max-new-tokens", "4", "--batch-size", "2", "--out", str(out)]
    assert run_eval(argv) == 0
    rows = [json.loads(line) for line in open(out / "samples.jsonl")]
    # Greedy: the multiple-choice protocol always yields some letter.
    assert all(r["extracted"] in ("A", "B") for r in rows if r["completion"])
    summary = json.load(open(out / "summary.json"))
    assert set(summary["metrics"]["accuracy"]) == {"MedQA", "GPQA"}


def test_bad_inputs_fail_before_loading_the_model(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    for argv, message in [
        (["--task", "math"], "needs --data"),
        (["--task", "math", "--data", str(empty)], "is empty"),
        (["--task", "math", "--data", str(tmp_path / "x.jsonl")], "not found"),
    ]:
        with pytest.raises(ValueError, match=message):
            run_eval(["--model", "does-not-exist", *argv])


def test_greedy_with_several_samples_is_rejected(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": 1}])
    with pytest.raises(ValueError, match="identical samples"):
        run_eval(
            [
                "--model",
                "x",
                "--task",
                "gsm_symbolic",
                "--data",
                path,
                "--n",
                "4",
            ]
        )


def test_training_checkpoint_directories_are_recognised(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "100").mkdir(parents=True)
    assert loading._checkpoint_directory(str(run)).endswith("checkpoints")
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    assert loading._checkpoint_directory(str(hf)) is None


def test_limit_keeps_the_first_problems_of_every_benchmark():
    from bnll_jax.evaluation.benchmarks import Problem

    problems = [Problem(f"{s}{i}", "q", "1", s) for s in "ab" for i in range(3)]
    kept = cli._first_per_source(problems, 2)
    assert [p.id for p in kept] == ["a0", "a1", "b0", "b1"]
