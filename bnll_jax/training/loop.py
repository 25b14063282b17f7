"""The training run: set-up, resume, the step loop, checkpoints, export.

Restarting the same command continues from the latest complete checkpoint
with the same parameters, optimizer state, RNG and data position, so a run
killed at any moment ends with the weights of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bnll_jax import objectives, sharding
from bnll_jax.training import (
    auto_objective,
    checkpoint,
    data,
    metrics,
    optimizer,
    state,
)
from bnll_jax.training import step as step_lib
from bnll_jax.training.config import TrainConfig, validate

logger = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


@dataclasses.dataclass
class TrainResult:
    state: step_lib.TrainState
    parts: state.ModelParts
    checkpoint_dir: str
    export_dir: str | None
    last_metrics: dict[str, float]


def _rules(config: TrainConfig) -> sharding.Rules:
    extra = tuple((name, axis) for name, axis in config.mesh.rules)
    return extra + sharding.DEFAULT_RULES


def _load_model(config: TrainConfig, mesh: Mesh, manager):
    """(parts, params or None): None means "initialise or restore".

    A run that will resume takes the architecture from its checkpoint and
    never reads the original weights.
    """
    if config.model.name == "tiny":
        model_config = state.tiny_model_config(config.model)
        return state.abstract_parts(model_config, config.seed), None
    if manager.latest_step() is not None:
        from bnll_jax.models.config import from_hf_config

        saved = checkpoint.saved_model_config(manager)
        model_config = dataclasses.replace(
            from_hf_config(saved["hf_config"], "checkpoint"),
            param_dtype="float32",
            dtype=config.model.dtype,
            remat=config.model.remat,
        )
        return state.abstract_parts(model_config, config.seed), None
    from bnll_jax.models import from_pretrained

    # Weights go straight from the files into their shardings.
    model = from_pretrained(
        config.model.name,
        dtype="float32",
        mesh=mesh,
        rules=_rules(config),
        compute_dtype=config.model.dtype,
        remat=config.model.remat,
    )
    return state.split_model(model)


def _model_json(parts: state.ModelParts, config: TrainConfig) -> dict:
    from bnll_jax.models.config import to_hf_config

    tokenizer = config.model.tokenizer
    if tokenizer is None and config.model.name != "tiny":
        tokenizer = config.model.name
    return {"hf_config": to_hf_config(parts.config), "tokenizer": tokenizer}


def _device_metrics(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(values).items()}


class _Evaluator:
    """Loss on the first `eval.batches` batches of an unshuffled pass.

    Like the paper's validation set, these are training rows: the loss
    tracks fitting, not generalisation.
    """

    def __init__(self, config, run_data, setup):
        self._config = config
        self._run_data = run_data
        self._batch_sharding = setup.batch_sharding
        self._fn = jax.jit(
            functools.partial(
                step_lib.eval_step,
                graphdef=setup.parts.graphdef,
                rest=setup.parts.rest,
                settings=setup.settings,
            )
        )

    def __call__(self, params) -> dict[str, float]:
        iterator = self._run_data.iterator(
            jax.process_index(), jax.process_count(), evaluation=True
        )
        totals = None
        for local in itertools.islice(iterator, self._config.eval.batches):
            micro = data.split_micro_batches(local, self._config.micro_batches)
            out = self._fn(
                params, sharding.global_batch(micro, self._batch_sharding)
            )
            totals = (
                out if totals is None else jax.tree.map(jnp.add, totals, out)
            )
        totals = jax.device_get(totals)
        return {
            "eval_loss": float(totals.loss_sum / max(totals.token_count, 1)),
            "eval_nll": float(totals.nll_sum / max(totals.response_count, 1)),
        }


@dataclasses.dataclass
class Setup:
    """Everything the step needs, built from the config and a model."""

    mesh: Mesh
    parts: state.ModelParts
    settings: step_lib.LossSettings
    steps: int
    optimizer: optax.GradientTransformation
    schedule: optax.Schedule
    abstract_params: dict[str, Any]
    shardings: step_lib.TrainState
    batch_sharding: NamedSharding
    step_fn: Callable[..., Any]


def make_mesh(config: TrainConfig, devices=None) -> Mesh:
    sizes = {
        "data": config.mesh.data,
        "fsdp": config.mesh.fsdp,
        "tensor": config.mesh.tensor,
    }
    return sharding.make_mesh(sizes, devices)


def prepare(
    config: TrainConfig, parts: state.ModelParts, mesh: Mesh, steps: int
) -> Setup:
    """Optimizer, shardings and the jitted step for `parts` on `mesh`."""
    rules = _rules(config)
    settings = step_lib.LossSettings(
        objective=objectives.parse(config.objective),
        normalization=config.loss_normalization,
        reference_ranks=config.reference_ranks,
        token_chunk=config.loss_token_chunk,
        vocab_block=config.loss_vocab_block,
    )
    tx, schedule = optimizer.build_optimizer(config.optimizer, steps)
    params_sharding = state.param_shardings(parts, mesh, rules)
    abstract_params = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
        nnx.to_pure_dict(parts.abstract_params),
    )
    shardings = state.state_shardings(
        tx, params_sharding, abstract_params, mesh
    )
    batch_sharding = sharding.batch_sharding(mesh, rules)
    step_fn = step_lib.jit_train_step(
        functools.partial(
            step_lib.train_step,
            graphdef=parts.graphdef,
            rest=parts.rest,
            optimizer=tx,
            schedule=schedule,
            settings=settings,
            grad_shardings=params_sharding,
        ),
        shardings,
        batch_sharding,
        NamedSharding(mesh, PartitionSpec()),
    )
    return Setup(
        mesh=mesh,
        parts=parts,
        settings=settings,
        steps=steps,
        optimizer=tx,
        schedule=schedule,
        abstract_params=abstract_params,
        shardings=shardings,
        batch_sharding=batch_sharding,
        step_fn=step_fn,
    )


def _tokenizer(config: TrainConfig):
    if config.data.source == "synthetic":
        return None
    name = config.model.tokenizer or (
        None if config.model.name == "tiny" else config.model.name
    )
    if name is None:
        raise ValueError(
            "data.source=dataset needs a tokenizer: set model.tokenizer"
        )
    from bnll_jax.tokenizer import load_tokenizer

    return load_tokenizer(name)


def run_steps(config: TrainConfig, available: int) -> int:
    """`steps`, or every batch of the data; more than the data is an error."""
    if config.steps is None:
        return available
    if config.steps > available:
        raise ValueError(
            f"steps={config.steps} but the data holds {available} batches "
            f"of {config.data.batch_size}; raise data.num_epochs or lower "
            "steps"
        )
    return config.steps


class _Reporter:
    """Turns each step's device metrics into logs, files and a progress bar.

    Fetching the metrics synchronises the host with the step, which is also
    what makes the per-step wall time (and so tokens/s and MFU) exact.
    TODO: fetch one step late to keep the device queue full; the host work
    per step is small next to a large model's step, so it is not done yet.
    """

    def __init__(self, config, run_data, parts, steps, start):
        self._config = config
        self._steps = steps
        device_kind = jax.devices()[0].device_kind
        self._peak = metrics.peak_flops_for(
            device_kind, config.logging.peak_flops
        )
        if self._peak is None:
            logger.info(
                "no peak FLOP/s for device kind %r in logging.peak_flops; "
                "MFU is not reported",
                device_kind,
            )
        self._flops = parts.config.flops_per_token(run_data.seq_len)
        self._positions = config.data.batch_size * run_data.seq_len
        is_main = jax.process_index() == 0
        self.writer = metrics.MetricsWriter(
            config.run_dir,
            enabled=is_main,
            tensorboard=config.logging.tensorboard,
            wandb=config.logging.wandb,
            wandb_project=config.logging.wandb_project,
            run_config=dataclasses.asdict(config),
        )
        self._progress = None
        if is_main and config.logging.progress_bar:
            from tqdm.auto import tqdm

            self._progress = tqdm(
                total=steps, initial=start, desc="train", unit="step"
            )

    def observe(self, step: int, device_metrics, started: float) -> dict:
        """Host values of a finished step; raises when it keeps diverging.

        `started` is the perf_counter() reading taken before the step's
        batch was fetched; the clock stops once its metrics are on the host.
        """
        values = _device_metrics(device_metrics)
        seconds = time.perf_counter() - started
        values.update(
            metrics.throughput(
                tokens=values["tokens"],
                positions=self._positions,
                seconds=seconds,
                flops_per_position=self._flops,
                peak_flops_per_device=self._peak,
                devices=jax.device_count(),
            )
        )
        if values["skipped"]:
            logger.warning(
                "step %d: non-finite loss or gradient, update skipped "
                "(%d in a row, %d in total)",
                step,
                values["nonfinite_streak"],
                values["nonfinite_total"],
            )
        streak = int(values["nonfinite_streak"])
        if streak >= self._config.max_consecutive_nonfinite:
            self.writer.write(step, values)
            raise TrainingDiverged(
                f"{streak} consecutive steps had a non-finite loss or "
                f"gradient (last at step {step}); lower "
                "optimizer.learning_rate or check the data, then restart "
                "to resume from the last checkpoint"
            )
        return values

    def report(self, step: int, values: dict) -> None:
        every = self._config.logging.every_steps
        if step % every == 0 or step == self._steps:
            self.writer.write(step, values)
        if self._progress is not None:
            self._progress.update(1)
            self._progress.set_postfix(
                loss=f"{values['loss']:.4f}",
                nll=f"{values['nll']:.4f}",
                p=f"{values['mean_prob']:.3f}",
                lr=f"{values['learning_rate']:.2e}",
                tok_s=f"{values['tokens_per_s']:.0f}",
            )

    def close(self) -> None:
        self.writer.close()
        if self._progress is not None:
            self._progress.close()


def _initial_state(config, manager, setup, iterator, loaded_params):
    """The latest checkpoint if there is one, else a fresh state."""
    tx, shardings = setup.optimizer, setup.shardings
    if manager.latest_step() is not None:
        target = state.abstract_state(tx, setup.abstract_params, shardings)
        return checkpoint.restore(manager, target, iterator)
    if loaded_params is not None:
        return state.init_state_from_params(
            loaded_params, tx, shardings, config.seed
        )
    return state.init_random_state(setup.parts, tx, shardings, config.seed)


def train(config: TrainConfig) -> TrainResult:
    """Runs (or resumes) the training described by `config`."""
    sharding.initialize_distributed(
        config.distributed.mode,
        config.distributed.coordinator_address,
        config.distributed.num_processes,
        config.distributed.process_id,
    )
    validate(config)
    config = auto_objective.resolve(config)
    os.makedirs(config.run_dir, exist_ok=True)
    checkpoint_dir = config.checkpoint.dir or os.path.join(
        config.run_dir, "checkpoints"
    )
    mesh = make_mesh(config)
    logger.info(
        "mesh %s over %s", dict(mesh.shape), jax.devices()[0].device_kind
    )

    manager = checkpoint.open_manager(checkpoint_dir, config.checkpoint)
    parts, loaded_params = _load_model(config, mesh, manager)
    tokenizer = _tokenizer(config)
    if tokenizer is not None:
        from bnll_jax.models import check_vocab

        check_vocab(tokenizer, parts.config)
    run_data = data.RunData(config.data, parts.config.vocab_size, tokenizer)
    steps = run_steps(config, run_data.steps)
    setup = prepare(config, parts, mesh, steps)
    iterator = run_data.iterator(jax.process_index(), jax.process_count())
    train_state = _initial_state(
        config, manager, setup, iterator, loaded_params
    )
    del loaded_params
    start = int(jax.device_get(train_state.step))
    evaluator = None
    if config.eval.every_steps > 0:
        evaluator = _Evaluator(config, run_data, setup)
    model_json = _model_json(parts, config)
    run_json = dataclasses.asdict(config)
    reporter = _Reporter(config, run_data, parts, steps, start)
    logger.info(
        "training steps %d..%d (%s, objective %s)",
        start + 1,
        steps,
        config.loss_normalization,
        config.objective,
    )

    values: dict[str, float] = {}
    try:
        for step in range(start + 1, steps + 1):
            tick = time.perf_counter()
            micro = data.split_micro_batches(
                next(iterator), config.micro_batches
            )
            batch = sharding.global_batch(micro, setup.batch_sharding)
            train_state, device_metrics = setup.step_fn(train_state, batch)
            values = reporter.observe(step, device_metrics, tick)

            eval_values = {}
            if evaluator and step % config.eval.every_steps == 0:
                eval_values = evaluator(train_state.params)
                values.update(eval_values)
            # The iterator has yielded exactly `step` batches, so the saved
            # position matches the saved state.
            checkpoint.save(
                manager,
                train_state,
                iterator,
                model_config=model_json,
                run_config=run_json,
                metrics=eval_values or None,
                force=step == steps,
            )
            reporter.report(step, values)
    finally:
        manager.wait_until_finished()
        manager.close()
        reporter.close()

    export_dir = None
    if config.export.enabled:
        from bnll_jax import export

        export_dir = config.export.dir or os.path.join(config.run_dir, "export")
        export.export_params(
            train_state.params, parts, export_dir, model_json["tokenizer"]
        )
    return TrainResult(train_state, parts, checkpoint_dir, export_dir, values)
