"""Mesh construction and logical-axis rules."""

import jax
import pytest
from jax.sharding import PartitionSpec

from bnll_jax import sharding


def test_minus_one_takes_the_remaining_devices():
    assert sharding.resolve_mesh_shape({"data": 2, "fsdp": -1}, 8) == (2, 4, 1)
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert mesh.devices.size == jax.device_count() == 8


@pytest.mark.parametrize(
    "sizes, message",
    [
        ({"data": 3, "fsdp": -1}, "do not divide the 8 devices"),
        ({"data": -1, "fsdp": -1}, "at most one mesh axis may be -1"),
        ({"data": 2}, "needs 2 devices but 8 are available"),
        ({"pipeline": 2}, "unknown mesh axes"),
        ({"data": 0, "fsdp": -1}, "must be positive or -1"),
    ],
)
def test_bad_mesh_sizes_are_rejected(sizes, message):
    with pytest.raises(ValueError, match=message):
        sharding.resolve_mesh_shape(sizes, 8)


def test_rules_map_logical_axes_and_replicate_what_does_not_divide():
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    spec = sharding.logical_to_spec(("vocab", "embed"), (256, 64), mesh)
    assert spec == PartitionSpec("tensor", "fsdp")
    # 3 heads do not split over tensor=2: that axis stays replicated.
    spec = sharding.logical_to_spec(("heads", "embed"), (3, 64), mesh)
    assert spec == PartitionSpec(None, "fsdp")
    # The batch spans both data-parallel axes.
    batch = sharding.batch_sharding(mesh)
    assert batch.spec == PartitionSpec(None, ("data", "fsdp"), None)
    # A mesh axis is used once per array even if two names map to it.
    spec = sharding.logical_to_spec(("mlp", "heads"), (8, 8), mesh)
    assert spec == PartitionSpec("tensor", None)


def test_global_batch_places_rows_over_the_data_axes():
    import numpy as np

    mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
    local = {"input_ids": np.arange(2 * 8 * 3).reshape(2, 8, 3)}
    batch = sharding.global_batch(local, sharding.batch_sharding(mesh))
    array = batch["input_ids"]
    assert array.shape == (2, 8, 3)
    assert np.array_equal(np.asarray(array), local["input_ids"])
    shard_rows = {s.data.shape[1] for s in array.addressable_shards}
    assert shard_rows == {1}  # 8 rows over 8 data-parallel devices


def test_single_process_run_does_not_initialise_distributed(monkeypatch):
    for name in (
        "TPU_WORKER_HOSTNAMES",
        "SLURM_NTASKS",
        "OMPI_COMM_WORLD_SIZE",
    ):
        monkeypatch.delenv(name, raising=False)
    calls = []
    monkeypatch.setattr(
        jax.distributed, "initialize", lambda **kw: calls.append(kw)
    )
    sharding.initialize_distributed("auto")
    assert calls == []
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setattr(jax, "process_count", lambda: 4)
    sharding.initialize_distributed("auto")
    assert len(calls) == 1
    with pytest.raises(ValueError, match="auto, always or never"):
        sharding.initialize_distributed("sometimes")
