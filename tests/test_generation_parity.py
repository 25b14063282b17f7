"""Greedy decoding of SmolLM2-135M equals transformers' token for token.

transformers runs the same weights, written by `save_pretrained`, so the
comparison isolates generation (cache, positions, stopping); the weight
conversion itself is checked against transformers' own GGUF loader in
test_checkpoint_io.py.
"""

import pytest
import torch
from transformers import AutoModelForCausalLM

from bnll_jax.generation import SamplingConfig, generate_text
from bnll_jax.models import from_pretrained, save_pretrained
from bnll_jax.tokenizer import load_tokenizer

NEW_TOKENS = 16
QUESTIONS = [
    "What is 2+2?",
    "Name a primary color.",
    "Write a haiku about the sea.",
]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("smollm2-135m")


@pytest.fixture(scope="module")
def prompts(tokenizer):
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for q in QUESTIONS
    ]


@pytest.fixture(scope="module")
def model():
    return from_pretrained("smollm2-135m")


@pytest.fixture(scope="module")
def ours(model, tokenizer, prompts):
    return generate_text(
        model,
        tokenizer,
        prompts,
        SamplingConfig(max_new_tokens=NEW_TOKENS),
        batch_size=len(prompts),
    )


@pytest.fixture(scope="module")
def reference(model, tokenizer, prompts, tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("smollm2_hf"))
    save_pretrained(model, directory)
    hf_model = AutoModelForCausalLM.from_pretrained(
        directory, dtype=torch.float32
    )
    outputs = []
    # On a shared 2-core machine torch's second OpenMP thread spin-waits
    # against other processes: one thread is about 6x faster here.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for prompt in prompts:
        ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
        with torch.no_grad():
            out = hf_model.generate(
                **ids,
                do_sample=False,
                max_new_tokens=NEW_TOKENS,
                pad_token_id=tokenizer.pad_token_id,
            )
        outputs.append(out[0, ids["input_ids"].shape[1] :].tolist())
    torch.set_num_threads(threads)
    return outputs


def test_greedy_tokens_equal_transformers_generate(ours, reference):
    _, generation = ours
    ours_tokens = [samples[0] for samples in generation.tokens]
    assert ours_tokens == reference
    # The prompts mix answers that end early with ones cut at the limit.
    assert {len(t) for t in reference} != {NEW_TOKENS}


def test_completion_text_drops_the_stop_token(ours, reference, tokenizer):
    completions, _ = ours
    for (completion,), tokens in zip(completions, reference, strict=True):
        stopped = tokens[-1] == tokenizer.eos_token_id
        assert completion.finished == stopped
        body = tokens[:-1] if stopped else tokens
        assert completion.text == tokenizer.decode(body)
