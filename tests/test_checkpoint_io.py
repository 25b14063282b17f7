"""Checkpoint I/O: GGUF and safetensors loading, saving, bad input."""

import json
import os

import gguf
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from bnll_jax import presets
from bnll_jax.models import check_vocab, from_pretrained, save_pretrained
from bnll_jax.tokenizer import load_tokenizer
from tests import tiny_checkpoints


@nnx.jit
def _logits(model, ids):
    return model.logits(model(ids))


@pytest.fixture(scope="module")
def smollm2():
    """SmolLM2-135M from the shipped GGUF, loaded by both sides."""
    path = presets.smollm2_gguf_path()
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path),
        gguf_file=os.path.basename(path),
        dtype=torch.float32,
    ).eval()
    return from_pretrained("smollm2-135m"), hf_model


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    return load_tokenizer("smollm2-135m")


def test_smollm2_gguf_logits_match_transformers(smollm2, smollm2_tokenizer):
    model, hf_model = smollm2
    messages = [
        {
            "role": "user",
            "content": "Natalia sold clips to 48 of her friends in April, "
            "and then she sold half as many clips in May. How many clips "
            "did Natalia sell altogether in April and May? Think step by "
            "step.",
        }
    ]
    ids = smollm2_tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_dict=False
    )
    assert len(ids) >= 64
    ids = np.asarray([ids])

    with torch.no_grad():
        expected = hf_model(torch.tensor(ids)).logits.numpy()
    logits = np.asarray(_logits(model, jnp.asarray(ids)))
    assert np.abs(logits - expected).max() <= 1e-3
    np.testing.assert_array_equal(logits.argmax(-1), expected.argmax(-1))


def test_gguf_config_is_read_from_metadata(smollm2):
    model, hf_model = smollm2
    c, hf = model.config, hf_model.config
    assert (c.vocab_size, c.hidden_size, c.num_layers) == (
        hf.vocab_size,
        hf.hidden_size,
        hf.num_hidden_layers,
    )
    assert (c.num_heads, c.num_kv_heads, c.head_dim) == (9, 3, 64)
    assert c.rope_theta == hf.rope_parameters["rope_theta"] == 100000.0
    assert c.tie_word_embeddings


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    hf_model = tiny_checkpoints.make_hf_model("llama3_untied")
    directory = str(tmp_path_factory.mktemp("tiny_llama"))
    hf_model.save_pretrained(directory)
    return hf_model, from_pretrained(directory)


def _ids(shape, vocab=tiny_checkpoints.VOCAB, seed=0):
    return np.random.RandomState(seed).randint(0, vocab, shape)


@pytest.mark.parametrize("name", sorted(tiny_checkpoints.CONFIGS))
def test_saved_checkpoint_loads_in_transformers_with_same_logits(
    name, tmp_path
):
    hf_model = tiny_checkpoints.make_hf_model(name, seed=1)
    hf_model.save_pretrained(str(tmp_path / "source"))
    model = from_pretrained(str(tmp_path / "source"))
    save_pretrained(model, str(tmp_path))
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(
        str(tmp_path), dtype=torch.float32
    ).eval()
    ids = _ids((2, 16))

    with torch.no_grad():
        expected = reloaded(torch.tensor(ids)).logits.numpy()
    logits = np.asarray(_logits(model, jnp.asarray(ids)))
    assert np.abs(logits - expected).max() <= 1e-5
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["tie_word_embeddings"] == hf_model.config.tie_word_embeddings
    assert config["model_type"] == hf_model.config.model_type


def test_sharded_save_round_trips_through_from_pretrained(tiny_llama, tmp_path):
    _, model = tiny_llama
    save_pretrained(model, str(tmp_path), max_shard_bytes=64 * 1024)
    assert (tmp_path / "model.safetensors.index.json").exists()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1

    reloaded = from_pretrained(str(tmp_path))
    ids = jnp.asarray(_ids((1, 8)))
    np.testing.assert_array_equal(_logits(reloaded, ids), _logits(model, ids))


def test_save_with_tokenizer_writes_a_loadable_tokenizer(
    smollm2, smollm2_tokenizer, tmp_path
):
    model, _ = smollm2
    save_pretrained(model, str(tmp_path), smollm2_tokenizer, dtype=jnp.bfloat16)
    tokenizer = load_tokenizer(str(tmp_path))
    text = "Solve 2 + 2."
    assert tokenizer(text)["input_ids"] == smollm2_tokenizer(text)["input_ids"]
    assert tokenizer.chat_template == smollm2_tokenizer.chat_template
    reloaded = from_pretrained(str(tmp_path))
    assert reloaded.config.vocab_size == len(tokenizer)
    assert reloaded.embed.value.dtype == jnp.float32  # loaded as asked


def test_tokenizer_vocabulary_mismatch_names_the_field(
    tiny_llama, smollm2_tokenizer, tmp_path
):
    _, model = tiny_llama
    with pytest.raises(ValueError, match="vocab_size"):
        check_vocab(smollm2_tokenizer, model.config)
    with pytest.raises(ValueError, match="vocab_size"):
        save_pretrained(model, str(tmp_path), smollm2_tokenizer)


@pytest.fixture
def sharded_dir(tiny_llama, tmp_path):
    _, model = tiny_llama
    save_pretrained(model, str(tmp_path), max_shard_bytes=64 * 1024)
    return tmp_path


def test_missing_shard_names_the_file(sharded_dir):
    shard = sorted(sharded_dir.glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(ValueError, match=shard.name):
        from_pretrained(str(sharded_dir))


def test_corrupt_shard_names_the_file(sharded_dir):
    shard = sorted(sharded_dir.glob("model-*.safetensors"))[0]
    shard.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match=shard.name):
        from_pretrained(str(sharded_dir))


def test_truncated_shard_names_the_file(sharded_dir):
    shard = sorted(sharded_dir.glob("model-*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[:-1000])
    with pytest.raises(ValueError, match=shard.name):
        from_pretrained(str(sharded_dir))


def test_unknown_architecture_names_the_field(sharded_dir):
    config_path = sharded_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["model_type"] = "gpt_neox"
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="model_type.*gpt_neox"):
        from_pretrained(str(sharded_dir))


def test_config_checkpoint_mismatch_names_the_tensor(sharded_dir):
    config_path = sharded_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["intermediate_size"] = 128
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"mlp\.\w+_proj\.weight.*implies"):
        from_pretrained(str(sharded_dir))


def test_directory_without_weights_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        from_pretrained(str(tmp_path))


def test_gguf_with_unsupported_architecture_names_the_field(tmp_path):
    path = str(tmp_path / "model.gguf")
    writer = gguf.GGUFWriter(path, "gpt2")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match="general.architecture.*gpt2"):
        from_pretrained(path)


def test_not_a_gguf_file_names_the_file(tmp_path):
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"not a gguf file at all")
    with pytest.raises(ValueError, match="broken.gguf"):
        from_pretrained(str(path))
