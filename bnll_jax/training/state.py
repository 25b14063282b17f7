"""The model and the train state, created directly in their shardings.

Parameters are split from the NNX module once: the static graph definition
stays on the host and the float32 weights travel through the step as a
plain nested dict, which is what Optax transforms and Orbax saves.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bnll_jax import sharding
from bnll_jax.models import ModelConfig, Transformer
from bnll_jax.training.config import ModelSection
from bnll_jax.training.step import TrainState

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ModelParts:
    """A model split for jit: static graph, param layout, other state."""

    config: ModelConfig
    graphdef: nnx.GraphDef
    abstract_params: Any  # nnx.State of abstract Variables (with metadata)
    rest: Any  # pure dict of non-parameter variables


def tiny_model_config(section: ModelSection) -> ModelConfig:
    tiny = dataclasses.asdict(section.tiny)
    return ModelConfig(
        **tiny,
        param_dtype="float32",
        dtype=section.dtype,
        remat=section.remat,
    )


def split_model(model: nnx.Module) -> tuple[ModelParts, dict[str, Any]]:
    """(parts, pure float32 params) of a concrete model."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params
    )
    parts = ModelParts(model.config, graphdef, abstract, nnx.to_pure_dict(rest))
    return parts, nnx.to_pure_dict(params)


def abstract_parts(model_config: ModelConfig, seed: int = 0) -> ModelParts:
    """ModelParts of `model_config` without allocating any weights."""
    model = nnx.eval_shape(
        lambda: Transformer(model_config, rngs=nnx.Rngs(seed))
    )
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return ModelParts(model_config, graphdef, params, nnx.to_pure_dict(rest))


def param_shardings(
    parts: ModelParts, mesh: Mesh, rules: sharding.Rules
) -> dict[str, Any]:
    """Pure dict of NamedShardings, from the params' logical axis names."""
    return nnx.to_pure_dict(
        sharding.state_shardings(parts.abstract_params, mesh, rules)
    )


def state_shardings(
    optimizer: optax.GradientTransformation,
    params_sharding: dict[str, Any],
    abstract_params: dict[str, Any],
    mesh: Mesh,
) -> TrainState:
    """Shardings of every TrainState leaf.

    Optimizer moments take their parameter's sharding; counters, scalars
    and the RNG key are replicated.
    """
    replicated = NamedSharding(mesh, PartitionSpec())
    abstract_opt = jax.eval_shape(optimizer.init, abstract_params)
    opt_sharding = optax.tree_map_params(
        optimizer,
        lambda _, s: s,
        abstract_opt,
        params_sharding,
        transform_non_params=lambda _: replicated,
    )
    return TrainState(
        step=replicated,
        params=params_sharding,
        opt_state=opt_sharding,
        rng=replicated,
        nonfinite_total=replicated,
        nonfinite_streak=replicated,
    )


def abstract_state(
    optimizer: optax.GradientTransformation,
    abstract_params: dict[str, Any],
    shardings: TrainState,
) -> TrainState:
    """TrainState of ShapeDtypeStructs carrying `shardings` (for restore)."""
    shapes = jax.eval_shape(
        lambda p: new_state(p, optimizer, seed=0), abstract_params
    )
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        shapes,
        shardings,
    )


def new_state(
    params: dict[str, Any], optimizer: optax.GradientTransformation, seed: int
) -> TrainState:
    zero = jnp.zeros((), jnp.int32)
    return TrainState(
        step=zero,
        params=params,
        opt_state=optimizer.init(params),
        rng=jax.random.PRNGKey(seed),
        nonfinite_total=zero,
        nonfinite_streak=zero,
    )


def init_random_state(
    parts: ModelParts,
    optimizer: optax.GradientTransformation,
    shardings: TrainState,
    seed: int,
) -> TrainState:
    """A randomly initialised model's state, created sharded under jit."""

    def init() -> TrainState:
        model = Transformer(parts.config, rngs=nnx.Rngs(seed))
        params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
        return new_state(params, optimizer, seed)

    return jax.jit(init, out_shardings=shardings)()


def init_state_from_params(
    params: dict[str, Any],
    optimizer: optax.GradientTransformation,
    shardings: TrainState,
    seed: int,
) -> TrainState:
    """State around loaded weights, which are moved to their shardings."""
    params = jax.device_put(params, shardings.params)
    return jax.jit(
        lambda p: new_state(p, optimizer, seed), out_shardings=shardings
    )(params)
