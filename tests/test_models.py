"""The NNX transformer against transformers (PyTorch, CPU) and itself."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from jax.sharding import AxisType

from bnll_jax.models import (
    KVCache,
    ModelConfig,
    Transformer,
    from_pretrained,
    save_pretrained,
)
from bnll_jax.models import config as config_lib
from bnll_jax.models.transformer import positions_from_segments
from tests import tiny_checkpoints

RULES = (
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
)


_LOADED = {}


def _load(name, tmp_path_factory):
    """(name, HF model, its saved directory, the JAX model loaded from it)."""
    if name not in _LOADED:
        hf_model = tiny_checkpoints.make_hf_model(name)
        directory = str(tmp_path_factory.mktemp(name))
        hf_model.save_pretrained(directory)
        _LOADED[name] = name, hf_model, directory, from_pretrained(directory)
    return _LOADED[name]


@pytest.fixture(scope="module", params=sorted(tiny_checkpoints.CONFIGS))
def tiny(request, tmp_path_factory):
    """Each tiny checkpoint in turn: behaviour that differs by family."""
    return _load(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """One tiny checkpoint: behaviour shared by both families."""
    return _load("llama3_untied", tmp_path_factory)


def _hf_logits(hf_model, ids, mask=None):
    kwargs = {}
    if mask is not None:
        # Positions count real tokens only, as generation with left padding
        # computes them; padding gets position 0.
        position_ids = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
        kwargs = {
            "attention_mask": torch.tensor(mask),
            "position_ids": torch.tensor(position_ids),
        }
    with torch.no_grad():
        return hf_model(torch.tensor(ids), **kwargs).logits.numpy()


@nnx.jit
def _logits(model, ids, segment_ids=None):
    # Jitted so that each test compiles one program instead of dispatching
    # (and compiling) every primitive eagerly.
    return model.logits(model(ids, segment_ids=segment_ids))


def _ids(shape, seed=0):
    return np.random.RandomState(seed).randint(0, tiny_checkpoints.VOCAB, shape)


def test_logits_match_transformers_without_padding(tiny):
    _, hf_model, _, model = tiny
    ids = _ids((2, 48))
    logits = np.asarray(_logits(model, jnp.asarray(ids)))
    np.testing.assert_allclose(logits, _hf_logits(hf_model, ids), atol=1e-4)


@pytest.mark.parametrize("side", ["left", "right"])
def test_logits_match_transformers_with_padding(tiny, side):
    _, hf_model, _, model = tiny
    ids = _ids((2, 24), seed=1)
    mask = np.ones_like(ids)
    if side == "left":
        mask[0, :7] = 0
    else:
        mask[0, -7:] = 0

    logits = np.asarray(_logits(model, jnp.asarray(ids), jnp.asarray(mask)))
    expected = _hf_logits(hf_model, ids, mask)
    real = mask.astype(bool)
    assert np.abs(logits[real] - expected[real]).max() <= 1e-4


def test_packed_segments_match_separate_sequences(tiny):
    _, _, _, model = tiny
    first, second = _ids((1, 9), seed=2), _ids((1, 11), seed=3)
    packed = np.concatenate([first, second, np.zeros((1, 4), int)], axis=1)
    segment_ids = np.array([[1] * 9 + [2] * 11 + [0] * 4])

    logits = _logits(model, jnp.asarray(packed), jnp.asarray(segment_ids))
    alone_first = _logits(model, jnp.asarray(first))
    alone_second = _logits(model, jnp.asarray(second))
    np.testing.assert_allclose(logits[:, :9], alone_first, atol=1e-5)
    np.testing.assert_allclose(logits[:, 9:20], alone_second, atol=1e-5)


def test_positions_restart_in_every_segment():
    segment_ids = jnp.array([[0, 0, 1, 1, 1, 2, 2, 0]])
    np.testing.assert_array_equal(
        positions_from_segments(segment_ids), [[0, 1, 0, 1, 2, 0, 1, 0]]
    )


def test_sharded_loading_matches_unsharded(tiny, tmp_path):
    _, _, directory, model = tiny
    mesh = jax.make_mesh(
        (2, 4), ("fsdp", "tensor"), axis_types=(AxisType.Auto,) * 2
    )
    sharded = from_pretrained(directory, mesh=mesh, rules=RULES)

    kernel = sharded.layers[0].attention.q_kernel.value
    assert kernel.sharding.spec == jax.sharding.PartitionSpec(
        "fsdp", "tensor", None
    )
    # Each device holds only its slice, not a replica.
    shard_shape = kernel.addressable_shards[0].data.shape
    assert shard_shape == (64 // 2, 4 // 4, 16)

    ids = jnp.asarray(_ids((2, 16)))
    expected = _logits(model, ids)
    actual = _logits(sharded, ids)
    np.testing.assert_allclose(actual, expected, atol=1e-5)

    # A sharded model saves like an unsharded one.
    save_pretrained(sharded, str(tmp_path))
    np.testing.assert_array_equal(
        _logits(from_pretrained(str(tmp_path)), ids), expected
    )


def test_kv_cache_decoding_matches_full_forward(llama):
    _, _, _, model = llama
    ids = jnp.asarray(_ids((2, 10), seed=4))
    positions = jnp.broadcast_to(jnp.arange(10), (2, 10))
    expected = _logits(model, ids)
    decode = nnx.jit(lambda m, x, p, c: m.decode(x, p, c))

    cache = KVCache.init(model.config, batch=2, max_len=16)
    hidden, cache = decode(model, ids[:, :7], positions[:, :7], cache)
    steps = [hidden]
    for t in range(7, 10):
        hidden, cache = decode(
            model, ids[:, t : t + 1], positions[:, t : t + 1], cache
        )
        steps.append(hidden)
    actual = model.logits(jnp.concatenate(steps, axis=1))
    np.testing.assert_allclose(actual, expected, atol=1e-5)
    assert int(cache.end_index) == 10


def test_remat_keeps_gradients(llama):
    _, _, directory, model = llama
    remat_model = from_pretrained(directory, remat=True)
    ids = jnp.asarray(_ids((1, 8), seed=5))

    def loss(m):
        return jnp.mean(m.logits(m(ids)) ** 2)

    grads = nnx.jit(nnx.grad(loss))(model)
    remat_grads = nnx.jit(nnx.grad(loss))(remat_model)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
        nnx.to_pure_dict(grads),
        nnx.to_pure_dict(remat_grads),
    )


def test_bf16_compute_keeps_fp32_parameters(llama):
    _, _, directory, model = llama
    mixed = from_pretrained(directory, compute_dtype=jnp.bfloat16)
    ids = jnp.asarray(_ids((1, 12), seed=6))

    hidden = nnx.jit(lambda m, x: m(x))(mixed, ids)
    assert hidden.dtype == jnp.bfloat16
    assert mixed.embed.value.dtype == jnp.float32
    logits = _logits(mixed, ids)
    assert logits.dtype == jnp.float32
    reference = _logits(model, ids)
    # bf16 has 8 mantissa bits: agreement to a few percent of the scale.
    error = jnp.abs(logits - reference).max()
    assert error < 0.05 * jnp.abs(reference).max()


def test_head_weight_is_vocabulary_major_and_tied_to_embedding(tiny):
    _, hf_model, _, model = tiny
    head = model.head_weight()
    assert head.shape == (model.config.vocab_size, model.config.hidden_size)
    np.testing.assert_array_equal(
        head, hf_model.lm_head.weight.detach().numpy()
    )
    tied = hf_model.config.tie_word_embeddings
    assert model.config.tie_word_embeddings == tied
    assert (head is model.embed.value) == tied


def test_num_params_matches_transformers(tiny):
    _, hf_model, _, model = tiny
    assert model.config.num_params() == hf_model.num_parameters()
    params = nnx.state(model, nnx.Param)
    leaves = jax.tree.leaves(params)
    assert sum(x.size for x in leaves) == model.config.num_params()


def test_flops_per_token_counts_matmuls_and_attention(llama):
    _, _, _, model = llama
    c = model.config
    # The untied input embedding is a lookup, not a matmul.
    matmul_params = c.num_params() - c.vocab_size * c.hidden_size
    assert c.flops_per_token(0) == 6 * matmul_params
    attention = 12 * c.num_layers * c.num_heads * c.head_dim * 100
    assert c.flops_per_token(100) - c.flops_per_token(0) == attention


def test_every_parameter_has_logical_axis_names(tiny):
    _, _, _, model = tiny
    known = {"vocab", "embed", "heads", "kv_heads", "head_dim", "mlp"}
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        names = var.get_metadata()["out_sharding"]
        assert len(names) == var.value.ndim, path
        assert set(names) <= known, path


def test_both_rope_config_forms_read_alike():
    common = {
        "model_type": "llama",
        "vocab_size": 8,
        "hidden_size": 8,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 8,
    }
    scaling = {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }
    hub = config_lib.from_hf_config(
        common
        | {
            "rope_theta": 5e5,
            "rope_scaling": scaling | {"rope_type": "llama3"},
        }
    )
    v5 = config_lib.from_hf_config(
        common
        | {
            "rope_parameters": scaling
            | {"rope_type": "llama3", "rope_theta": 5e5},
        }
    )
    assert hub == v5
    assert hub.rope_scaling.factor == 8.0 and hub.rope_theta == 5e5


@pytest.mark.parametrize(
    "override, field",
    [
        ({"model_type": "mistral"}, "model_type"),
        ({"rope_scaling": {"type": "yarn", "factor": 4.0}}, "rope_type"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"use_sliding_window": True}, "use_sliding_window"),
    ],
)
def test_unsupported_config_options_raise_naming_the_field(override, field):
    cfg = {
        "model_type": "qwen2",
        "vocab_size": 8,
        "hidden_size": 8,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 8,
    }
    with pytest.raises(ValueError, match=field):
        config_lib.from_hf_config(cfg | override)


def test_random_init_model_runs_with_segment_ids():
    config = ModelConfig(
        vocab_size=32,
        hidden_size=16,
        num_layers=1,
        num_heads=2,
        num_kv_heads=1,
        head_dim=8,
        intermediate_size=32,
    )
    model = nnx.jit(lambda: Transformer(config, rngs=nnx.Rngs(0)))()
    hidden = nnx.jit(lambda m, x, s: m(x, segment_ids=s))(
        model, jnp.zeros((2, 5), jnp.int32), jnp.ones((2, 5), jnp.int32)
    )
    assert hidden.shape == (2, 5, 16)
    assert np.isfinite(np.asarray(hidden)).all()
    assert dataclasses.is_dataclass(model.config)


def test_remat_saves_only_block_inputs_for_backward():
    # Shapes only: which activations the backward pass keeps is decided
    # at trace time, so no compile is needed.
    def residual_shapes(remat):
        config = ModelConfig(
            vocab_size=32,
            hidden_size=16,
            num_layers=2,
            num_heads=2,
            num_kv_heads=1,
            head_dim=8,
            intermediate_size=48,
            remat=remat,
        )
        model = nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0)))
        graphdef, state = nnx.split(model)
        ids = jnp.zeros((2, 24), jnp.int32)

        def loss(s):
            return nnx.merge(graphdef, s)(ids).sum()

        # The VJP closure's leaves are exactly what the backward keeps.
        vjp_fn = jax.eval_shape(lambda s: jax.vjp(loss, s)[1], state)
        return {tuple(x.shape) for x in jax.tree.leaves(vjp_fn)}

    mlp_activation = (2, 24, 48)
    assert mlp_activation in residual_shapes(remat=False)
    assert mlp_activation not in residual_shapes(remat=True)
