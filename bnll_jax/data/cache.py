"""An on-disk cache of tokenized examples.

Tokenizing the 67k math rows takes minutes on a small host, and every run
and every host of a pod would repeat it. The cache stores the flat token
and mask arrays, the bad rows and the truncated rows next to the dataset's
array_record files, under a key that changes whenever the rows, the
tokenizer or any setting that shapes an example changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from typing import Any

import numpy as np

from bnll_jax.data.config import DataConfig
from bnll_jax.data.examples import BadRow, TokenizedExamples

logger = logging.getLogger(__name__)

# DataConfig fields that change what an example is.
_ENCODING_FIELDS = (
    "prompt_field",
    "response_field",
    "messages_field",
    "prompt_format",
    "system_prompt",
    "max_length",
    "truncation",
)
_FORMAT = 1  # Bump when the cached layout or the encoder's output changes.


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of everything in a tokenizer that changes its token ids."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        vocab = sorted(tokenizer.get_vocab().items())
        digest.update(json.dumps(vocab).encode())
    for name in ("chat_template", "bos_token", "eos_token"):
        digest.update(repr(getattr(tokenizer, name, None)).encode())
    return digest.hexdigest()


def cache_key(source: str, config: DataConfig, tokenizer: Any) -> str:
    settings = {f: getattr(config, f) for f in _ENCODING_FIELDS}
    digest = hashlib.sha256(
        json.dumps([_FORMAT, source, settings], sort_keys=True).encode()
    )
    digest.update(tokenizer_fingerprint(tokenizer).encode())
    return digest.hexdigest()[:20]


def load(
    path: str,
) -> tuple[TokenizedExamples, list[BadRow], tuple[int, ...]] | None:
    """The cached examples at `path`, or None if there are none."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path) as f:
            examples = TokenizedExamples.from_arrays(
                tokens=f["tokens"],
                loss_mask=f["loss_mask"],
                offsets=f["offsets"],
                indices=f["indices"],
            )
            bad = [
                BadRow(int(i), str(r))
                for i, r in zip(f["bad_index"], f["bad_reason"], strict=True)
            ]
            truncated = tuple(int(i) for i in f["truncated"])
    except (OSError, KeyError, ValueError) as error:
        logger.warning("ignoring unreadable token cache %s: %s", path, error)
        return None
    logger.info("read tokenized examples from %s", path)
    return examples, bad, truncated


def save(
    path: str,
    examples: TokenizedExamples,
    bad_rows: list[BadRow],
    truncated: tuple[int, ...],
) -> None:
    """Writes atomically, so hosts sharing a file system never see half a
    file (the last writer wins with identical content)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=os.path.dirname(path), suffix=".npz"
    )
    with os.fdopen(handle, "wb") as f:
        np.savez(
            f,
            tokens=examples.tokens,
            loss_mask=examples.loss_mask,
            offsets=examples.offsets,
            indices=examples.indices,
            bad_index=np.array([b.index for b in bad_rows], np.int64),
            bad_reason=np.array([b.reason for b in bad_rows], dtype=str),
            truncated=np.array(truncated, np.int64),
        )
    os.replace(temporary, path)
