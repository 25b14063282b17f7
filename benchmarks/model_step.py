"""Forward+backward throughput of the NNX port, with and without remat.

Loads SmolLM2-135M from the shipped GGUF and times value-and-grad of the
mean token NLL (through full logits; the fused loss lives elsewhere) for
the settings below, printing compile time, steady-state tokens/s, the
ratio to the fp32 baseline, and the activations saved for the backward pass
(the leaves of the VJP closure minus the parameters), which is what
rematerialisation cuts. XLA:CPU's temp-size estimate is not printed:
it barely moves with remat on CPU, whose scheduler is not memory-aware.

    PYTHONPATH=$PWD python benchmarks/model_step.py --batch 4 --seq 256
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from bnll_jax.models import from_pretrained


def _loss(model, ids_bt):
    logits_btv = model.logits(model(ids_bt[:, :-1]))
    logp_btv = jax.nn.log_softmax(logits_btv, axis=-1)
    target_bt = ids_bt[:, 1:]
    return -jnp.take_along_axis(logp_btv, target_bt[..., None], -1).mean()


def _saved_activation_bytes(model, ids) -> int:
    graphdef, state = nnx.split(model)

    def loss(s):
        return _loss(nnx.merge(graphdef, s), ids)

    vjp_fn = jax.eval_shape(lambda s: jax.vjp(loss, s)[1], state)

    def nbytes(tree):
        return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))

    # Parameters are among the residuals (matmul backward needs them).
    return nbytes(vjp_fn) - nbytes(state)


def _measure(model, ids, steps):
    step = nnx.jit(nnx.value_and_grad(_loss))
    start = time.perf_counter()
    jax.block_until_ready(step(model, ids))
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        jax.block_until_ready(step(model, ids))
    per_step = (time.perf_counter() - start) / steps
    return compile_s, per_step, _saved_activation_bytes(model, ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()

    ids = jnp.asarray(
        np.random.RandomState(0).randint(0, 49152, (args.batch, args.seq))
    )
    tokens = args.batch * (args.seq - 1)
    settings = {
        "fp32": {},
        "fp32 + remat": {"remat": True},
        "bf16 compute": {"compute_dtype": jnp.bfloat16},
    }
    print(f"backend {jax.default_backend()}, batch {args.batch} x {args.seq}")
    baseline = None
    for name, kwargs in settings.items():
        model = from_pretrained("smollm2-135m", **kwargs)
        compile_s, per_step, saved = _measure(model, ids, args.steps)
        rate = tokens / per_step
        baseline = baseline or rate
        print(
            f"{name:14s} compile {compile_s:6.1f} s  step {per_step:6.2f} s"
            f"  {rate:7.1f} tokens/s  x{rate / baseline:4.2f}"
            f"  saved activations {saved / 2**20:7.1f} MiB"
        )


if __name__ == "__main__":
    main()
