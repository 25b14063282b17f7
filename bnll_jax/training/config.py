"""The training configuration: typed dataclasses, YAML files, overrides.

This module is the one place where every training option is defined and
documented. A run is described by a YAML file whose keys mirror the
dataclasses below, plus dotted command-line overrides::

    bnll train configs/math/qwen2.5-math-1.5b.yaml objective=p \
        optimizer.learning_rate=2e-5 mesh.fsdp=-1

OmegaConf merges the file and the overrides onto the structured defaults,
so an unknown key or a value of the wrong type is an error that names the
key. `validate` then checks what types cannot (choices, divisibility, the
objective spec, the mesh against the devices) before anything compiles.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from omegaconf import OmegaConf
from omegaconf import errors as omegaconf_errors

from bnll_jax.data import DataConfig

NORMALIZATIONS = ("token_mean", "reference")
SCHEDULES = ("cosine", "linear", "constant")
DTYPES = ("float32", "bfloat16", "float16")
DATA_SOURCES = ("dataset", "synthetic")


def _field(factory: Any) -> Any:
    return dataclasses.field(default_factory=factory)


@dataclasses.dataclass(frozen=True)
class TinyModelConfig:
    """Shape of the random model used when `model.name` is "tiny"."""

    architecture: str = "llama"
    vocab_size: int = 256
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 16
    intermediate_size: int = 128
    tie_word_embeddings: bool = False


@dataclasses.dataclass(frozen=True)
class ModelSection:
    # A Hugging Face hub name or local directory (read by
    # bnll_jax.models.from_pretrained), or "tiny" for a randomly initialised
    # model shaped by `tiny` (tests, smoke runs).
    name: str = "tiny"
    # Tokenizer saved next to the exported weights; default: `name`.
    tokenizer: str | None = None
    # Compute dtype. Master weights and optimizer state stay float32.
    dtype: str = "bfloat16"
    # Recompute each block's activations in the backward pass.
    remat: bool = True
    tiny: TinyModelConfig = _field(TinyModelConfig)


@dataclasses.dataclass(frozen=True)
class SyntheticDataConfig:
    """Random prompts whose response is the prompt reversed."""

    num_examples: int = 1024
    min_prompt_len: int = 4


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataSection(DataConfig):
    """bnll_jax.data.DataConfig (documented there) plus a synthetic source.

    `batch_size` is the global batch in rows per optimizer step,
    `max_length` the tokens per row, `num_epochs` the passes over the data.
    """

    # "dataset": rows read and tokenized by bnll_jax.data (`dataset`,
    # `path`, ...). "synthetic": an in-memory learnable task for tests and
    # throughput checks, `max_length` tokens per row, no tokenizer needed.
    source: str = "dataset"
    synthetic: SyntheticDataConfig = _field(SyntheticDataConfig)


@dataclasses.dataclass(frozen=True)
class OptimizerSection:
    """AdamW with warmup then decay; defaults are the paper's."""

    learning_rate: float = 5e-5
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.01
    # Decay every parameter (as the reference trainer does) or only
    # matrices, leaving norms and biases undecayed.
    decay_all: bool = True
    # Linear warmup over this fraction of the steps, then `schedule`.
    warmup_ratio: float = 0.1
    schedule: str = "cosine"
    # Final learning rate as a fraction of the peak.
    end_lr_ratio: float = 0.0
    # Global-norm clipping threshold; 0 disables clipping.
    grad_clip: float = 1.0


@dataclasses.dataclass(frozen=True)
class MeshSection:
    """Device-mesh axis sizes; one of them may be -1 for "the rest"."""

    data: int = 1
    fsdp: int = -1
    tensor: int = 1
    # Extra (logical_axis, mesh_axis or null) pairs placed before the
    # defaults in bnll_jax.sharding.DEFAULT_RULES.
    rules: list[list[str | None]] = _field(list)


@dataclasses.dataclass(frozen=True)
class DistributedSection:
    """Multi-host set-up (jax.distributed.initialize)."""

    # "auto": initialise when a coordinator is given or the environment is a
    # TPU pod / SLURM / MPI job; "always"; "never".
    mode: str = "auto"
    # host:port of process 0 (GPU clusters; TPU pods find it themselves).
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


@dataclasses.dataclass(frozen=True)
class CheckpointSection:
    # Orbax checkpoint root, local or gs://; default: <run_dir>/checkpoints.
    dir: str | None = None
    every_steps: int = 100
    # Most recent checkpoints kept.
    keep: int = 3
    # Also keep the checkpoint with the lowest eval loss (needs eval).
    keep_best: bool = False
    # Write in a background thread while training continues.
    async_save: bool = True


