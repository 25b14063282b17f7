"""`bnll export CHECKPOINT_DIR OUT_DIR`: a checkpoint as a HF model.

Training exports its final weights itself; this command does the same for
any saved step, reading only the weights and the architecture (never the
optimizer state) from the Orbax checkpoint.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint_dir", help="a run's checkpoint directory (local or gs://)"
    )
    parser.add_argument("out_dir", help="where to write the HF model")
    parser.add_argument(
        "--step",
        type=int,
        default=None,
        help="step to export (default: latest)",
    )
    parser.add_argument(
        "--tokenizer",
        default=None,
        help="tokenizer to save alongside (default: the one training used)",
    )


def export_params(
    params: dict[str, Any], parts: Any, out_dir: str, tokenizer: str | None
) -> str:
    """Writes float32 `params` of the model `parts` to `out_dir` (HF)."""
    import jax
    from flax import nnx
    from jax.experimental import multihost_utils

    from bnll_jax.models import save_pretrained

    # Sharded arrays may live on other hosts; every process takes part in
    # the gather, and process 0 writes.
    if jax.process_count() > 1:
        params = multihost_utils.process_allgather(params, tiled=True)
    params = jax.device_get(params)
    if jax.process_index() != 0:
        return out_dir
    model = nnx.merge(parts.graphdef, params, parts.rest)
    tokenizer_obj = None
    if tokenizer:
        from bnll_jax.tokenizer import load_tokenizer

        tokenizer_obj = load_tokenizer(tokenizer)
    save_pretrained(model, out_dir, tokenizer=tokenizer_obj)
    logger.info("exported the model to %s", out_dir)
    return out_dir


def restore(checkpoint_dir: str, step: int | None = None):
    """(params, model parts, model json, step) of a training checkpoint."""
    from bnll_jax.models.config import from_hf_config
    from bnll_jax.training import checkpoint, state

    params, model_json, step = checkpoint.restore_params(checkpoint_dir, step)
    model_config = from_hf_config(model_json["hf_config"], checkpoint_dir)
    return params, state.abstract_parts(model_config), model_json, step


def restore_model(checkpoint_dir: str, dtype: str = "float32"):
    """(Transformer, model json, step) from a training checkpoint.

    The weights are cast to `dtype`, which is also the compute dtype: what
    inference (evaluation, diagnosis) wants.
    """
    import dataclasses

    import jax
    import numpy as np
    from flax import nnx

    from bnll_jax.training import state

    params, parts, model_json, step = restore(checkpoint_dir)
    config = dataclasses.replace(parts.config, param_dtype=dtype, dtype=dtype)
    parts = state.abstract_parts(config)
    params = jax.tree.map(
        lambda x: np.asarray(jax.device_get(x)).astype(dtype), params
    )
    return nnx.merge(parts.graphdef, params, parts.rest), model_json, step


def run(args: argparse.Namespace) -> int:
    params, parts, model_json, step = restore(args.checkpoint_dir, args.step)
    export_params(
        params, parts, args.out_dir, args.tokenizer or model_json["tokenizer"]
    )
    print(f"exported step {step} of {args.checkpoint_dir} to {args.out_dir}")
    return 0
