"""Tokenizers shared by the data tests.

The SmolLM2 tokenizer is the real one (from the shipped GGUF), loaded once
per test session. Qwen2.5 and Llama-3 are tiny byte-level BPE tokenizers
with the special tokens and the chat-template structure of those families,
trained here in milliseconds, so the tests need no hub access.
"""

from __future__ import annotations

import functools

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import PreTrainedTokenizerFast

from bnll_jax.tokenizer import load_tokenizer

_CORPUS = [
    "What is two plus two? The answer is 4.",
    "Please reason step by step, and put your final answer within boxed.",
    "You are a helpful assistant. Natalia sold clips to 48 friends.",
]

# The Qwen2.5 instruct template's structure: a default system turn, then
# <|im_start|>role\ncontent<|im_end|>\n per message.
QWEN25_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' -%}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else -%}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. "
    "You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if not (loop.first and message['role'] == 'system') -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif -%}"
)

# The Llama-3.1 instruct template's structure: BOS, a dated system header,
# then headers per message with trimmed content and <|eot_id|>.
LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set system_message = messages[0]['content'] | trim -%}"
    "{%- set messages = messages[1:] -%}"
    "{%- else -%}{%- set system_message = '' -%}{%- endif -%}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\n"
    "Today Date: 26 Jul 2024\\n\\n' }}"
    "{{- system_message + '<|eot_id|>' }}"
    "{%- for message in messages -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif -%}"
)


def _tiny(specials: list[str], bos: str | None, eos: str, template: str):
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_CORPUS, trainer)
    if bos is not None:
        # Llama tokenizers put BOS before plain text.
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A",
            special_tokens=[(bos, tokenizer.token_to_id(bos))],
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=bos,
        eos_token=eos,
        pad_token=eos,
        chat_template=template,
    )


@functools.cache
def qwen25():
    return _tiny(
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        None,
        "<|im_end|>",
        QWEN25_TEMPLATE,
    )


@functools.cache
def llama3():
    specials = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eot_id|>",
    ]
    return _tiny(specials, "<|begin_of_text|>", "<|eot_id|>", LLAMA3_TEMPLATE)


@functools.cache
def smollm2():
    return load_tokenizer("smollm2-135m")


TOKENIZERS = {"qwen2.5": qwen25, "llama3": llama3, "smollm2": smollm2}
