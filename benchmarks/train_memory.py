"""Per-device memory of the full training step under different meshes.

Compiles the jitted train step (forward, fused objective loss, gradients
accumulated over micro-batches, AdamW update) on simulated CPU devices for
each mesh and prints XLA's memory analysis per device: the state and batch
the step receives (arguments) and its temporaries. Nothing is executed, so
model shapes far larger than the machine's memory can be analysed.

    python benchmarks/train_memory.py [--devices 8 --hidden 1024 ...]

The device count must be set before JAX starts, which is why this script
sets XLA_FLAGS itself.
"""

from __future__ import annotations

import argparse
import os
import sys


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=8)
    parser.add_argument("--mlp", type=int, default=2816)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--micro-batches", type=int, default=2)
    parser.add_argument(
        "--meshes",
        default="data=8;fsdp=8;data=2,fsdp=2,tensor=2;fsdp=4,tensor=2",
        help="';'-separated meshes of 'axis=size' pairs",
    )
    return parser.parse_args()


def main() -> None:
    args = _parse()
    flag = f"--xla_force_host_platform_device_count={args.devices}"
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " " + flag
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

    import jax
    from jax.sharding import NamedSharding

    from bnll_jax.training import config as config_lib
    from bnll_jax.training import loop, state

    gib = 1024**3
    print(
        f"model: vocab {args.vocab}, hidden {args.hidden}, "
        f"{args.layers} layers, mlp {args.mlp}; batch {args.batch} x "
        f"{args.seq_len} in {args.micro_batches} micro-batches; "
        f"{args.devices} devices"
    )
    print(f"{'mesh':32s} {'arguments/dev':>14s} {'temp/dev':>10s}")
    for mesh_spec in args.meshes.split(";"):
        sizes = dict(item.split("=") for item in mesh_spec.split(","))
        overrides = [
            "data.source=synthetic",
            f"data.max_length={args.seq_len}",
            f"data.batch_size={args.batch}",
            f"micro_batches={args.micro_batches}",
            "model.dtype=bfloat16",
            "model.remat=true",
            f"model.tiny.vocab_size={args.vocab}",
            f"model.tiny.hidden_size={args.hidden}",
            f"model.tiny.num_layers={args.layers}",
            f"model.tiny.num_heads={args.heads}",
            f"model.tiny.num_kv_heads={args.kv_heads}",
            f"model.tiny.head_dim={args.hidden // args.heads}",
            f"model.tiny.intermediate_size={args.mlp}",
            *(f"mesh.{axis}={sizes.get(axis, 1)}" for axis in
              ("data", "fsdp", "tensor")),
        ]  # fmt: skip
        config = config_lib.load_config(None, overrides)
        config_lib.validate(config)
        parts = state.abstract_parts(state.tiny_model_config(config.model))
        setup = loop.prepare(config, parts, loop.make_mesh(config), steps=100)
        abstract = state.abstract_state(
            setup.optimizer, setup.abstract_params, setup.shardings
        )
        shape = (args.micro_batches, args.batch // args.micro_batches)
        token = jax.ShapeDtypeStruct(
            (*shape, args.seq_len),
            "int32",
            sharding=NamedSharding(setup.mesh, setup.batch_sharding.spec),
        )
        batch = {
            name: token
            for name in (
                "input_ids", "targets", "loss_mask", "segment_ids",
                "positions",
            )
        }  # fmt: skip
        compiled = setup.step_fn.lower(abstract, batch).compile()
        memory = compiled.memory_analysis()
        print(
            f"{mesh_spec:32s} {memory.argument_size_in_bytes / gib:13.3f}G "
            f"{memory.temp_size_in_bytes / gib:9.3f}G"
        )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
