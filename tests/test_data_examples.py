"""Rows to examples: exact response-only masks, truncation, bad rows."""

import copy

import numpy as np
import pytest

from bnll_jax.data.config import DataConfig, medical_fields
from bnll_jax.data.examples import BadRow, Example, ExampleEncoder
from bnll_jax.tokenizer import format_raw_prompt
from tests.data_tokenizers import TOKENIZERS, llama3, qwen25

QUESTION = "What is two plus two?"
ANSWER = "Two plus two is 4.\nThe answer is 4."


def _encoder(tokenizer, **overrides):
    fields = dict(
        dataset="generic",
        path="unused.jsonl",
        prompt_field="q",
        response_field="a",
        max_length=512,
    )
    return ExampleEncoder(tokenizer, DataConfig(**{**fields, **overrides}))


def _one(encoder, row, index=0):
    (result,) = encoder.encode([(index, row)])
    return result


@pytest.mark.parametrize("family", ["qwen2.5", "llama3", "smollm2"])
def test_chat_mask_is_exactly_response_and_eos(family):
    tokenizer = TOKENIZERS[family]()
    example = _one(_encoder(tokenizer), {"q": QUESTION, "a": ANSWER})

    prompt_text = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}],
        tokenize=False,
        add_generation_prompt=True,
    )
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False).input_ids
    response_ids = tokenizer(ANSWER, add_special_tokens=False).input_ids
    expected = prompt_ids + response_ids + [tokenizer.eos_token_id]

    assert example.tokens.tolist() == expected
    assert example.loss_mask.tolist() == (
        [False] * len(prompt_ids) + [True] * (len(response_ids) + 1)
    )
    # Token by token, the masked tokens spell the response and then EOS.
    masked = example.tokens[example.loss_mask].tolist()
    assert tokenizer.decode(masked[:-1]) == ANSWER
    assert masked[-1] == tokenizer.eos_token_id


@pytest.mark.parametrize("family", ["qwen2.5", "llama3", "smollm2"])
def test_chat_example_matches_full_template_rendering(family):
    tokenizer = TOKENIZERS[family]()
    example = _one(_encoder(tokenizer), {"q": QUESTION, "a": ANSWER})
    rendered = tokenizer.apply_chat_template(
        [
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": ANSWER},
        ],
        tokenize=False,
    )
    # The example is the conversation as the template writes it, up to
    # and including the end-of-turn token that is EOS for these models.
    text = tokenizer.decode(example.tokens.tolist())
    assert rendered.startswith(text)
    assert text.endswith(tokenizer.eos_token)
    assert rendered[len(text) :].strip() == ""


@pytest.mark.parametrize("family", ["qwen2.5", "llama3", "smollm2"])
def test_messages_mask_covers_assistant_turns_only(family):
    tokenizer = TOKENIZERS[family]()
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is two plus two?"},
        {"role": "assistant", "content": "The answer is 4."},
        {"role": "user", "content": "Natalia sold 48 clips?"},
        {"role": "assistant", "content": "Natalia sold 48 clips."},
    ]
    encoder = _encoder(tokenizer, messages_field="chat.turns")
    example = _one(encoder, {"chat": {"turns": messages}})

    # Split the mask into its runs of response tokens.
    mask = example.loss_mask.astype(int)
    starts = np.flatnonzero(np.diff(np.r_[0, mask]) == 1)
    ends = np.flatnonzero(np.diff(np.r_[mask, 0]) == -1) + 1
    runs = [
        example.tokens[s:e].tolist() for s, e in zip(starts, ends, strict=True)
    ]
    eos = tokenizer.eos_token_id
    assert [tokenizer.decode(r[:-1]) for r in runs] == [
        "The answer is 4.",
        "Natalia sold 48 clips.",
    ]
    assert all(r[-1] == eos for r in runs)
    # The second user turn lies between the two runs, outside the mask.
    between = tokenizer.decode(example.tokens[ends[0] : starts[1]].tolist())
    assert "Natalia sold 48 clips?" in between


def test_raw_format_adds_bos_once_and_masks_response():
    tokenizer = llama3()
    encoder = _encoder(tokenizer, prompt_format="llama-base-boxed")
    example = _one(encoder, {"q": QUESTION, "a": ANSWER})

    prompt = format_raw_prompt("llama-base-boxed", QUESTION)
    prompt_ids = tokenizer(prompt, add_special_tokens=True).input_ids
    assert prompt_ids[0] == tokenizer.bos_token_id
    assert example.tokens[: len(prompt_ids)].tolist() == prompt_ids
    assert int(example.loss_mask.sum()) == len(example.tokens) - len(prompt_ids)

    # A pre-formatted prompt that carries its own BOS text gets no second.
    plain = _encoder(tokenizer, prompt_format="plain")
    example = _one(plain, {"q": "<|begin_of_text|>" + QUESTION, "a": ANSWER})
    assert example.tokens.tolist().count(tokenizer.bos_token_id) == 1


@pytest.mark.parametrize("truncation", ["right", "left"])
def test_truncation_keeps_the_configured_end(truncation):
    tokenizer = TOKENIZERS["qwen2.5"]()
    full = _one(_encoder(tokenizer), {"q": QUESTION, "a": ANSWER * 5})
    limit = len(full.tokens) - 7
    encoder = _encoder(tokenizer, max_length=limit, truncation=truncation)
    cut = _one(encoder, {"q": QUESTION, "a": ANSWER * 5})
    assert cut.truncated and len(cut.tokens) == limit
    kept = slice(0, limit) if truncation == "right" else slice(7, None)
    assert cut.tokens.tolist() == full.tokens[kept].tolist()
    assert cut.loss_mask.tolist() == full.loss_mask[kept].tolist()


