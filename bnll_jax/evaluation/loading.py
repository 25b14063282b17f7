"""Loading the model under evaluation and its tokenizer.

`bnll eval --model` accepts four kinds of reference:

- a training run directory (`<run>/checkpoints/<step>/...`) or its
  checkpoint directory: the latest Orbax step's weights are restored;
- an exported Hugging Face directory (`config.json` + safetensors);
- a GGUF file or a preset name (`bnll_jax.presets`);
- a hub id available in the local HF cache.

With several devices the model is placed on a ("data", "tensor") mesh:
parameters are split over "tensor" (heads, MLP width, vocabulary), the
decode batch over "data", so a model larger than one device still runs.
"""

from __future__ import annotations

import logging
import os

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

logger = logging.getLogger(__name__)

# Logical parameter axes -> mesh axes for inference: Megatron-style tensor
# parallelism, no parameter sharding over the data axis.
INFERENCE_RULES = (
    ("vocab", "tensor"),
    ("embed", None),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
)


def inference_mesh(tensor_parallel: int) -> Mesh | None:
    """A ("data", "tensor") mesh over all devices, or None for one device."""
    count = jax.device_count()
    if tensor_parallel < 1 or count % tensor_parallel:
        raise ValueError(
            f"--tensor-parallel {tensor_parallel} must divide the "
            f"{count} devices"
        )
    if count == 1:
        return None
    devices = np.asarray(jax.devices()).reshape(
        count // tensor_parallel, tensor_parallel
    )
    return Mesh(devices, ("data", "tensor"), axis_types=(AxisType.Auto,) * 2)


def _checkpoint_directory(path: str) -> str | None:
    """The Orbax checkpoint directory `path` refers to, if it is one."""
    if not os.path.isdir(path) or os.path.isfile(
        os.path.join(path, "config.json")
    ):
        return None
    nested = os.path.join(path, "checkpoints")
    if os.path.isdir(nested):
        path = nested
    if any(name.isdigit() for name in os.listdir(path)):
        return path
    return None


def model_from_training_checkpoint(directory: str, dtype: str, mesh=None):
    """(model, tokenizer name or None) from an Orbax training checkpoint."""
    from flax import nnx

    from bnll_jax.export import restore_model

    model, model_json, step = restore_model(directory, dtype)
    if mesh is not None:
        graphdef, model_state = nnx.split(model)
        with nnx.logical_axis_rules(INFERENCE_RULES):
            specs = nnx.get_partition_spec(model_state)
        model_state = jax.tree.map(
            lambda x, spec: jax.device_put(
                x, jax.sharding.NamedSharding(mesh, spec)
            ),
            model_state,
            specs,
        )
        model = nnx.merge(graphdef, model_state)
    logger.info("restored step %d of %s", step, directory)
    return model, model_json.get("tokenizer")


def load_model_and_tokenizer(
    reference: str,
    tokenizer_name: str | None = None,
    dtype: str = "float32",
    tensor_parallel: int = 1,
):
    """(model, tokenizer, mesh or None) for a `--model` reference."""
    from bnll_jax.models import check_vocab, from_pretrained
    from bnll_jax.tokenizer import load_tokenizer

    mesh = inference_mesh(tensor_parallel)
    checkpoint_dir = _checkpoint_directory(reference)
    if checkpoint_dir is not None:
        model, trained_tokenizer = model_from_training_checkpoint(
            checkpoint_dir, dtype, mesh
        )
        tokenizer_name = tokenizer_name or trained_tokenizer
        if tokenizer_name is None:
            raise ValueError(
                f"checkpoint {checkpoint_dir} does not name its tokenizer; "
                "pass --tokenizer"
            )
    else:
        model = from_pretrained(
            reference, dtype=dtype, mesh=mesh, rules=INFERENCE_RULES
        )
        tokenizer_name = tokenizer_name or reference
    tokenizer = load_tokenizer(tokenizer_name)
    check_vocab(tokenizer, model.config)
    return model, tokenizer, mesh
