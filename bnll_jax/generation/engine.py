"""Batched generation with a KV cache: prefill, then a jitted decode loop.

One compiled program per (batch rows, prompt bucket, sampling settings):

1. prefill: the left-padded prompts [B, P] run through the model once,
   filling cache slots [0, P) and giving the logits of the next token;
2. the cache is repeated n times along the batch (n samples per prompt
   share one prefill);
3. a `lax.while_loop` appends one token per step until every row has
   emitted a stop token or `max_new_tokens` tokens.

Prompts are left-padded so that every row writes its next token into the
same cache slot; padding has segment id 0 and real tokens 1, so attention
never looks at padding, and positions count real tokens only, making a
prompt's output independent of how much padding its batch needs. Prompt
lengths are rounded up to a power of two (a "bucket") and batches are
padded to a fixed number of rows, so the number of compilations is the
number of distinct buckets, not of prompt lengths.

Every row draws from its own key, fold_in(fold_in(seed, prompt), sample),
folded again with the step: a fixed seed reproduces the same completions
whatever the batch size or order, and the n samples of a prompt are
distinct draws.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from bnll_jax.generation.sampling import SamplingConfig, next_token
from bnll_jax.models import KVCache

logger = logging.getLogger(__name__)

MIN_BUCKET = 16


@dataclasses.dataclass(frozen=True)
class Generation:
    """Completions of one call: token ids per prompt and sample.

    `tokens[i][j]` are the ids of sample j of prompt i, the stop token
    included when one was emitted (`finished[i][j]`).
    """

    tokens: list[list[list[int]]]
    finished: list[list[bool]]
    generated_tokens: int
    seconds: float
    compile_seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of decoding, compilation excluded."""
        decoding = self.seconds - self.compile_seconds
        return self.generated_tokens / max(decoding, 1e-9)


def bucket_length(length: int, minimum: int = MIN_BUCKET) -> int:
    """The smallest power of two >= length (and >= minimum)."""
    return max(minimum, 1 << max(length - 1, 0).bit_length())


