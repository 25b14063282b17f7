import json

import numpy as np
import pytest
import torch

from bnll_jax import cli, diagnose
from bnll_jax.data import DataConfig
from bnll_jax.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("smollm2-135m")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _torch_token_probs(hf_model, examples):
    """p of every response token, one unpacked example at a time."""
    probs, owners = [], []
    for i in range(len(examples)):
        tokens, mask = examples.get(i)
        with torch.no_grad():
            logits = hf_model(torch.tensor(tokens[None, :-1])).logits[0]
        logp = torch.log_softmax(logits.float(), dim=-1)
        target_logp = logp.gather(1, torch.tensor(tokens[1:])[:, None])[:, 0]
        keep = mask[1:].astype(bool)
        probs.append(target_logp.exp().numpy()[keep])
        owners.append(np.full(keep.sum(), examples.indices[i]))
    return np.concatenate(probs), np.concatenate(owners)


def test_token_probabilities_match_transformers_on_gsm_symbolic(
    smollm2, tokenizer, data_dir
):
    model, hf_model = smollm2
    config = DataConfig(
        dataset="gsm_symbolic",
        num_generated=(40, 4),
        data_dir=data_dir,
        max_length=512,
    ).resolved()
    examples, bad, _ = diagnose.sample_examples(config, tokenizer, 6, seed=1)
    assert not bad and len(examples) == 6

    probs, owners = diagnose.token_probabilities(
        model,
        examples,
        512,
        tokenizer.pad_token_id,
        batch_rows=2,
        progress=False,
    )
    ref_probs, ref_owners = _torch_token_probs(hf_model, examples)

    # Packing reorders examples; compare example by example.
    for index in examples.indices:
        np.testing.assert_allclose(
            probs[owners == index],
            ref_probs[ref_owners == index],
            atol=1e-3,
        )
    assert abs(probs.mean() - ref_probs.mean()) <= 1e-3
    # Every response token and the EOS is scored once; a prompt always
    # precedes them, so no example's first token is in the mask.
    assert len(probs) == examples.loss_mask.sum()


def test_figlet_fonts_place_smollm2_at_the_weak_end(
    smollm2, tokenizer, data_dir
):
    model, _ = smollm2
    config = DataConfig(
        dataset="figfont",
        num_generated=(16, 4),
        data_dir=data_dir,
        max_length=800,
    ).resolved()
    examples, _, _ = diagnose.sample_examples(config, tokenizer, 4, seed=0)
    probs, owners = diagnose.token_probabilities(
        model,
        examples,
        800,
        tokenizer.pad_token_id,
        batch_rows=1,
        progress=False,
    )
    result = diagnose.continuum.diagnose(probs, owners)
    assert result.recommendation.band == "model-weak"
    assert result.recommendation.objective == "nll"


def test_rows_whose_responses_are_all_empty_are_a_clear_error(
    tmp_path, tokenizer
):
    path = tmp_path / "empty.jsonl"
    path.write_text(
        "\n".join(json.dumps({"q": f"question {i}", "a": ""}) for i in range(5))
    )
    config = DataConfig(
        dataset="generic",
        path=str(path),
        prompt_field="q",
        response_field="a",
        data_dir=str(tmp_path / "tfds"),
    )
    with pytest.raises(ValueError, match="none of the 5 sampled rows"):
        diagnose.sample_examples(config, tokenizer, 5, seed=0)


def test_model_tokenizer_mismatch_is_a_clear_error(tmp_path, tokenizer):
    from tests import tiny_checkpoints

    # A 128-token model in a directory holding the 49152-token SmolLM2
    # tokenizer, as when a user copies the wrong tokenizer files.
    tiny_checkpoints.make_hf_model("llama3_untied").save_pretrained(
        tmp_path / "mixed"
    )
    tokenizer.save_pretrained(tmp_path / "mixed")
    config = DataConfig(
        dataset="gsm_symbolic",
        num_generated=(8, 2),
        data_dir=str(tmp_path / "tfds"),
    )
    with pytest.raises(ValueError, match="vocab_size"):
        diagnose.run_diagnosis(
            str(tmp_path / "mixed"), config, max_examples=2, progress=False
        )


def test_cli_writes_diagnosis_json_and_png(tmp_path, data_dir, capsys):
    out = tmp_path / "out"
    argv = [
        "diagnose",
        "--model",
        "smollm2-135m",
        "--data",
        "gsm_symbolic",
        "--max-examples",
        "3",
        "--max-length",
        "384",
        "--batch-rows",
        "1",
        "--set",
        "num_generated=[40,4]",
        "--set",
        f"data_dir={data_dir}",
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0
    summary = json.loads((out / "diagnosis.json").read_text())
    assert 0.0 < summary["capability"] < 1.0
    assert summary["num_examples"] == 3
    assert summary["recommendation"]["band"] in (
        "model-strong",
        "intermediate",
        "model-weak",
    )
    assert (out / "diagnosis.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "mean p (capability)" in printed and "use objective" in printed


def test_cli_rejects_an_unknown_data_setting(capsys):
    argv = ["diagnose", "--model", "smollm2-135m", "--set", "colour=red"]
    assert cli.main(argv) == 2
    assert "bad data setting" in capsys.readouterr().err
