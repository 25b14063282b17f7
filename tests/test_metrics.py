"""Throughput, MFU and the metric sinks."""

import json

import pytest

from bnll_jax.training import metrics
from bnll_jax.training.config import DEFAULT_PEAK_FLOPS


def test_peak_flops_takes_the_longest_matching_device_kind():
    assert metrics.peak_flops_for("TPU v5 lite", DEFAULT_PEAK_FLOPS) == 197e12
    assert metrics.peak_flops_for("TPU v5p", DEFAULT_PEAK_FLOPS) == 459e12
    assert metrics.peak_flops_for("NVIDIA H100 80GB HBM3", DEFAULT_PEAK_FLOPS)
    assert metrics.peak_flops_for("cpu", DEFAULT_PEAK_FLOPS) is None


def test_mfu_is_model_flops_over_peak_of_all_devices():
    out = metrics.throughput(
        tokens=900,
        positions=1000,
        seconds=2.0,
        flops_per_position=1e9,
        peak_flops_per_device=1e12,
        devices=4,
    )
    assert out["tokens_per_s"] == 450
    assert out["mfu"] == pytest.approx(1e9 * 1000 / 2.0 / 4e12)
    unknown = metrics.throughput(
        tokens=1,
        positions=1,
        seconds=1.0,
        flops_per_position=1.0,
        peak_flops_per_device=None,
        devices=1,
    )
    assert "mfu" not in unknown


def test_writer_appends_jsonl_and_tensorboard_events(tmp_path):
    writer = metrics.MetricsWriter(str(tmp_path), tensorboard=True)
    writer.write(1, {"loss": 2.5, "nll": 3.0})
    writer.close()
    writer = metrics.MetricsWriter(str(tmp_path), tensorboard=False)
    writer.write(2, {"loss": 2.0})
    writer.close()
    rows = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    assert rows == [
        {"step": 1, "loss": 2.5, "nll": 3.0},
        {"step": 2, "loss": 2.0},
    ]
    assert any(p.name.startswith("events") for p in (tmp_path / "tb").iterdir())


def test_wandb_without_the_package_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError("no wandb")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.raises(ValueError, match="pip install wandb"):
        metrics.MetricsWriter(str(tmp_path), tensorboard=False, wandb=True)
