"""Decode throughput of the KV-cache engine against transformers.

Greedy decoding of SmolLM2-135M (fp32) on the same left-padded chat
prompts: `bnll_jax.generation.generate` (one jitted prefill + while-loop
program, timed after a warm-up call that compiles it) against
`transformers` `generate` (PyTorch, KV cache), and
against decoding without a cache (the full sequence re-run every step, as
`generate` would do without the cache seam). Prints tokens/s and ratios.

    python benchmarks/generation_throughput.py [--batch 8] [--new 64]
        [--torch-threads 1]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUESTIONS = [
    "What is 2+2?",
    "Name a primary color.",
    "Write a haiku about the sea.",
    "What is the capital of France?",
    "Explain photosynthesis in one sentence.",
    "List three prime numbers.",
    "Who wrote Hamlet?",
    "Give me a synonym for happy.",
]


def ours(model, prompts, new_tokens, batch):
    from bnll_jax.generation import SamplingConfig, generate

    config = SamplingConfig(max_new_tokens=new_tokens)
    generate(model, prompts, config, batch_size=batch)  # compile
    start = time.perf_counter()
    result = generate(model, prompts, config, batch_size=batch)
    return result.generated_tokens, time.perf_counter() - start


def uncached(model, prompts, new_tokens):
    """Greedy decoding re-running the whole (padded) sequence each step."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from bnll_jax.generation.engine import left_pad

    graphdef, state = nnx.split(model)
    width = max(map(len, prompts)) + new_tokens

    @jax.jit
    def step(state, tokens_bt, segments_bt, length):
        m = nnx.merge(graphdef, state)
        positions = jnp.maximum(jnp.cumsum(segments_bt, 1) - 1, 0)
        hidden = m(tokens_bt, positions=positions, segment_ids=segments_bt)
        last = jax.lax.dynamic_slice_in_dim(hidden, length - 1, 1, axis=1)
        return jnp.argmax(m.logits(last)[:, 0], -1).astype(jnp.int32)

    def run():
        tokens, segments = left_pad(prompts, max(map(len, prompts)), 0)
        pad = width - tokens.shape[1]
        tokens = jnp.pad(jnp.asarray(tokens), ((0, 0), (0, pad)))
        segments = jnp.pad(jnp.asarray(segments), ((0, 0), (0, pad)))
        length = max(map(len, prompts))
        for _ in range(new_tokens):
            nxt = step(state, tokens, segments, length)
            tokens = tokens.at[:, length].set(nxt)
            segments = segments.at[:, length].set(1)
            length += 1
        return jax.block_until_ready(tokens)

    run()  # compile
    start = time.perf_counter()
    run()
    return len(prompts) * new_tokens, time.perf_counter() - start


def transformers_generate(prompts_text, tokenizer, new_tokens, threads):
    import torch
    from transformers import AutoModelForCausalLM

    from bnll_jax import presets

    if threads:
        torch.set_num_threads(threads)

    source = presets.resolve("smollm2-135m")
    model = AutoModelForCausalLM.from_pretrained(
        source.path, gguf_file=source.gguf_file, dtype=torch.float32
    )
    tokenizer.padding_side = "left"
    batch = tokenizer(
        prompts_text,
        add_special_tokens=False,
        padding=True,
        return_tensors="pt",
    )
    kwargs = dict(
        do_sample=False,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.no_grad():
        model.generate(**batch, **kwargs)  # warm-up
        start = time.perf_counter()
        out = model.generate(**batch, **kwargs)
    seconds = time.perf_counter() - start
    generated = (out.shape[1] - batch["input_ids"].shape[1]) * len(prompts_text)
    return generated, seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="torch intra-op threads (0: torch's default); 1 avoids "
        "OpenMP spin-waiting on a busy shared machine",
    )
    args = parser.parse_args()

    from bnll_jax.models import from_pretrained
    from bnll_jax.tokenizer import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m")
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for q in QUESTIONS[: args.batch]
    ]
    prompts = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
    model = from_pretrained("smollm2-135m")

    # No stop tokens: every row decodes exactly --new tokens.
    rows = {
        "bnll_jax KV cache": ours(model, prompts, args.new, args.batch),
        "bnll_jax no cache": uncached(model, prompts, args.new),
        "transformers": transformers_generate(
            texts, tokenizer, args.new, args.torch_threads
        ),
    }
    base = rows["bnll_jax KV cache"][0] / rows["bnll_jax KV cache"][1]
    print(f"batch {args.batch}, {args.new} new tokens, greedy, fp32")
    for name, (tokens, seconds) in rows.items():
        rate = tokens / seconds
        print(
            f"{name:<20} {tokens:>6} tokens {seconds:8.2f} s "
            f"{rate:8.1f} tok/s  KV-cache engine is {base / rate:5.2f}x"
        )


if __name__ == "__main__":
    main()
