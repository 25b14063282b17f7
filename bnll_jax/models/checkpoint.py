"""`from_pretrained` and `save_pretrained`: HF directories and GGUF files.

Loading builds the model abstractly (shapes only, `nnx.eval_shape`), then
reads one tensor at a time, converts it to this port's layout and places it
straight into its final sharding, so a model larger than one device is
never materialised on one device.

Saving writes a directory that `transformers.AutoModelForCausalLM` (and so
vLLM and every other HF tool) loads: `config.json` in the transformers v5
form, safetensors shards, and the tokenizer files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from bnll_jax import presets
from bnll_jax.models import config as config_lib
from bnll_jax.models import safetensors_io, weights
from bnll_jax.models.config import ModelConfig
from bnll_jax.models.gguf_io import GGUFFile
from bnll_jax.models.transformer import Transformer

logger = logging.getLogger(__name__)

AxisRules = Sequence[tuple[str, str | tuple[str, ...] | None]]
# Tensors some checkpoints carry that the model recomputes or ties.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
_DEFAULT_SHARD_BYTES = 5 * 2**30


def _local_directory(source: presets.Source) -> str:
    if source.is_local:
        return source.path
    # A hub id: served from the HF cache (or downloaded when online).
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(
            source.path,
            allow_patterns=["*.json", "*.safetensors", "tokenizer*"],
        )
    except Exception as e:
        raise ValueError(
            f"{source.path!r} is neither a local checkpoint nor a hub model "
            f"available offline or online ({e})"
        ) from e


def _open_checkpoint(path_or_name: str):
    """Returns (reader with names/get/location, ModelConfig)."""
    source = presets.resolve(path_or_name)
    if source.gguf_file:
        gguf_file = GGUFFile(os.path.join(source.path, source.gguf_file))
        return gguf_file, gguf_file.config
    directory = _local_directory(source)
    config = config_lib.read_hf_config(directory)
    return safetensors_io.SafetensorsReader(directory), config


def _fit_spec(spec, shape, mesh: Mesh):
    """Drops mesh axes from dimensions they do not divide evenly.

    Small models have fewer key/value heads than a tensor-parallel axis has
    devices (Qwen2.5-1.5B: 2 kv heads); those dimensions are replicated.
    """
    fitted = []
    for entry, size in zip(tuple(spec), shape, strict=True):
        axes = (entry,) if isinstance(entry, str) else tuple(entry or ())
        devices = int(np.prod([mesh.shape[a] for a in axes]))
        fitted.append(entry if size % devices == 0 else None)
    return PartitionSpec(*fitted)


def _shardings(abstract_state, mesh: Mesh | None, rules: AxisRules | None):
    """Path -> NamedSharding (or None without a mesh)."""
    if mesh is not None and any(t != AxisType.Auto for t in mesh.axis_types):
        raise ValueError(
            f"mesh axis types are {mesh.axis_types}, but the model relies on "
            "XLA's sharding propagation: build the mesh with axis_types="
            "(jax.sharding.AxisType.Auto,) * len(axis_names)"
        )
    result, replicated = {}, []
    for path, var in nnx.to_flat_state(abstract_state):
        if mesh is None:
            result[path] = None
            continue
        names = var.get_metadata().get("out_sharding") or ()
        spec = nn.logical_to_mesh_axes(names, rules or ())
        fitted = _fit_spec(spec, var.value.shape, mesh)
        if fitted != spec:
            replicated.append(".".join(map(str, path)))
        result[path] = NamedSharding(mesh, fitted)
    if replicated:
        logger.warning(
            "%d parameters have dimensions the mesh does not divide; those "
            "dimensions are replicated (e.g. %s)",
            len(replicated),
            replicated[0],
        )
    return result


def _place(array: np.ndarray, sharding: NamedSharding | None, name: str):
    if sharding is None:
        return jnp.asarray(array)
    try:
        # Each device receives only its own slice of the host array.
        return jax.make_array_from_callback(
            array.shape, sharding, lambda index: array[index]
        )
    except ValueError as e:
        raise ValueError(
            f"cannot shard {name} of shape {array.shape} as {sharding.spec} "
            f"on mesh {dict(sharding.mesh.shape)} ({e}); change the axis "
            "rules so each sharded dimension divides evenly"
        ) from e


def _check_names(reader, specs, config: ModelConfig) -> None:
    expected = {spec.hf_name for spec in specs}
    available = reader.names()
    missing = sorted(expected - available)
    if missing:
        raise ValueError(
            f"checkpoint {reader.location(missing[0])} lacks {len(missing)} "
            f"tensors the config needs, e.g. {missing[:3]}; the checkpoint "
            "and its config do not match"
        )
    extra = available - expected
    if config.tie_word_embeddings:
        # Some tied checkpoints also store the (identical) head.
        extra.discard("lm_head.weight")
    ignored = {n for n in extra if n.endswith(_IGNORED_SUFFIXES)}
    if ignored:
        logger.info("ignored %d recomputed tensors (inv_freq)", len(ignored))
    unexpected = sorted(extra - ignored)
    if unexpected:
        raise ValueError(
            f"checkpoint {reader.location(unexpected[0])} has "
            f"{len(unexpected)} tensors the model does not use, e.g. "
            f"{unexpected[:3]}; its architecture options are not supported"
        )


def from_pretrained(
    path_or_name: str,
    dtype: jnp.dtype | str = jnp.float32,
    mesh: Mesh | None = None,
    rules: AxisRules | None = None,
    *,
    compute_dtype: jnp.dtype | str | None = None,
    remat: bool = False,
    attention_impl: str = "xla",
) -> Transformer:
    """Loads a Transformer with its weights in place.

    Args:
      path_or_name: a HF checkpoint directory, a `.gguf` file, a preset name
        (`bnll_jax.presets`) or a hub id (served from the HF cache offline).
      dtype: parameter dtype (fp32 master weights for training).
      mesh, rules: place each weight directly into the NamedSharding its
        logical axis names map to under `rules`.
      compute_dtype: activation dtype; defaults to `dtype`.
      remat: rematerialise each decoder block in the backward pass.
      attention_impl: a name registered in `bnll_jax.models.attention`.
    """
    reader, config = _open_checkpoint(path_or_name)
    param_dtype = jnp.dtype(dtype)
    config = dataclasses.replace(
        config,
        param_dtype=param_dtype.name,
        dtype=jnp.dtype(compute_dtype or param_dtype).name,
        remat=remat,
        attention_impl=attention_impl,
    )

    abstract = nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0)))
    graphdef, abstract_state = nnx.split(abstract)
    shardings = _shardings(abstract_state, mesh, rules)
    specs = {spec.path: spec for spec in weights.weight_specs(config)}
    _check_names(reader, specs.values(), config)

    flat = nnx.to_flat_state(abstract_state)
    for path, var in flat:
        spec = specs[path]
        array = spec.to_ours(reader.get(spec.hf_name))
        if array.shape != var.value.shape:
            raise ValueError(
                f"tensor {spec.hf_name} in {reader.location(spec.hf_name)} "
                f"has shape {array.shape} after conversion, but the config "
                f"implies {var.value.shape}"
            )
        array = array.astype(param_dtype)
        var.set_value(_place(array, shardings[path], spec.hf_name))
    state = nnx.from_flat_state(flat)
    logger.info(
        "loaded %s: %d tensors, %.1fM parameters",
        path_or_name,
        len(specs),
        config.num_params() / 1e6,
    )
    return nnx.merge(graphdef, state)


def check_vocab(tokenizer, config: ModelConfig) -> None:
    """Raises if the tokenizer produces ids the model has no embedding for.

    A model's vocab_size may exceed the tokenizer's (padded embeddings, as
    in Qwen2.5), never the reverse.
    """
    if len(tokenizer) > config.vocab_size:
        raise ValueError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has "
            f"{len(tokenizer)} tokens but the model's vocab_size (config "
            f"field vocab_size) is {config.vocab_size}; use the tokenizer "
            "that belongs to the checkpoint"
        )


def _host_array(value: jax.Array) -> np.ndarray:
    # TODO: multi-host saving needs a gather of non-addressable shards
    # (jax.experimental.multihost_utils.process_allgather) and writing from
    # one process; single-host meshes work as is.
    return np.asarray(jax.device_get(value))


def save_pretrained(
    model: Transformer,
    out_dir: str,
    tokenizer=None,
    *,
    dtype: jnp.dtype | str | None = None,
    max_shard_bytes: int = _DEFAULT_SHARD_BYTES,
) -> None:
    """Writes a Hugging Face checkpoint directory for `model`.

    Args:
      dtype: dtype of the saved weights (default: the parameter dtype);
        bfloat16 halves the size for inference.
      tokenizer: a HF tokenizer, saved alongside (its vocabulary is checked
        against the model's).
    """
    config = model.config
    if tokenizer is not None:
        check_vocab(tokenizer, config)
    save_dtype = jnp.dtype(dtype or config.param_dtype)
    os.makedirs(out_dir, exist_ok=True)

    state = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    tensors = {}
    for spec in weights.weight_specs(config):
        array = _host_array(state[spec.path].value).astype(save_dtype)
        tensors[spec.hf_name] = spec.to_hf(array)
    safetensors_io.write_safetensors(tensors, out_dir, max_shard_bytes)

    hf_config = config_lib.to_hf_config(config)
    hf_config["dtype"] = save_dtype.name
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(hf_config, f, indent=2)
    generation = {
        k: hf_config[k]
        for k in ("bos_token_id", "eos_token_id", "pad_token_id")
        if hf_config[k] is not None
    }
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump(generation, f, indent=2)
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)
    logger.info("saved %s (%s weights)", out_dir, save_dtype.name)
