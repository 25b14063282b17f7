"""Orbax checkpoints that let a killed run continue exactly.

A checkpoint is one Orbax step directory with five items:

- ``params``: the float32 master weights (what `bnll export` reads);
- ``train``: optimizer state, step, RNG key and the non-finite counters;
- ``data``: the grain iterator's position (one JSON file per host);
- ``model``: the architecture as a Hugging Face config, to rebuild the
  model without the original weights;
- ``run``: the resolved training config, for provenance.

Orbax writes each step into a temporary directory and renames it (or, on
object stores such as gs://, writes a commit marker) only after every item
is complete, and lists only finished steps; a run killed while saving
therefore resumes from the previous complete checkpoint, and the leftover
temporary directory is removed when the manager opens.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

from bnll_jax.training.config import CheckpointSection
from bnll_jax.training.step import TrainState

logger = logging.getLogger(__name__)

_policies = ocp.checkpoint_managers


def _train_part(state: TrainState) -> dict[str, Any]:
    return {
        "step": state.step,
        "opt_state": state.opt_state,
        "rng": state.rng,
        "nonfinite_total": state.nonfinite_total,
        "nonfinite_streak": state.nonfinite_streak,
    }


def open_manager(
    directory: str, config: CheckpointSection
) -> ocp.CheckpointManager:
    """A manager saving every `every_steps`, keeping the last `keep`.

    With `keep_best`, the checkpoint with the lowest `eval_loss` metric is
    kept as well.
    """
    preserve: list[Any] = [_policies.LatestN(n=config.keep)]
    if config.keep_best:
        # BestN keeps the tail of the sorted list; sorting descending puts
        # the lowest loss last.
        preserve.append(
            _policies.BestN(
                get_metric_fn=lambda metrics: metrics["eval_loss"],
                reverse=True,
                n=1,
                keep_checkpoints_without_metrics=False,
            )
        )
    options = ocp.CheckpointManagerOptions(
        save_decision_policy=_policies.FixedIntervalPolicy(config.every_steps),
        preservation_policy=_policies.AnyPreservationPolicy(preserve),
        enable_async_checkpointing=config.async_save,
        cleanup_tmp_directories=True,
        create=True,
    )
    return ocp.CheckpointManager(
        directory,
        options=options,
        item_names=("params", "train", "data", "model", "run"),
    )


def save(
    manager: ocp.CheckpointManager,
    state: TrainState,
    data_iterator: grain.DatasetIterator,
    *,
    model_config: dict[str, Any],
    run_config: dict[str, Any],
    metrics: dict[str, float] | None = None,
    force: bool = False,
) -> bool:
    """Starts saving `state` at its step; True when a save was started.

    Arrays are copied off the devices before this returns, so the caller
    may donate `state` to the next step while Orbax writes in the
    background.
    """
    step = int(jax.device_get(state.step))
    args = ocp.args.Composite(
        params=ocp.args.StandardSave(state.params),
        train=ocp.args.StandardSave(_train_part(state)),
        data=grain.checkpoint.CheckpointSave(data_iterator),
        model=ocp.args.JsonSave(model_config),
        run=ocp.args.JsonSave(run_config),
    )
    saved = manager.save(step, args=args, metrics=metrics, force=force)
    if saved:
        logger.info("checkpoint: saving step %d", step)
    return saved


def restore(
    manager: ocp.CheckpointManager,
    abstract_state: TrainState,
    data_iterator: grain.DatasetIterator,
    step: int | None = None,
) -> TrainState:
    """The state at `step` (default: latest), placed as `abstract_state`.

    `abstract_state` holds jax.ShapeDtypeStructs carrying the target
    shardings; `data_iterator` is moved to the saved position in place.
    """
    step = manager.latest_step() if step is None else step
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract_state.params),
            train=ocp.args.StandardRestore(_train_part(abstract_state)),
            data=grain.checkpoint.CheckpointRestore(data_iterator),
        ),
    )
    train = restored["train"]
    logger.info("checkpoint: restored step %d from %s", step, manager.directory)
    return dataclasses.replace(
        abstract_state,
        params=restored["params"],
        opt_state=train["opt_state"],
        step=train["step"],
        rng=train["rng"],
        nonfinite_total=train["nonfinite_total"],
        nonfinite_streak=train["nonfinite_streak"],
    )


def saved_model_config(manager: ocp.CheckpointManager) -> dict[str, Any]:
    """The `model` item (HF config, tokenizer) of the latest checkpoint."""
    restored = manager.restore(
        manager.latest_step(),
        args=ocp.args.Composite(model=ocp.args.JsonRestore()),
    )
    return restored["model"]


def restore_params(
    directory: str, step: int | None = None
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """(params as saved, model config dict, step) for export.

    Reads only the weights and the architecture, not the optimizer state.
    """
    manager = ocp.CheckpointManager(
        directory,
        options=ocp.CheckpointManagerOptions(read_only=True, create=False),
        item_names=("params", "train", "data", "model", "run"),
    )
    step = manager.latest_step() if step is None else step
    if step is None:
        raise ValueError(
            f"no complete checkpoint in {directory}; pass a run's "
            "checkpoint directory (<run_dir>/checkpoints)"
        )
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            params=ocp.args.StandardRestore(),
            model=ocp.args.JsonRestore(),
        ),
    )
    manager.close()
    return restored["params"], restored["model"], step
