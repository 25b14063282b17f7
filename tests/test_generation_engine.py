"""The KV-cache engine against full recomputation, on a tiny model."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx
from jax.sharding import AxisType, NamedSharding

from bnll_jax.generation import engine
from bnll_jax.generation.sampling import SamplingConfig
from bnll_jax.models import ModelConfig, Transformer

NEW = 6
PROMPTS = [[1, 2, 3, 4, 5], [7, 8], list(range(9, 27)), [3, 3, 3]]


@pytest.fixture(scope="module")
def model():
    config = ModelConfig(
        vocab_size=64,
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=8,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    # Built under jit: eager initialisation compiles op by op.
    return nnx.jit(lambda: Transformer(config, rngs=nnx.Rngs(0)))()


@pytest.fixture(scope="module")
def greedy(model):
    return engine.generate(
        model, PROMPTS, SamplingConfig(max_new_tokens=NEW), batch_size=2
    )


def test_cached_greedy_equals_full_recomputation(model, greedy):
    # Without a cache, greedy decoding means: at every position after the
    # prompt, the next token is the argmax of a full forward pass over
    # prompt + completion. One right-padded batch checks all of them.
    rows = [p + s[0][:-1] for p, s in zip(PROMPTS, greedy.tokens, strict=True)]
    width = max(map(len, rows))
    ids = jnp.array([r + [0] * (width - len(r)) for r in rows])
    segments = jnp.array([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    forward = nnx.jit(lambda m, x, s: m.logits(m(x, segment_ids=s)))
    argmax_bt = jnp.argmax(forward(model, ids, segments), axis=-1)
    for row, (prompt, samples) in enumerate(
        zip(PROMPTS, greedy.tokens, strict=True)
    ):
        start = len(prompt) - 1
        assert argmax_bt[row, start : start + NEW].tolist() == samples[0]
    assert greedy.generated_tokens == NEW * len(PROMPTS)


def test_output_does_not_depend_on_left_padding(model, greedy):
    # Alone, prompt 1 needs no padding; in `greedy` it shared a batch
    # with an 18-token prompt.
    alone = engine.generate(
        model, [PROMPTS[1]], SamplingConfig(max_new_tokens=NEW), batch_size=2
    )
    assert alone.tokens[0] == greedy.tokens[1]


def test_stop_token_ends_a_completion(model, greedy):
    expected = greedy.tokens[0][0]
    stop = expected[2]
    cut = expected.index(stop) + 1
    result = engine.generate(
        model,
        [PROMPTS[0]],
        SamplingConfig(max_new_tokens=NEW),
        stop_ids=(stop,),
        batch_size=2,
    )
    assert result.tokens[0][0] == expected[:cut]
    assert result.finished == [[True]]


def test_prompts_in_one_bucket_share_one_compilation(model, greedy):
    config = SamplingConfig(max_new_tokens=NEW)
    graphdef, _ = nnx.split(model)
    programs = engine._compiled(graphdef, config, 0, None, None)
    # `greedy` compiled two-row programs for the 16- and 32-token buckets;
    # more lengths in them and other stop tokens reuse those programs.
    compiled_before = len(programs.executables)
    for prompt in ([1, 2, 3], list(range(1, 12)), [4] * 16, [5] * 20):
        result = engine.generate(
            model, [prompt, [1, 2]], config, stop_ids=(9,), batch_size=2
        )
        assert result.compile_seconds == 0.0
    assert len(programs.executables) == compiled_before
    assert engine.bucket_length(16) == 16
    assert engine.bucket_length(17) == 32


def test_sampling_is_reproducible_and_samples_differ(model):
    config = SamplingConfig(
        temperature=1.0, max_new_tokens=NEW, num_samples=4, seed=3
    )
    first = engine.generate(model, PROMPTS[:2], config, batch_size=2)
    # A different batching of the same prompts draws the same tokens.
    again = engine.generate(model, PROMPTS[:2], config, batch_size=1)
    assert first.tokens == again.tokens
    for samples in first.tokens:
        assert len({tuple(s) for s in samples}) > 1
    other_seed = engine.generate(
        model,
        PROMPTS[:2],
        SamplingConfig(**{**vars(config), "seed": 4}),
        batch_size=2,
    )
    assert other_seed.tokens != first.tokens


def test_generation_sharded_over_a_mesh_matches(model, greedy):
    mesh = jax.make_mesh(
        (2, 4), ("data", "model"), axis_types=(AxisType.Auto,) * 2
    )
    rules = (
        ("vocab", "model"),
        ("heads", "model"),
        ("kv_heads", None),
        ("mlp", "model"),
        ("embed", None),
        ("head_dim", None),
    )
    graphdef, state = nnx.split(model)
    with nnx.logical_axis_rules(rules):
        specs = nnx.get_partition_spec(state)
    state = jax.tree.map(
        lambda x, spec: jax.device_put(x, NamedSharding(mesh, spec)),
        state,
        specs,
    )
    sharded = nnx.merge(graphdef, state)
    result = engine.generate(
        sharded,
        PROMPTS,
        SamplingConfig(max_new_tokens=NEW),
        batch_size=2,
        mesh=mesh,
    )
    assert result.tokens == greedy.tokens


def test_empty_prompt_is_rejected(model):
    with pytest.raises(ValueError, match="empty"):
        engine.generate(model, [[1], []], SamplingConfig(max_new_tokens=2))
