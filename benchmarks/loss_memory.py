"""Memory and time of the fused objective loss against full logits.

Compiles value-and-grad (w.r.t. hidden states and head) of the plain path
(full logits, log-softmax, gather) and of the fused path at Qwen2.5-1.5B
shapes and prints XLA's temporary memory for each, then times both at a
smaller shape that runs on a laptop CPU. Nothing at the large shape is
executed: XLA's memory analysis needs only the compiled program.

    python benchmarks/loss_memory.py [--tokens 8192 --hidden 1536 ...]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from bnll_jax import loss, objectives


def _value_and_grad(path: str, objective, vocab_block: int):
    def mean_loss(hidden, head, targets, mask):
        if path == "plain":
            logits = jnp.einsum("nd,vd->nv", hidden, head)
            out = loss.sequence_loss(logits, targets, mask, objective)
        else:
            out = loss.fused_sequence_loss(
                hidden,
                head,
                targets,
                mask,
                objective,
                vocab_block=vocab_block,
            )
        return out.loss_sum / jnp.maximum(out.token_count, 1.0)

    return jax.jit(jax.value_and_grad(mean_loss, argnums=(0, 1)))


def _inputs(tokens, hidden, vocab, dtype, concrete):
    shapes = (
        ((tokens, hidden), dtype),
        ((vocab, hidden), dtype),
        ((tokens,), jnp.int32),
        ((tokens,), jnp.float32),
    )
    if not concrete:
        return [jax.ShapeDtypeStruct(s, d) for s, d in shapes]
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    return [
        jax.random.normal(keys[0], (tokens, hidden), dtype),
        (0.02 * jax.random.normal(keys[1], (vocab, hidden))).astype(dtype),
        jax.random.randint(keys[2], (tokens,), 0, vocab),
        jnp.ones((tokens,), jnp.float32),
    ]


def temp_bytes(path, objective, shape, dtype, vocab_block) -> int:
    compiled = (
        _value_and_grad(path, objective, vocab_block)
        .lower(*_inputs(*shape, dtype, concrete=False))
        .compile()
    )
    # peak_memory_in_bytes leaves temporaries out on CPU; temp is the
    # number that bounds what the loss adds on top of its inputs/outputs.
    return compiled.memory_analysis().temp_size_in_bytes


def _upcast_floor(shape) -> int:
    tokens, hidden, vocab = shape
    block = loss.pick_vocab_block(vocab, 1024)

    def bare_scan(hidden_nd, head):
        def body(total, head_bd):
            z = jnp.einsum(
                "nd,bd->nb",
                hidden_nd,
                head_bd,
                preferred_element_type=jnp.float32,
            )
            return total + jnp.sum(z, axis=1), None

        blocks = head.reshape(vocab // block, block, hidden)
        return jax.lax.scan(body, jnp.zeros(tokens), blocks)[0]

    args = _inputs(tokens, hidden, vocab, jnp.bfloat16, concrete=False)
    compiled = jax.jit(bare_scan).lower(*args[:2]).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def seconds_per_call(path, objective, shape, vocab_block, repeats) -> float:
    fn = _value_and_grad(path, objective, vocab_block)
    args = _inputs(*shape, jnp.float32, concrete=True)
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--hidden", type=int, default=1536)
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--vocab-block", type=int, default=1024)
    parser.add_argument("--objective", default="p")
    parser.add_argument(
        "--time-shape",
        default="2048,512,32768",
        help="tokens,hidden,vocab for the timing run",
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    objective = objectives.parse(args.objective)
    shape = (args.tokens, args.hidden, args.vocab)

    print(f"objective {objective}, tokens x hidden x vocab = {shape}")
    print(f"{'dtype':<9}{'plain MiB':>12}{'fused MiB':>12}{'ratio':>9}")
    for dtype in (jnp.float32, jnp.bfloat16):
        plain, fused = (
            temp_bytes(p, objective, shape, dtype, args.vocab_block)
            for p in ("plain", "fused")
        )
        print(
            f"{jnp.dtype(dtype).name:<9}{plain / 2**20:>12.1f}"
            f"{fused / 2**20:>12.1f}{fused / plain:>9.4f}"
        )

    # XLA:CPU has no bf16 matmul: it upcasts a bf16 head to fp32 once,
    # outside any loop. Measure that floor (a bare scan over the head) so
    # the bf16 row can be read net of it; TPUs and GPUs multiply bf16
    # natively and pay no such copy.
    floor = _upcast_floor(shape)
    print(
        f"XLA:{jax.default_backend().upper()} bf16 upcast floor "
        f"(bare scan over the head): {floor / 2**20:.1f} MiB"
    )

    time_shape = tuple(int(x) for x in args.time_shape.split(","))
    plain_s, fused_s = (
        seconds_per_call(
            p, objective, time_shape, args.vocab_block, args.repeats
        )
        for p in ("plain", "fused")
    )
    print(
        f"time at {time_shape} fp32: plain {plain_s * 1e3:.1f} ms, "
        f"fused {fused_s * 1e3:.1f} ms, ratio {fused_s / plain_s:.2f}"
    )


if __name__ == "__main__":
    main()
