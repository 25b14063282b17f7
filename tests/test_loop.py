"""The training loop's guard against a run that keeps diverging."""

import json
import os

import grain
import jax
import numpy as np
import optax
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


def test_resuming_a_pretrained_run_reads_the_architecture_from_the_checkpoint(
    tmp_path,
):
    from bnll_jax.models.config import to_hf_config
    from bnll_jax.training import checkpoint

    config = config_lib.load_config(
        os.path.join(ROOT, "configs", "tiny.yaml"),
        # A model that cannot be loaded: resuming must not try.
        ["model.name=/nonexistent/model", "model.dtype=bfloat16"],
    )
    tiny = state.tiny_model_config(config.model)
    manager = checkpoint.open_manager(str(tmp_path), config.checkpoint)
    params = {"w": np.zeros(2, np.float32)}
    checkpoint.save(
        manager,
        state.new_state(params, optax.adamw(1e-3), seed=0),
        iter(grain.MapDataset.range(3).to_iter_dataset()),
        model_config={"hf_config": to_hf_config(tiny), "tokenizer": None},
        run_config={},
        force=True,
    )
    manager.wait_until_finished()

    parts, loaded = loop._load_model(config, loop.make_mesh(config), manager)
    assert loaded is None
    assert parts.config.hidden_size == tiny.hidden_size
    assert parts.config.num_layers == tiny.num_layers
    assert parts.config.dtype == "bfloat16"
    assert parts.config.param_dtype == "float32"
    manager.close()


def test_step_time_includes_waiting_for_the_step_to_finish(tmp_path):
    import time
    from types import SimpleNamespace

    class Pending(float):
        """A metric that, like a device array, is ready only after a wait."""

        def __float__(self):
            time.sleep(0.2)
            return float.__float__(self)

    config = config_lib.load_config(
        os.path.join(ROOT, "configs", "tiny.yaml"), [f"run_dir={tmp_path}"]
    )
    parts = SimpleNamespace(
        config=SimpleNamespace(flops_per_token=lambda seq_len: 1.0)
    )
    reporter = loop._Reporter(
        config, SimpleNamespace(seq_len=32), parts, steps=1, start=0
    )
    names = ["tokens", "skipped", "nonfinite_streak", "nonfinite_total"]
    device_metrics = {name: Pending(0.0) for name in names}
    device_metrics["tokens"] = Pending(100.0)
    values = reporter.observe(1, device_metrics, time.perf_counter())
    reporter.close()
    assert values["tokens_per_s"] < 100.0 / 0.2
