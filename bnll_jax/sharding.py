"""Device mesh, logical-axis rules and the shardings built from them.

The mesh has three named axes:

- ``data``: pure data parallelism; parameters are replicated across it.
- ``fsdp``: data parallelism whose replicas also split parameters and
  optimizer state (ZeRO-3 style); XLA all-gathers weights per layer.
- ``tensor``: Megatron-style tensor parallelism over heads, MLP width and
  vocabulary.

Model code names the axes of every parameter and activation logically
(``embed``, ``mlp``, ``heads``, ...). A rule table maps each logical name to
a mesh axis (or to none, meaning replicated), so the same model runs on one
CPU, eight simulated devices, a GPU node or a TPU pod slice by changing only
the mesh sizes.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

logger = logging.getLogger(__name__)

MESH_AXES = ("data", "fsdp", "tensor")

# The batch is split over both data-parallel axes; parameters are split over
# fsdp on their embedding axis and over tensor on the "wide" axis of each
# matrix, which keeps every matmul's contraction local to a tensor shard
# except the output projections (one reduce-scatter each, as in Megatron).
Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]
DEFAULT_RULES: Rules = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("layers", None),
    ("norm", None),
)


def _named(shape: Sequence[int]) -> dict[str, int]:
    return dict(zip(MESH_AXES, shape, strict=True))


def resolve_mesh_shape(
    sizes: Mapping[str, int], device_count: int
) -> tuple[int, ...]:
    """Mesh axis sizes in MESH_AXES order, with at most one -1 filled in.

    Raises ValueError, before any device work, when the sizes do not
    multiply to `device_count`.
    """
    unknown = set(sizes) - set(MESH_AXES)
    if unknown:
        raise ValueError(
            f"unknown mesh axes {sorted(unknown)}; use {list(MESH_AXES)}"
        )
    shape = [int(sizes.get(axis, 1)) for axis in MESH_AXES]
    if any(size == 0 or size < -1 for size in shape):
        raise ValueError(
            f"mesh sizes {_named(shape)} must be positive or "
            "-1 (meaning 'the remaining devices')"
        )
    free = [i for i, size in enumerate(shape) if size == -1]
    if len(free) > 1:
        raise ValueError(
            "at most one mesh axis may be -1, got "
            f"{[MESH_AXES[i] for i in free]}"
        )
    fixed = math.prod(size for size in shape if size != -1)
    if free:
        if device_count % fixed:
            raise ValueError(
                f"mesh sizes {_named(shape)} do not divide "
                f"the {device_count} devices; choose sizes whose product "
                f"divides {device_count}"
            )
        shape[free[0]] = device_count // fixed
    if math.prod(shape) != device_count:
        raise ValueError(
            f"mesh {_named(shape)} needs {math.prod(shape)} "
            f"devices but {device_count} are available; make the product "
            "of the mesh sizes equal the device count (or use -1)"
        )
    return tuple(shape)


def make_mesh(
    sizes: Mapping[str, int],
    devices: Sequence[jax.Device] | None = None,
) -> Mesh:
    """A ("data", "fsdp", "tensor") mesh over `devices` (default: all)."""
    devices = list(jax.devices() if devices is None else devices)
    shape = resolve_mesh_shape(sizes, len(devices))
    # Auto axes: the step states in/out shardings and XLA's partitioner
    # propagates them (jit's default mesh type is Explicit sharding).
    axis_types = (AxisType.Auto,) * len(MESH_AXES)
    if len(devices) == jax.device_count():
        # make_mesh orders devices along the physical (ICI) topology.
        return jax.make_mesh(
            shape, MESH_AXES, axis_types=axis_types, devices=devices
        )
    return Mesh(
        np.asarray(devices).reshape(shape), MESH_AXES, axis_types=axis_types
    )


def logical_axes(variable: Any) -> tuple[str | None, ...] | None:
    """The logical axis names a model attached to an nnx.Variable, if any.

    Flax has stored these under several metadata keys across versions; the
    first one present wins.
    """
    metadata = (
        variable.get_metadata() if hasattr(variable, "get_metadata") else {}
    )
    for key in ("out_sharding", "sharding_names", "sharding"):
        names = metadata.get(key)
        if names:
            return tuple(names)
    return None


def logical_to_spec(
    names: Sequence[str | None] | None,
    shape: Sequence[int],
    mesh: Mesh,
    rules: Rules = DEFAULT_RULES,
) -> PartitionSpec:
    """PartitionSpec for an array with logical axis `names`.

    A dimension that a mesh axis does not divide, or whose mesh axis is
    already used by an earlier dimension, stays replicated: tiny test models
    and odd vocabularies then still run, at the cost of memory, and the
    fallback is logged at debug level so it can be found.
    """
    if names is None:
        return PartitionSpec()
    table = dict(rules)
    used: set[str] = set()
    spec: list[str | tuple[str, ...] | None] = []
    for dim, name in zip(shape, names, strict=True):
        target = table.get(name) if name is not None else None
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        axes = tuple(a for a in axes if mesh.shape[a] > 1 and a not in used)
        size = math.prod(mesh.shape[a] for a in axes)
        if axes and dim % size:
            logger.debug(
                "axis %r of size %d is not divisible by mesh %s; replicated",
                name,
                dim,
                axes,
            )
            axes = ()
        used.update(axes)
        spec.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*spec)


def state_shardings(
    abstract_state: Any, mesh: Mesh, rules: Rules = DEFAULT_RULES
) -> Any:
    """NamedShardings for a tree of nnx.Variables (or plain arrays)."""
    from flax import nnx

    def one(leaf: Any) -> NamedSharding:
        names = logical_axes(leaf) if isinstance(leaf, nnx.Variable) else None
        value = leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf
        spec = logical_to_spec(names, value.shape, mesh, rules)
        return NamedSharding(mesh, spec)

    return jax.tree.map(
        one, abstract_state, is_leaf=lambda x: isinstance(x, nnx.Variable)
    )


def batch_sharding(mesh: Mesh, rules: Rules = DEFAULT_RULES) -> NamedSharding:
    """Sharding of a [micro_batches, batch, seq] token array."""
    spec = logical_to_spec(
        (None, "batch", "length"),
        (1, mesh.shape["data"] * mesh.shape["fsdp"], 1),
        mesh,
        rules,
    )
    return NamedSharding(mesh, spec)


def global_batch(
    local_batch: Mapping[str, np.ndarray], sharding: NamedSharding
) -> dict[str, jax.Array]:
    """Assemble each host's slice of the batch into global jax.Arrays.

    Every host passes only the rows it loaded (its `process_index` share of
    the global batch, along axis 1); the global shape is the local one with
    axis 1 multiplied by the process count.
    """
    processes = jax.process_count()
    out = {}
    for key, array in local_batch.items():
        shape = list(array.shape)
        shape[1] *= processes
        out[key] = jax.make_array_from_process_local_data(
            sharding, array, tuple(shape)
        )
    return out


def initialize_distributed(
    mode: str = "auto",
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Call jax.distributed.initialize() when the run spans several hosts.

    mode "auto" initialises when a coordinator is given or the environment
    shows a multi-host job (a TPU pod slice, SLURM, Open MPI); on TPU pods
    JAX discovers everything else itself. "always" and "never" force it.
    Must run before anything touches jax.devices().
    """
    if mode not in ("auto", "always", "never"):
        raise ValueError(
            f"distributed.mode must be auto, always or never, got {mode!r}"
        )
    if mode == "never":
        return
    multi_host_env = (
        "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")
        or int(os.environ.get("SLURM_NTASKS", "1")) > 1
        or int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
    )
    if mode == "auto" and not (coordinator_address or multi_host_env):
        return
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )
    logger.info(
        "distributed: process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
