"""The training loop's guard against a run that keeps diverging."""

import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from bnll_jax.training import config as config_lib
from bnll_jax.training import loop, state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_consecutive_non_finite_steps_stop_the_run(tmp_path, monkeypatch):
    def poisoned_init(parts, optimizer, shardings, seed):
        # Zero weights with one NaN: every step's loss is NaN. (Building
        # them on the host also skips compiling the random initialisers.)
        params = jax.tree.map(
            lambda x: np.zeros(x.shape, x.dtype),
            nnx.to_pure_dict(parts.abstract_params),
        )
        params["lm_head"][0, 0] = np.nan
        return state.init_state_from_params(params, optimizer, shardings, seed)

    monkeypatch.setattr(state, "init_random_state", poisoned_init)
    config = config_lib.load_config(
        os.path.join(ROOT, "configs", "tiny.yaml"),
        [f"run_dir={tmp_path}", "max_consecutive_nonfinite=3", "steps=10"],
    )
    with pytest.raises(loop.TrainingDiverged, match="3 consecutive steps"):
        loop.train(config)
    rows = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    # Every step was skipped and counted, and the run stopped at the third.
    assert [r["nonfinite_total"] for r in rows] == [1, 2, 3]
    assert not (tmp_path / "export").exists()