def test_truncation_error_names_the_row():
    tokenizer = TOKENIZERS["qwen2.5"]()
    full = _one(_encoder(tokenizer), {"q": QUESTION, "a": ANSWER})
    limit = len(full.tokens) - 1
    encoder = _encoder(tokenizer, max_length=limit, truncation="error")
    with pytest.raises(ValueError, match="row 17 has"):
        _one(encoder, {"q": QUESTION, "a": ANSWER}, index=17)


@pytest.mark.parametrize(
    "row, reason",
    [
        ({"q": QUESTION}, "missing response field 'a'"),
        ({"a": ANSWER}, "missing prompt field 'q'"),
        ({"q": QUESTION, "a": "   "}, "empty response"),
        ({"q": QUESTION, "a": 4}, "is int, not a string"),
        ({"q": QUESTION * 40, "a": ANSWER}, "leaves no room"),
    ],
)
def test_bad_rows_come_back_with_reason(row, reason):
    tokenizer = TOKENIZERS["qwen2.5"]()
    (bad,) = _encoder(tokenizer, max_length=64).encode([(5, row)])
    assert isinstance(bad, BadRow) and bad.index == 5
    assert reason in bad.reason


def test_response_that_tokenizes_to_nothing_is_bad():
    class DroppingTokenizer:
        """Wraps a tokenizer whose normaliser drops one character."""

        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __call__(self, texts, **kwargs):
            if isinstance(texts, list):
                texts = [t.replace("\u00a7", "") for t in texts]
            return self.inner(texts, **kwargs)

    tokenizer = DroppingTokenizer(TOKENIZERS["qwen2.5"]())
    results = _encoder(tokenizer).encode(
        [(0, {"q": QUESTION, "a": "\u00a7"}), (1, {"q": QUESTION, "a": "4"})]
    )
    assert isinstance(results[0], BadRow)
    assert results[0].reason == "response tokenizes to nothing"
    assert isinstance(results[1], Example)


def test_bad_messages_are_reported():
    tokenizer = TOKENIZERS["qwen2.5"]()
    encoder = _encoder(tokenizer, messages_field="m")
    rows = [
        {"m": [{"role": "user", "content": "hi"}]},
        {"m": "not a list"},
        {"m": [{"role": "user"}, {"role": "assistant", "content": "x"}]},
    ]
    results = encoder.encode(list(enumerate(rows)))
    assert [type(r) for r in results] == [BadRow] * 3
    assert "no assistant turn" in results[0].reason
    assert "not a non-empty list" in results[1].reason
    assert "lacks a string role and content" in results[2].reason


def test_raw_format_rejects_system_prompt():
    with pytest.raises(ValueError, match="system_prompt needs"):
        _encoder(
            TOKENIZERS["qwen2.5"](), prompt_format="plain", system_prompt="x"
        )


@pytest.mark.parametrize("family", ["qwen", "llama"])
def test_medical_rows_train_on_the_family_fields(family):
    tokenizer = llama3()
    prompts = {
        "qwen": "<|im_start|>user\nWhich drug?<|im_end|>\n",
        "llama": "<|begin_of_text|><|start_header_id|>user<|end_header_id|>"
        "\n\nWhich drug?<|eot_id|>",
    }
    row = {
        "extra_info": {
            "qwen_prompt": prompts["qwen"],
            "qwen_reponse_no_thinking": "The answer is A.",
            "llama_prompt": prompts["llama"],
            "llama_reponse_no_thinking": "The answer is B.",
        }
    }
    config = DataConfig(dataset="medical", **medical_fields(family))
    example = _one(ExampleEncoder(tokenizer, config), row)

    # The pre-formatted prompt is used verbatim (format `plain`).
    prompt_ids = tokenizer(prompts[family], add_special_tokens=False)
    prompt_ids = prompt_ids.input_ids
    if family == "qwen":  # No BOS text of its own: the tokenizer's is added.
        prompt_ids = [tokenizer.bos_token_id, *prompt_ids]
    n = len(prompt_ids)
    assert example.tokens[:n].tolist() == prompt_ids
    masked = example.tokens[example.loss_mask].tolist()
    answer = "The answer is A." if family == "qwen" else "The answer is B."
    assert tokenizer.decode(masked[:-1]) == answer
    assert not example.loss_mask[:n].any()


def test_eos_replaces_template_end_of_turn_when_they_differ():
    # Qwen2.5 base tokenizers end text with <|endoftext|> while the chat
    # template closes turns with <|im_end|>: responses end with EOS.
    tokenizer = copy.deepcopy(qwen25())  # Keeps the shared one intact.
    tokenizer.eos_token = "<|endoftext|>"
    messages = [
        {"role": "user", "content": "What is two plus two?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And three?"},
        {"role": "assistant", "content": "6."},
    ]
    example = _one(_encoder(tokenizer, messages_field="m"), {"m": messages})
    text = tokenizer.decode(example.tokens.tolist())
    assert text.count("<|endoftext|>") == 2
    assert "4.<|endoftext|><|im_start|>user\nAnd three?" in text
    masked = tokenizer.decode(example.tokens[example.loss_mask].tolist())
    assert masked == "4.<|endoftext|>6.<|endoftext|>"
