"""Generation from text prompts: tokenising, stop tokens, decoding.

Prompts rendered by a chat template already contain every special token
the model expects, so they are tokenised without adding any; raw prompt
formats for base models get the tokenizer's own special tokens (BOS).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from bnll_jax.generation import engine
from bnll_jax.generation.sampling import SamplingConfig

logger = logging.getLogger(__name__)

# End-of-turn markers of the chat formats in use (ChatML for Qwen and
# SmolLM2, Llama 3's); each that is a single token of the vocabulary
# stops generation.
END_OF_TURN_TOKENS = (
    "<|im_end|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "<｜end▁of▁sentence｜>",
)


@dataclasses.dataclass(frozen=True)
class Completion:
    """One sampled completion: its text and whether a stop ended it."""

    text: str
    num_tokens: int
    finished: bool


def stop_token_ids(tokenizer, model_config=None) -> tuple[int, ...]:
    """EOS ids of the tokenizer and model plus single-token turn ends."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    eos = getattr(model_config, "eos_token_id", None)
    if eos is not None:
        ids.update(eos if isinstance(eos, tuple | list) else (eos,))
    vocab = tokenizer.get_vocab()
    ids.update(vocab[token] for token in END_OF_TURN_TOKENS if token in vocab)
    return tuple(sorted(ids))


def chat_prompt(tokenizer, user: str, system: str | None = None) -> str:
    """The chat-template rendering of one user turn, ready for the reply."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(
            "this tokenizer has no chat template; pass a raw prompt format "
            "(e.g. --prompt-format qwen-boxed) instead of 'chat'"
        )
    messages = [{"role": "user", "content": user}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    return tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False
    )


def truncate_at_stop_strings(text: str, stop_strings: Sequence[str]) -> str:
    """Text before the earliest stop string, or all of it."""
    cut = min(
        (text.find(s) for s in stop_strings if s and s in text),
        default=len(text),
    )
    return text[:cut]


def generate_text(
    model,
    tokenizer,
    prompts: Sequence[str],
    config: SamplingConfig,
    *,
    add_special_tokens: bool = False,
    stop_strings: Sequence[str] = (),
    batch_size: int = 8,
    mesh=None,
    progress: bool = False,
) -> tuple[list[list[Completion]], engine.Generation]:
    """Completions [prompt][sample] for text prompts, and the raw result.

    `add_special_tokens` is False for chat-template prompts (which carry
    their own) and True for raw formats that rely on the tokenizer's BOS.
    """
    # TODO: stop strings are applied after generation, so a completion
    # runs on to max_new_tokens past one; an in-loop check would need the
    # decoded text on device. Stop *tokens* end generation in the loop.
    encoded = [
        tokenizer.encode(prompt, add_special_tokens=add_special_tokens)
        for prompt in prompts
    ]
    stops = stop_token_ids(tokenizer, model.config)
    result = engine.generate(
        model,
        encoded,
        config,
        stop_ids=stops,
        pad_id=int(tokenizer.pad_token_id or 0),
        batch_size=batch_size,
        mesh=mesh,
        progress=progress,
    )
    completions = []
    for samples, finished in zip(result.tokens, result.finished, strict=True):
        row = []
        for ids, done in zip(samples, finished, strict=True):
            body = ids[:-1] if done else ids
            text = tokenizer.decode(body, skip_special_tokens=True)
            row.append(
                Completion(
                    truncate_at_stop_strings(text, stop_strings),
                    len(ids),
                    done,
                )
            )
        completions.append(row)
    return completions, result