@dataclasses.dataclass(frozen=True)
class EvalSection:
    # Evaluate the loss every N steps (0: never).
    every_steps: int = 0
    # Batches of `data.batch_size` sequences per evaluation.
    batches: int = 1


@dataclasses.dataclass(frozen=True)
class ExportSection:
    # Save the final model in Hugging Face format.
    enabled: bool = True
    # Default: <run_dir>/export.
    dir: str | None = None


# Dense bf16 peak FLOP/s per chip from the vendors' data sheets, keyed by a
# substring of jax.Device.device_kind; used only for MFU.
DEFAULT_PEAK_FLOPS = {
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v5": 459e12,
    "TPU v6 lite": 918e12,
    "TPU v6e": 918e12,
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
}


@dataclasses.dataclass(frozen=True)
class LoggingSection:
    every_steps: int = 1
    progress_bar: bool = True
    tensorboard: bool = True
    # Also log to Weights & Biases (needs `pip install wandb`).
    wandb: bool = False
    wandb_project: str = "bnll_jax"
    # Peak FLOP/s per device, keyed by a substring of the device kind
    # (longest match wins); MFU is omitted for kinds not listed.
    peak_flops: dict[str, float] = _field(lambda: dict(DEFAULT_PEAK_FLOPS))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    # Directory for metrics, TensorBoard events, checkpoints and the export.
    run_dir: str = "runs/default"
    # Objective spec, see bnll_jax.objectives.parse: "nll", "p",
    # "power:10", "top_logp:0.2", or reference keys like "GeneralFamily-10".
    # "auto" diagnoses the base model on the training data first and uses
    # the recommended objective (bnll_jax.training.auto_objective).
    objective: str = "nll"
    # Optimizer steps; null trains data.num_epochs passes over the data.
    steps: int | None = None
    # Gradient-accumulation micro-batches per step (lax.scan in the step).
    micro_batches: int = 1
    # "token_mean": loss sum / kept tokens over the whole global batch (the
    # exact token mean). "reference": mean of per-micro-batch token means,
    # as the paper's PyTorch trainer computes it.
    loss_normalization: str = "token_mean"
    # Under "reference", each micro-batch is split into this many row
    # groups whose token means are averaged: the reference trainer's number
    # of data-parallel ranks (2 GPUs in the paper).
    reference_ranks: int = 1
    seed: int = 0
    # Stop after this many consecutive steps with a non-finite loss or
    # gradient (each such step is skipped).
    max_consecutive_nonfinite: int = 10
    # Vocabulary rows per block of the fused lm-head loss, and optionally
    # tokens per chunk (bounds the [tokens, block] logits of very long
    # batches at the cost of a [vocab, embed] float32 accumulator).
    loss_vocab_block: int = 1024
    loss_token_chunk: int | None = None
    model: ModelSection = _field(ModelSection)
    data: DataSection = _field(DataSection)
    optimizer: OptimizerSection = _field(OptimizerSection)
    mesh: MeshSection = _field(MeshSection)
    distributed: DistributedSection = _field(DistributedSection)
    checkpoint: CheckpointSection = _field(CheckpointSection)
    eval: EvalSection = _field(EvalSection)
    export: ExportSection = _field(ExportSection)
    logging: LoggingSection = _field(LoggingSection)

    @property
    def micro_batch_size(self) -> int:
        """Sequences per forward pass, summed over all devices."""
        return self.data.batch_size // self.micro_batches


def load_config(
    path: str | None = None, overrides: Sequence[str] = ()
) -> TrainConfig:
    """TrainConfig from a YAML file plus `key=value` overrides.

    Raises ValueError naming the offending key for unknown keys and values
    of the wrong type; call `validate` for the checks types cannot make.
    """
    schema = OmegaConf.structured(TrainConfig)
    layers = []
    if path is not None:
        try:
            layers.append(OmegaConf.load(path))
        except FileNotFoundError as error:
            raise ValueError(f"config file {path} does not exist") from error
    for item in overrides:
        if "=" not in item:
            raise ValueError(
                f"override {item!r} must look like key=value, "
                "e.g. optimizer.learning_rate=2e-5"
            )
    layers.append(OmegaConf.from_dotlist(list(overrides)))
    try:
        merged = OmegaConf.merge(schema, *layers)
        return OmegaConf.to_object(merged)
    except omegaconf_errors.ConfigKeyError as error:
        raise ValueError(
            f"unknown config key {error.full_key!r}; see "
            "bnll_jax/training/config.py for the valid keys"
        ) from None
    except omegaconf_errors.ValidationError as error:
        message = str(error).splitlines()[0]
        raise ValueError(
            f"bad value for config key {error.full_key!r}: {message}"
        ) from None
    except omegaconf_errors.OmegaConfBaseException as error:
        raise ValueError(f"config: {str(error).splitlines()[0]}") from None
    except ValueError as error:
        # The data section's own checks (bnll_jax.data.DataConfig).
        raise ValueError(f"data: {error}") from None


