"""Per-step metrics: throughput, MFU, and their sinks.

The step returns device scalars (loss, NLL, mean target probability, kept
fraction, gradient norm, learning rate, token counts). Here they gain the
host-side figures that need a clock,

    tokens/s = non-padding tokens of the step / wall seconds of the step
    MFU      = model FLOPs per position * positions computed per second
               / (peak FLOP/s per device * devices)

(padding positions are computed too, so MFU counts all batch x seq_len
positions), and go to a JSONL file, TensorBoard and, on request, W&B.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)


def peak_flops_for(
    device_kind: str, table: Mapping[str, float]
) -> float | None:
    """Peak FLOP/s of one device: the longest key contained in its kind."""
    kind = device_kind.lower()
    matches = [key for key in table if key.lower() in kind]
    if not matches:
        return None
    return float(table[max(matches, key=len)])


def throughput(
    *,
    tokens: float,
    positions: int,
    seconds: float,
    flops_per_position: float,
    peak_flops_per_device: float | None,
    devices: int,
) -> dict[str, float]:
    """tokens_per_s and, when the peak is known, mfu (a fraction)."""
    out = {"tokens_per_s": tokens / seconds}
    if peak_flops_per_device:
        achieved = flops_per_position * positions / seconds
        out["mfu"] = achieved / (peak_flops_per_device * devices)
    return out


class MetricsWriter:
    """JSONL + TensorBoard (+ W&B) sink; a no-op on non-zero processes."""

    def __init__(
        self,
        run_dir: str,
        *,
        enabled: bool = True,
        tensorboard: bool = True,
        wandb: bool = False,
        wandb_project: str = "bnll_jax",
        run_config: dict[str, Any] | None = None,
    ):
        self._enabled = enabled
        self._jsonl = None
        self._tensorboard = None
        self._wandb = None
        if not enabled:
            return
        if wandb:
            try:
                import wandb as wandb_lib
            except ImportError as error:
                raise ValueError(
                    "logging.wandb=true needs the wandb package; "
                    "pip install wandb or set logging.wandb=false"
                ) from error
            self._wandb = wandb_lib.init(
                project=wandb_project,
                dir=run_dir,
                config=run_config,
                resume="allow",
            )
        os.makedirs(run_dir, exist_ok=True)
        # Appending keeps the history of a resumed run in one file; steps
        # replayed after a restart appear twice (same losses, new timings).
        self._jsonl = open(os.path.join(run_dir, "metrics.jsonl"), "a")
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tensorboard = SummaryWriter(os.path.join(run_dir, "tb"))

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        if not self._enabled:
            return
        row = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        if self._tensorboard is not None:
            for key, value in row.items():
                if key != "step":
                    self._tensorboard.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(row, step=step)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
        if self._wandb is not None:
            self._wandb.finish()
