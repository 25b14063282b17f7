"""Training config: YAML + overrides, and errors that name the key."""

import glob
import os

import pytest

from bnll_jax.training import config as config_lib
from bnll_jax.training import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "tiny.yaml")
PAPER_CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*", "*.yaml")))


def test_paper_configs_cover_the_twelve_runs_and_validate():
    names = {
        os.path.relpath(p, os.path.join(ROOT, "configs")) for p in PAPER_CONFIGS
    }
    assert len(names) == 12
    for path in PAPER_CONFIGS:
        config = config_lib.load_config(path, ["objective=p"])
        config_lib.validate(config, device_count=8)
        assert config.data.batch_size == 256
        assert config.optimizer.b2 == 0.95 and config.optimizer.grad_clip == 1.0
        assert config.objective == "p"
        llama8b = config.model.name == "llama-3.1-8b"
        assert config.optimizer.learning_rate == (2e-5 if llama8b else 5e-5)
        figfont = config.data.dataset == "figfont"
        assert config.optimizer.weight_decay == (1e-5 if figfont else 0.01)


def test_overrides_reach_nested_dataclasses():
    config = config_lib.load_config(
        TINY, ["optimizer.learning_rate=2e-5", "mesh.tensor=2", "steps=3"]
    )
    assert config.optimizer.learning_rate == 2e-5
    assert config.mesh.tensor == 2 and config.steps == 3
    assert config.model.tiny.hidden_size == 64  # from the YAML


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["optimizer.lr=1e-4"], "unknown config key 'optimizer.lr'"),
        (["data.batch_size=many"], "config key 'data.batch_size'"),
        (["micro_batches"], "must look like key=value"),
        (["data.dataset=cifar"], "data: dataset='cifar' is not one of"),
    ],
)
def test_bad_keys_and_types_are_errors_naming_the_key(overrides, message):
    with pytest.raises(ValueError, match=message):
        config_lib.load_config(TINY, overrides)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["objective=power:abc"], "objective: "),
        (["mesh.data=3"], "mesh: .* do not divide the 8 devices"),
        (["mesh.fsdp=1", "mesh.tensor=16"], "mesh: .* needs 16 devices"),
        (["micro_batches=3"], "divisible by micro_batches"),
        (["mesh.fsdp=1", "mesh.data=-1", "data.batch_size=4",
          "micro_batches=1"], "divisible by mesh.data \\* mesh.fsdp = 8"),
        (["loss_normalization=sum"], "loss_normalization must be one of"),
        (["checkpoint.keep_best=true", "eval.every_steps=0"],
         "needs an eval loss"),
        (["checkpoint.keep_best=true", "eval.every_steps=3"],
         "must be a multiple of checkpoint.every_steps"),
    ],
)  # fmt: skip
def test_invalid_settings_fail_before_any_compilation(
    overrides, message, monkeypatch, tmp_path
):
    def must_not_compile(*args, **kwargs):
        raise AssertionError("validation came after compilation")

    monkeypatch.setattr(loop, "prepare", must_not_compile)
    config = config_lib.load_config(TINY, [f"run_dir={tmp_path}", *overrides])
    with pytest.raises(ValueError, match=message):
        loop.train(config)
