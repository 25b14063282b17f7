import json

import pytest

from bnll_jax import diagnose, objectives
from bnll_jax.training import auto_objective
from bnll_jax.training.config import load_config, validate


def _config(tmp_path, *overrides):
    return load_config(
        "configs/tiny.yaml",
        [
            f"run_dir={tmp_path / 'run'}",
            "objective=auto",
            "model.name=smollm2-135m",
            "data.source=dataset",
            "data.dataset=gsm_symbolic",
            "data.num_generated=[40,4]",
            f"data.data_dir={tmp_path / 'tfds'}",
            "data.max_length=256",
            *overrides,
        ],
    )


def test_auto_diagnoses_once_and_resumes_with_the_same_objective(
    tmp_path, monkeypatch
):
    config = _config(tmp_path)
    validate(config)  # "auto" is a valid setting before resolution
    resolved = auto_objective.resolve(config, max_examples=3)

    saved = json.loads((tmp_path / "run" / "diagnosis.json").read_text())
    assert resolved.objective == saved["recommendation"]["objective"]
    objectives.parse(resolved.objective)
    assert (tmp_path / "run" / "diagnosis.png").exists()

    def fail(*args, **kwargs):
        raise AssertionError("a resumed run must not diagnose again")

    monkeypatch.setattr(diagnose, "run_diagnosis", fail)
    assert auto_objective.resolve(config).objective == resolved.objective


def test_concrete_objectives_pass_through_untouched(tmp_path):
    config = _config(tmp_path, "objective=power:10")
    assert auto_objective.resolve(config) is config


def test_auto_needs_real_data_and_a_pretrained_model(tmp_path):
    config = load_config(
        "configs/tiny.yaml", [f"run_dir={tmp_path}", "objective=auto"]
    )
    with pytest.raises(ValueError, match="data.source=dataset"):
        auto_objective.resolve(config)
