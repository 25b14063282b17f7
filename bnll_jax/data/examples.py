"""Rows to training examples: token ids and a response-only loss mask.

An example is the token sequence `prompt + response + EOS` (for multi-turn
rows: every turn in order, each assistant turn followed by EOS) and a mask
that is True exactly on the response and EOS tokens. Prompt text comes from
the tokenizer's chat template or from one of the paper's raw prompt
formats; prompt and response pieces are tokenized separately, so the mask
boundary is exact and never depends on how a tokenizer merges across it.

Rows that cannot become an example (a missing field, an empty or
non-string response, a response that tokenizes to nothing, a prompt that
fills `max_length`) come back as `BadRow`s with the reason; the pipeline
counts them and skips or raises as configured.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from bnll_jax.data import sources
from bnll_jax.data.config import DataConfig
from bnll_jax.tokenizer import RAW_PROMPT_FORMATS, format_raw_prompt


@dataclasses.dataclass(frozen=True)
class Example:
    """One tokenized row.

    Attributes:
      index: the row's index in its source.
      tokens: int32 [n] token ids, n <= max_length.
      loss_mask: bool [n], True on response and EOS tokens.
      truncated: whether tokens were cut to fit `max_length`.
    """

    index: int
    tokens: np.ndarray
    loss_mask: np.ndarray
    truncated: bool


@dataclasses.dataclass(frozen=True)
class BadRow:
    """A row that could not become an example, and why."""

    index: int
    reason: str


class _Bad(Exception):
    """Raised inside the encoder for a bad row; carries the reason."""


@dataclasses.dataclass(frozen=True)
class Turn:
    role: str
    content: str


class ExampleEncoder:
    """Turns source rows into `Example`s for one tokenizer and config."""

    def __init__(self, tokenizer: Any, config: DataConfig):
        config = config.resolved()
        self.config = config
        self.tokenizer = tokenizer
        self.max_length = config.max_length
        self.chat = config.prompt_format == "chat"

        if tokenizer.eos_token_id is None:
            raise ValueError(
                "the tokenizer has no EOS token; set tokenizer.eos_token"
            )
        self.eos_id = int(tokenizer.eos_token_id)
        self.eos_text = tokenizer.eos_token
        if self.chat and not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "prompt_format='chat' but the tokenizer has no chat template;"
                f" use one of {sorted(RAW_PROMPT_FORMATS)} for base models"
            )
        if not self.chat:
            format_raw_prompt(config.prompt_format, "")  # Validates the name.
            if config.system_prompt is not None:
                raise ValueError(
                    "system_prompt needs prompt_format='chat'; raw prompt "
                    "formats have no system turn"
                )
        self._bos_prefix = _special_prefix(tokenizer)

    # -- rows to turns ---------------------------------------------------

    def turns(self, row: Any) -> list[Turn]:
        """The conversation a row holds; raises `_Bad` with the reason."""
        c = self.config
        if c.messages_field is not None:
            turns = _message_turns(row, c.messages_field)
        else:
            prompt = _text_field(
                row, c.prompt_field, "prompt", allow_empty=True
            )
            response = _text_field(row, c.response_field, "response")
            turns = [Turn("user", prompt), Turn("assistant", response)]
        if c.system_prompt is not None and turns[0].role != "system":
            turns.insert(0, Turn("system", c.system_prompt))
        return turns

    # -- turns to text pieces --------------------------------------------

    def pieces(self, turns: list[Turn]) -> list[tuple[str, bool]]:
        """Text pieces in order, each flagged True if it is a response.

        Response pieces hold the turn's content only; EOS is appended to
        each after tokenization.
        """
        if not self.chat:
            return self._raw_pieces(turns)
        pieces: list[tuple[str, bool]] = []
        consumed = ""  # Template text already covered by earlier pieces.
        for i, turn in enumerate(turns):
            if turn.role != "assistant":
                continue
            before = self._render(turns[:i], generation_prompt=True)
            if not before.startswith(consumed):
                raise _Bad(
                    f"the chat template renders turn {i} differently once "
                    "later turns are added, so its mask cannot be placed"
                )
            pieces.append((before[len(consumed) :], False))

            body = self._render(turns[: i + 1])[len(before) :]
            content = _rendered_content(body, turn.content)
            if content is None:
                raise _Bad(
                    f"the chat template changes the text of assistant turn "
                    f"{i}, so its mask cannot be placed"
                )
            pieces.append((content, True))

            # EOS stands in for the template's end-of-turn text. Where that
            # text is EOS, what follows it (often a newline) starts the next
            # prompt piece; where it is another marker (base tokenizers
            # whose EOS differs from the template's), marker and newline
            # are left out.
            tail = body[len(content) :]
            consumed = before + content
            if tail.startswith(self.eos_text):
                consumed += self.eos_text
            else:
                consumed += tail
        return pieces

    def _raw_pieces(self, turns: list[Turn]) -> list[tuple[str, bool]]:
        roles = [t.role for t in turns]
        if roles != ["user", "assistant"]:
            raise _Bad(
                "raw prompt formats take one user turn and one assistant "
                f"turn, got roles {roles}; use prompt_format='chat'"
            )
        prompt = format_raw_prompt(self.config.prompt_format, turns[0].content)
        return [(prompt, False), (turns[1].content, True)]

    def _render(self, turns: list[Turn], generation_prompt: bool = False):
        messages = [{"role": t.role, "content": t.content} for t in turns]
        return self.tokenizer.apply_chat_template(
            messages,
            tokenize=False,
            add_generation_prompt=generation_prompt,
        )

    # -- pieces to tokens ------------------------------------------------

    def encode(self, rows: Sequence[tuple[int, Any]]) -> list[Example | BadRow]:
        """Encodes a batch of `(index, row)`; tokenizes in one call."""
        planned: list[tuple[int, list[tuple[str, bool]]] | BadRow] = []
        texts: list[str] = []
        for index, row in rows:
            try:
                pieces = self.pieces(self.turns(row))
            except _Bad as bad:
                planned.append(BadRow(index, str(bad)))
                continue
            planned.append((index, pieces))
            texts += [text for text, _ in pieces]

        ids = (
            self.tokenizer(texts, add_special_tokens=False)["input_ids"]
            if texts
            else []
        )
        results: list[Example | BadRow] = []
        cursor = 0
        for item in planned:
            if isinstance(item, BadRow):
                results.append(item)
                continue
            index, pieces = item
            piece_ids = ids[cursor : cursor + len(pieces)]
            cursor += len(pieces)
            try:
                results.append(self._assemble(index, pieces, piece_ids))
            except _Bad as bad:
                results.append(BadRow(index, str(bad)))
        return results

    def _assemble(
        self,
        index: int,
        pieces: list[tuple[str, bool]],
        piece_ids: list[list[int]],
    ) -> Example:
        tokens: list[int] = []
        mask: list[bool] = []
        if not self.chat and not pieces[0][0].startswith(
            self.tokenizer.bos_token or "\0"
        ):
            # Raw formats get the special prefix (BOS) the tokenizer would
            # add; a prompt that already starts with BOS text keeps its own.
            tokens += self._bos_prefix
            mask += [False] * len(self._bos_prefix)
        for (_, is_response), ids in zip(pieces, piece_ids, strict=True):
            if is_response:
                if not ids:
                    raise _Bad("response tokenizes to nothing")
                ids = [*ids, self.eos_id]
            elif not tokens and not ids:
                raise _Bad("prompt tokenizes to nothing")
            tokens += ids
            mask += [is_response] * len(ids)
        return self._fit(index, tokens, mask)

    def _fit(self, index: int, tokens: list[int], mask: list[bool]):
        n, limit = len(tokens), self.max_length
        prompt_length = mask.index(True)
        if prompt_length >= limit:
            raise _Bad(
                f"prompt has {prompt_length} tokens, which leaves no room "
                f"for the response within max_length={limit}"
            )
        tokens_n = np.asarray(tokens, dtype=np.int32)
        mask_n = np.asarray(mask, dtype=bool)
        if n <= limit:
            return Example(index, tokens_n, mask_n, truncated=False)

        truncation = self.config.truncation
        if truncation == "error":
            raise ValueError(
                f"row {index} has {n} tokens, more than max_length={limit};"
                " raise max_length or set truncation to 'right' or 'left'"
            )
        keep = slice(0, limit) if truncation == "right" else slice(n - limit, n)
        return Example(index, tokens_n[keep], mask_n[keep], truncated=True)


def _special_prefix(tokenizer: Any) -> list[int]:
    """Token ids the tokenizer puts before text (BOS for Llama, none for
    Qwen), found by tokenizing a probe with and without special tokens."""
    probe = "probe"
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start])
    return []


def _text_field(
    row: Any, key: str, what: str, allow_empty: bool = False
) -> str:
    value = sources.get_field(row, key)
    if sources.is_missing(value):
        raise _Bad(f"missing {what} field {key!r}")
    if not isinstance(value, str):
        raise _Bad(
            f"{what} field {key!r} is {type(value).__name__}, not a string"
        )
    if not allow_empty and not value.strip():
        raise _Bad(f"empty {what} in field {key!r}")
    return value


def _message_turns(row: Any, key: str) -> list[Turn]:
    messages = sources.get_field(row, key)
    if sources.is_missing(messages):
        raise _Bad(f"missing messages field {key!r}")
    if not isinstance(messages, list) or not messages:
        raise _Bad(f"messages field {key!r} is not a non-empty list")
    turns = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _Bad(f"message {i} is not a {{role, content}} dict")
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not isinstance(content, str):
            raise _Bad(f"message {i} lacks a string role and content")
        if role == "assistant" and not content.strip():
            raise _Bad(f"empty response in assistant message {i}")
        turns.append(Turn(role, content))
    if not any(t.role == "assistant" for t in turns):
        raise _Bad("messages hold no assistant turn to train on")
    return turns


def _rendered_content(body: str, content: str) -> str | None:
    """The assistant content as the template renders it at the start of
    `body` (some templates strip surrounding whitespace), or None."""
    for candidate in (content, content.strip()):
        if candidate and body.startswith(candidate):
            return candidate
    return None


class TokenizedExamples:
    """Many examples stored flat: one token array, one mask, offsets.

    Example i is `tokens[offsets[i]:offsets[i + 1]]`; a flat layout keeps
    a 67k-row dataset in two arrays instead of 134k small ones.
    """

    def __init__(self, examples: Sequence[Example]):
        lengths = np.array([len(e.tokens) for e in examples], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        self.lengths = lengths
        self.indices = np.array([e.index for e in examples], dtype=np.int64)
        empty_i, empty_b = np.zeros(0, np.int32), np.zeros(0, bool)
        self.tokens = np.concatenate([e.tokens for e in examples] or [empty_i])
        self.loss_mask = np.concatenate(
            [e.loss_mask for e in examples] or [empty_b]
        )

    @classmethod
    def from_arrays(
        cls,
        *,
        tokens: np.ndarray,
        loss_mask: np.ndarray,
        offsets: np.ndarray,
        indices: np.ndarray,
    ) -> TokenizedExamples:
        """Rebuilds examples from the arrays of another instance."""
        self = cls.__new__(cls)
        self.tokens = np.asarray(tokens, np.int32)
        self.loss_mask = np.asarray(loss_mask, bool)
        self.offsets = np.asarray(offsets, np.int64)
        self.indices = np.asarray(indices, np.int64)
        self.lengths = np.diff(self.offsets)
        return self

    def __len__(self) -> int:
        return len(self.lengths)

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Tokens and loss mask of example i."""
        span = slice(self.offsets[i], self.offsets[i + 1])
        return self.tokens[span], self.loss_mask[span]