def left_pad(
    prompts: Sequence[Sequence[int]], length: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and segment ids [B, length], prompts flush right."""
    tokens = np.full((len(prompts), length), pad_id, np.int32)
    segments = np.zeros((len(prompts), length), np.int32)
    for row, prompt in enumerate(prompts):
        if len(prompt):
            tokens[row, length - len(prompt) :] = prompt
            segments[row, length - len(prompt) :] = 1
    return tokens, segments


def _repeat_rows(cache, n: int):
    """Repeats every batch row of a KVCache n times (row i -> i*n..)."""
    if n == 1:
        return cache
    return cache.replace(
        k_lbskh=jnp.repeat(cache.k_lbskh, n, axis=1),
        v_lbskh=jnp.repeat(cache.v_lbskh, n, axis=1),
        segment_ids_bs=jnp.repeat(cache.segment_ids_bs, n, axis=0),
    )


def _decode_loop(
    model,
    tokens_bp: jax.Array,
    segments_bp: jax.Array,
    row_keys: jax.Array,
    stops: jax.Array,
    *,
    config: SamplingConfig,
    pad_id: int,
    mesh: Mesh | None,
    batch_spec: PartitionSpec | None,
):
    """Prefill and decode: tokens [B*n, max_new] and their counts [B*n]."""
    b, p = tokens_bp.shape
    n, max_new = config.num_samples, config.max_new_tokens

    def constrain(x, spec):
        if spec is None:
            return x
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))

    # Positions count real tokens: left padding shifts no position.
    positions_bp = jnp.maximum(jnp.cumsum(segments_bp, axis=1) - 1, 0)
    cache = KVCache.init(model.config, b, p + max_new)
    hidden_bpd, cache = model.decode(
        tokens_bp, positions_bp, cache, segments_bp
    )
    logits_bv = model.logits(hidden_bpd[:, -1:])[:, 0]

    cache = _repeat_rows(cache, n)
    kv_spec = None if batch_spec is None else PartitionSpec(None, *batch_spec)
    cache = cache.replace(
        k_lbskh=constrain(cache.k_lbskh, kv_spec),
        v_lbskh=constrain(cache.v_lbskh, kv_spec),
    )
    logits_bv = constrain(jnp.repeat(logits_bv, n, axis=0), batch_spec)
    next_position_b = jnp.repeat(segments_bp.sum(axis=1), n)

    def sample(logits_bv, step):
        step_keys = jax.vmap(jax.random.fold_in, (0, None))(row_keys, step)
        return next_token(logits_bv, step_keys, config)

    def cond(carry):
        step, _, _, done_b, _, _ = carry
        return (step < max_new) & ~jnp.all(done_b)

    def body(carry):
        step, token_b, cache, done_b, out_bt, count_b = carry
        out_bt = out_bt.at[:, step].set(jnp.where(done_b, pad_id, token_b))
        count_b = count_b + (~done_b).astype(jnp.int32)
        done_b = done_b | jnp.isin(token_b, stops)
        positions_b1 = (next_position_b + step)[:, None]
        hidden_b1d, cache = model.decode(token_b[:, None], positions_b1, cache)
        token_b = sample(model.logits(hidden_b1d)[:, 0], step + 1)
        return step + 1, token_b, cache, done_b, out_bt, count_b

    rows = b * n
    carry = (
        jnp.zeros((), jnp.int32),
        sample(logits_bv, 0),
        cache,
        jnp.zeros((rows,), bool),
        jnp.full((rows, max_new), pad_id, jnp.int32),
        jnp.zeros((rows,), jnp.int32),
    )
    _, _, _, _, out_bt, count_b = jax.lax.while_loop(cond, body, carry)
    return out_bt, count_b


class _Programs:
    """Compiled prefill + decode programs of one model and setting.

    Compiled ahead of time per input shape (batch rows, prompt bucket), so
    compilation is timed apart from decoding.
    """

    def __init__(self, run):
        self._jitted = jax.jit(run)
        self.executables: dict = {}

    def get(self, *args):
        """(executable, seconds spent compiling it now: 0 when cached)."""
        # Parameters placed differently need a program of their own.
        placement = tuple(
            getattr(x, "sharding", None) for x in jax.tree.leaves(args[0])
        )
        key = (placement, *((a.shape, str(a.dtype)) for a in args[1:]))
        if key in self.executables:
            return self.executables[key], 0.0
        start = time.perf_counter()
        executable = self._jitted.lower(*args).compile()
        self.executables[key] = executable
        return executable, time.perf_counter() - start


@functools.lru_cache(maxsize=32)
def _compiled(graphdef, config, pad_id, mesh, batch_spec) -> _Programs:
    """Programs of the prefill + decode loop; `config.seed` must be 0.

    The seed enters through the row keys, the stop ids as an array, so
    neither triggers a recompilation.
    """

    def run(state, tokens_bp, segments_bp, row_keys, stops):
        model = nnx.merge(graphdef, state)
        return _decode_loop(
            model,
            tokens_bp,
            segments_bp,
            row_keys,
            stops,
            config=config,
            pad_id=pad_id,
            mesh=mesh,
            batch_spec=batch_spec,
        )

    return _Programs(run)


@functools.partial(jax.jit, static_argnums=2)
def _row_keys(seed: jax.Array, prompt_ids: jax.Array, n: int) -> jax.Array:
    """Key of sample j of prompt i: fold_in(fold_in(key(seed), i), j)."""
    base = jax.random.key(seed)
    per_prompt = jax.vmap(jax.random.fold_in, (None, 0))(base, prompt_ids)
    samples = jnp.arange(n, dtype=jnp.uint32)
    return jax.vmap(
        lambda key: jax.vmap(jax.random.fold_in, (None, 0))(key, samples)
    )(per_prompt).reshape(-1)


def generate(
    model,
    prompts: Sequence[Sequence[int]],
    config: SamplingConfig,
    *,
    stop_ids: Sequence[int] = (),
    pad_id: int = 0,
    batch_size: int = 8,
    mesh: Mesh | None = None,
    data_axes: tuple[str, ...] = ("data",),
    progress: bool = False,
) -> Generation:
    """Generates `config.num_samples` completions for every prompt.

    Args:
      model: a `bnll_jax.models.Transformer` (anything with its `decode`,
        `logits` and `config`).
      prompts: token ids per prompt, special tokens included.
      stop_ids: token ids that end a completion (kept in its tokens).
      batch_size: prompts per compiled call; each expands to num_samples
        rows, so a call decodes batch_size * num_samples rows.
      mesh: when given, rows are sharded over `data_axes` of the mesh;
        parameters keep whatever sharding the model already has, so a
        model too large for one device is loaded sharded and used as is.
      progress: show a progress bar with the running tokens/s.
    """
    if not prompts:
        raise ValueError("no prompts to generate from")
    empty = [i for i, p in enumerate(prompts) if len(p) == 0]
    if empty:
        raise ValueError(
            f"prompts {empty[:5]} are empty; every prompt needs a token"
        )
    batch_spec, shards = None, 1
    if mesh is not None:
        if any(t == AxisType.Explicit for t in mesh.axis_types):
            raise ValueError(
                "generation needs a mesh with Auto axis types; build it "
                "with axis_types=(jax.sharding.AxisType.Auto,) * ndim"
            )
        axes = tuple(a for a in data_axes if a in mesh.axis_names)
        batch_spec = PartitionSpec(axes or None)
        shards = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
        if batch_size % shards:
            raise ValueError(
                f"batch_size {batch_size} must be a multiple of the "
                f"{shards} data shards of the mesh"
            )
    # Fewer prompts than a batch: shrink the batch (to a multiple of the
    # data shards) rather than decode rows of padding.
    batch_size = min(batch_size, -(-len(prompts) // shards) * shards)

    graphdef, state = nnx.split(model)
    programs = _compiled(
        graphdef, dataclasses.replace(config, seed=0), pad_id, mesh, batch_spec
    )
    # -1 matches no token: a call without stop ids decodes to the end.
    stops = jnp.asarray(tuple(stop_ids) or (-1,), jnp.int32)
    max_positions = model.config.max_position_embeddings

    # Longest first, so each batch holds similar lengths (less padding).
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    tokens: list = [None] * len(prompts)
    finished: list = [None] * len(prompts)
    generated = 0
    compile_seconds = 0.0
    bar = _progress_bar(len(prompts) * config.num_samples, progress)
    start = time.perf_counter()
    for first in range(0, len(order), batch_size):
        chunk = order[first : first + batch_size]
        length = bucket_length(max(len(prompts[i]) for i in chunk))
        if length + config.max_new_tokens > max_positions:
            logger.warning(
                "prompt bucket %d + %d new tokens exceeds the model's %d "
                "positions",
                length,
                config.max_new_tokens,
                max_positions,
            )
        # Pad the batch with copies of its first prompt: fixed row count,
        # one compilation, and the copies' outputs are dropped.
        rows = [prompts[i] for i in chunk]
        rows += [rows[0]] * (batch_size - len(rows))
        ids = np.array(chunk + [chunk[0]] * (batch_size - len(chunk)))
        tokens_bp, segments_bp = left_pad(rows, length, pad_id)
        keys = _row_keys(config.seed, ids.astype(np.uint32), config.num_samples)
        inputs = (jnp.asarray(tokens_bp), jnp.asarray(segments_bp), keys)
        if batch_spec is not None:
            sharding = NamedSharding(mesh, batch_spec)
            inputs = jax.device_put(inputs, sharding)
        executable, compiling = programs.get(state, *inputs, stops)
        compile_seconds += compiling
        out_bt, count_b = jax.device_get(executable(state, *inputs, stops))

        for row, prompt_index in enumerate(chunk):
            samples = range(
                row * config.num_samples, (row + 1) * config.num_samples
            )
            tokens[prompt_index] = [
                out_bt[r, : count_b[r]].tolist() for r in samples
            ]
            finished[prompt_index] = [
                bool(count_b[r]) and int(out_bt[r, count_b[r] - 1]) in stop_ids
                for r in samples
            ]
            generated += int(count_b[list(samples)].sum())
        if bar is not None:
            bar.update(len(chunk) * config.num_samples)
            elapsed = time.perf_counter() - start - compile_seconds
            bar.set_postfix(tok_s=f"{generated / max(elapsed, 1e-9):.1f}")
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    result = Generation(tokens, finished, generated, seconds, compile_seconds)
    logger.info(
        "generated %d tokens in %.1f s, of which %.1f s compiling "
        "(%.1f tokens/s while decoding)",
        generated,
        seconds,
        compile_seconds,
        result.tokens_per_second,
    )
    return result


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="generating", unit="sample")