def to_yaml(config: TrainConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def _choice(key: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{key} must be one of {list(allowed)}, got {value!r}")


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{key} must be positive, got {value}")


def validate(config: TrainConfig, device_count: int | None = None) -> None:
    """Checks that need no compilation; raises ValueError naming the key.

    `device_count` defaults to jax.device_count() (which initialises the
    backend but compiles nothing).
    """
    from bnll_jax import objectives, sharding

    try:
        if config.objective != "auto":
            objectives.parse(config.objective)
    except ValueError as error:
        raise ValueError(f"objective: {error}") from None

    _choice("loss_normalization", config.loss_normalization, NORMALIZATIONS)
    _choice("optimizer.schedule", config.optimizer.schedule, SCHEDULES)
    _choice("model.dtype", config.model.dtype, DTYPES)
    _choice("data.source", config.data.source, DATA_SOURCES)
    for key, value in (
        ("data.batch_size", config.data.batch_size),
        ("micro_batches", config.micro_batches),
        ("reference_ranks", config.reference_ranks),
        ("optimizer.learning_rate", config.optimizer.learning_rate),
        ("checkpoint.every_steps", config.checkpoint.every_steps),
        ("checkpoint.keep", config.checkpoint.keep),
        ("logging.every_steps", config.logging.every_steps),
        ("max_consecutive_nonfinite", config.max_consecutive_nonfinite),
    ):
        _positive(key, value)
    if config.steps is not None:
        _positive("steps", config.steps)
    if not 0 <= config.optimizer.warmup_ratio < 1:
        raise ValueError(
            "optimizer.warmup_ratio must be in [0, 1), got "
            f"{config.optimizer.warmup_ratio}"
        )
    if config.data.source == "synthetic" and config.data.max_length is None:
        raise ValueError("data.source=synthetic needs data.max_length")
    if config.checkpoint.keep_best and config.eval.every_steps <= 0:
        raise ValueError(
            "checkpoint.keep_best needs an eval loss; set eval.every_steps"
        )
    if (
        config.checkpoint.keep_best
        and config.eval.every_steps % config.checkpoint.every_steps
    ):
        # Only a saved step can be kept as the best one.
        raise ValueError(
            "with checkpoint.keep_best, eval.every_steps "
            f"({config.eval.every_steps}) must be a multiple of "
            f"checkpoint.every_steps ({config.checkpoint.every_steps})"
        )

    if config.data.batch_size % config.micro_batches:
        raise ValueError(
            f"data.batch_size ({config.data.batch_size}) must be divisible "
            f"by micro_batches ({config.micro_batches})"
        )
    if config.micro_batch_size % config.reference_ranks:
        raise ValueError(
            f"the micro-batch ({config.micro_batch_size} sequences) must be "
            f"divisible by reference_ranks ({config.reference_ranks})"
        )

    if device_count is None:
        import jax

        device_count = jax.device_count()
    sizes = {
        "data": config.mesh.data,
        "fsdp": config.mesh.fsdp,
        "tensor": config.mesh.tensor,
    }
    try:
        shape = sharding.resolve_mesh_shape(sizes, device_count)
    except ValueError as error:
        raise ValueError(f"mesh: {error}") from None
    batch_ways = shape[0] * shape[1]
    if config.micro_batch_size % batch_ways:
        raise ValueError(
            f"the micro-batch ({config.micro_batch_size} sequences = "
            "data.batch_size / micro_batches) must be divisible by "
            f"mesh.data * mesh.fsdp = {batch_ways}"
        )
    for rule in config.mesh.rules:
        if len(rule) != 2 or rule[1] not in (*sharding.MESH_AXES, None):
            raise ValueError(
                f"mesh.rules entry {rule} must be [logical_axis, mesh_axis] "
                f"with mesh_axis one of {list(sharding.MESH_AXES)} or null"
            )
