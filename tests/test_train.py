"""`bnll train` end to end: outputs, exact resume after SIGKILL, export."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.numpy import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "tiny.yaml")
STEPS = 24
METRICS = {
    "loss", "nll", "mean_prob", "kept_fraction", "grad_norm",
    "learning_rate", "tokens_per_s",
}  # fmt: skip


def _command(run_dir, *overrides):
    return [
        sys.executable, "-m", "bnll_jax.cli", "train", CONFIG,
        f"run_dir={run_dir}", f"steps={STEPS}", "checkpoint.every_steps=4",
        *overrides,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    # The three runs compile the same programs: share them through JAX's
    # persistent cache so only the first one pays for compilation.
    cache = tmp_path_factory.mktemp("jax_cache")
    return {
        **os.environ,
        "PYTHONPATH": ROOT,
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, env):
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    _run(_command(run_dir), env)
    return run_dir


def _run(command, env):
    done = subprocess.run(command, env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-3000:]


def _weights(run_dir):
    return load_file(os.path.join(run_dir, "export", "model.safetensors"))


def _complete_checkpoints(run_dir):
    directory = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(directory):
        return []
    return [name for name in os.listdir(directory) if name.isdigit()]


def test_run_writes_metrics_events_checkpoints_and_export(uninterrupted):
    rows = [
        json.loads(line)
        for line in open(os.path.join(uninterrupted, "metrics.jsonl"))
    ]
    assert [row["step"] for row in rows] == list(range(1, STEPS + 1))
    assert METRICS <= set(rows[-1])
    assert all(np.isfinite(row["loss"]) for row in rows)
    evaluated = [row["step"] for row in rows if "eval_loss" in row]
    assert evaluated == [8, 16, 24]
    # The synthetic task (reverse the prompt) is learnable.
    assert np.mean([r["loss"] for r in rows[-4:]]) < rows[0]["loss"] - 0.05
    events = os.listdir(os.path.join(uninterrupted, "tb"))
    assert any(name.startswith("events.out.tfevents") for name in events)
    assert sorted(_complete_checkpoints(uninterrupted), key=int) == ["20", "24"]
    with open(os.path.join(uninterrupted, "export", "config.json")) as f:
        assert json.load(f)["num_hidden_layers"] == 2


def test_sigkilled_run_resumes_to_identical_weights(
    tmp_path, env, uninterrupted
):
    run_dir = tmp_path / "killed"
    process = subprocess.Popen(
        _command(run_dir),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Kill as soon as the first complete checkpoint exists: mid-run, and
    # often while a later asynchronous save is being written.
    deadline = time.monotonic() + 240
    while not _complete_checkpoints(run_dir):
        assert process.poll() is None, "the run ended before it was killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not os.path.exists(run_dir / "export")

    _run(_command(run_dir), env)
    # The restart continued from a checkpoint instead of starting over...
    steps = [
        json.loads(line)["step"] for line in open(run_dir / "metrics.jsonl")
    ]
    restart = next(i for i in range(1, len(steps)) if steps[i] <= steps[i - 1])
    resumed_from = steps[restart] - 1
    assert resumed_from >= 4 and resumed_from % 4 == 0
    assert steps[restart:] == list(range(resumed_from + 1, STEPS + 1))
    # ...and ends with exactly the uninterrupted run's weights.
    resumed, reference = _weights(run_dir), _weights(uninterrupted)
    assert resumed.keys() == reference.keys()
    for name in reference:
        # Bit for bit: the same programs on the same data in the same order.
        assert np.array_equal(resumed[name], reference[name]), name


def test_export_command_writes_a_checkpoint_as_hf(tmp_path, env, uninterrupted):
    out = tmp_path / "hf"
    checkpoints = str(uninterrupted / "checkpoints")
    _run(
        [sys.executable, "-m", "bnll_jax.cli", "export", checkpoints, str(out)],
        env,
    )
    exported = load_file(os.path.join(out, "model.safetensors"))
    final = _weights(uninterrupted)
    for name in final:
        assert np.array_equal(exported[name], final[name]), name


def test_evaluation_restores_the_exported_weights_from_a_run(uninterrupted):
    import jax.numpy as jnp
    from flax import nnx

    from bnll_jax.evaluation import loading
    from bnll_jax.models import from_pretrained

    checkpoints = loading._checkpoint_directory(str(uninterrupted))
    assert checkpoints == str(uninterrupted / "checkpoints")
    model, tokenizer_name = loading.model_from_training_checkpoint(
        checkpoints, "float32"
    )
    assert tokenizer_name is None  # the tiny run has no tokenizer
    exported = from_pretrained(str(uninterrupted / "export"))
    ids = jnp.arange(24, dtype=jnp.int32).reshape(2, 12) % 256
    forward = nnx.jit(lambda m, x: m.logits(m(x)))
    np.testing.assert_array_equal(forward(model, ids), forward(exported, ids))
