"""`bnll diagnose`: place a model and a dataset on the capability continuum.

The base model reads a random sample of the training set teacher-forced,
formatted exactly as training formats it (same template, loss mask and
truncation, through `bnll_jax.data`), and we record the probability p it
gives every response token. `bnll_jax.continuum` turns those into the
paper's capability statistic, its band and the objective to use.

Sampled examples are packed into fixed-length rows (segment ids keep them
apart) and run through one jitted forward pass per batch of rows, split
over the devices; the fused head gives each target's log p without the
[tokens, vocab] logits.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Any

import numpy as np

from bnll_jax import continuum

logger = logging.getLogger(__name__)

DEFAULT_EXAMPLES = 512


def sample_examples(data_config, tokenizer, max_examples: int, seed: int):
    """Encodes a seeded random sample of rows as training would.

    Returns the `TokenizedExamples`, the `BadRow`s that were skipped, and
    the row indices of the examples cut to `max_length`.
    """
    from bnll_jax.data import ExampleEncoder, open_rows
    from bnll_jax.data.examples import BadRow, TokenizedExamples

    rows = open_rows(data_config)
    count = min(len(rows), max_examples)
    chosen = np.sort(
        np.random.default_rng(seed).choice(len(rows), count, replace=False)
    )
    encoded = ExampleEncoder(tokenizer, data_config).encode(
        [rows[int(i)] for i in chosen]
    )
    bad = [e for e in encoded if isinstance(e, BadRow)]
    if bad and data_config.on_bad_row == "error":
        raise ValueError(
            f"{len(bad)} bad rows in {rows.name}, first: row "
            f"{bad[0].index}: {bad[0].reason}"
        )
    for row in bad[:10]:
        logger.warning("skipped row %d: %s", row.index, row.reason)
    examples = [e for e in encoded if not isinstance(e, BadRow)]
    if not examples:
        raise ValueError(
            f"none of the {count} sampled rows of {rows.name} gave an "
            "example; check the prompt/response fields"
        )
    truncated = [e.index for e in examples if e.truncated]
    return TokenizedExamples(examples), bad, truncated


def _forward_fn(model, mesh=None):
    import jax
    import jax.numpy as jnp
    from flax import nnx
    from jax.sharding import NamedSharding, PartitionSpec

    from bnll_jax import loss

    graphdef, state = nnx.split(model)
    # Rows are split over the mesh's "data" axis; the weights keep the
    # sharding they were loaded with.
    rows = None if mesh is None else NamedSharding(mesh, PartitionSpec("data"))

    @jax.jit
    def token_probs(state, batch):
        model = nnx.merge(graphdef, state)
        hidden = model(
            batch["input_ids"],
            positions=batch["positions"],
            segment_ids=batch["segment_ids"],
        )
        logp = loss.fused_target_logprobs(
            hidden, model.head_weight(), batch["targets"]
        )
        return jnp.exp(logp)

    def forward(batch):
        if rows is not None:
            batch = jax.device_put(batch, rows)
        return token_probs(state, batch)

    return forward


def token_probabilities(
    model,
    examples,
    seq_len: int,
    pad_id: int,
    batch_rows: int = 4,
    progress: bool = True,
    mesh=None,
) -> tuple[np.ndarray, np.ndarray]:
    """p of every response token, and the example (row index) it is in.

    With a mesh, `batch_rows` is rounded up to a multiple of its "data"
    axis so every device reads whole rows.
    """
    import tqdm

    from bnll_jax.data import packing

    if mesh is not None:
        data = mesh.shape["data"]
        batch_rows = -(-batch_rows // data) * data
    bins = packing.best_fit_decreasing(examples.lengths, seq_len)
    forward = _forward_fn(model, mesh)
    probs, owners = [], []
    batches = range(0, len(bins), batch_rows)
    for start in tqdm.tqdm(batches, desc="diagnose", disable=not progress):
        # Every batch has batch_rows rows, so one compilation serves all.
        chunk = bins[start : start + batch_rows]
        chunk = chunk + [[]] * (batch_rows - len(chunk))
        rows = [packing.pack_row(examples, b, seq_len, pad_id) for b in chunk]
        batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
        p = np.asarray(forward(batch))

        mask = batch["loss_mask"].astype(bool)
        # Segment s of row r holds example chunk[r][s - 1].
        lookup = np.full((batch_rows, seq_len + 1), -1, np.int64)
        for r, members in enumerate(chunk):
            lookup[r, 1 : len(members) + 1] = examples.indices[members]
        owner = np.take_along_axis(lookup, batch["segment_ids"], axis=1)
        probs.append(p[mask])
        owners.append(owner[mask])
    return np.concatenate(probs), np.concatenate(owners)


def run_diagnosis(
    model_name: str,
    data_config,
    *,
    max_examples: int = DEFAULT_EXAMPLES,
    seed: int = 0,
    batch_rows: int = 4,
    dtype: str = "float32",
    progress: bool = True,
    tensor_parallel: int = 1,
    tokenizer_name: str | None = None,
) -> tuple[continuum.Diagnosis, dict[str, Any]]:
    """Loads the model and data, and diagnoses them; also returns context.

    `model_name` is anything `bnll eval` accepts: a preset, a HF directory,
    a GGUF file, a hub id or a training run's checkpoint directory. The
    model is laid out on all devices: rows over a "data" mesh axis,
    weights over `tensor_parallel` devices.
    """
    from bnll_jax.evaluation.loading import load_model_and_tokenizer

    model, tokenizer, mesh = load_model_and_tokenizer(
        model_name, tokenizer_name, dtype, tensor_parallel
    )
    data_config = data_config.resolved()
    examples, bad, truncated = sample_examples(
        data_config, tokenizer, max_examples, seed
    )
    probs, owners = token_probabilities(
        model,
        examples,
        data_config.max_length,
        tokenizer.pad_token_id,
        batch_rows=batch_rows,
        progress=progress,
        mesh=mesh,
    )
    diagnosis = continuum.diagnose(probs, owners, seed=seed)
    context = {
        "model": model_name,
        "dataset": data_config.dataset,
        "path": data_config.path,
        "split": data_config.split,
        "max_length": data_config.max_length,
        "prompt_format": data_config.prompt_format,
        "sampled_rows": int(len(examples) + len(bad)),
        "skipped_rows": [(b.index, b.reason) for b in bad],
        "truncated_rows": truncated,
    }
    return diagnosis, context


def plot(diagnosis: continuum.Diagnosis, path: str, title: str) -> None:
    """Histogram of token p with the bands, the mean and thresholds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges, counts = (np.asarray(x) for x in diagnosis.histogram)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    bands = (
        (0.0, continuum.WEAK_BELOW, "#f4cccc", "model-weak"),
        (
            continuum.WEAK_BELOW,
            continuum.STRONG_FROM,
            "#fff2cc",
            "intermediate",
        ),
        (continuum.STRONG_FROM, 1.0, "#d9ead3", "model-strong"),
    )
    for low, high, color, name in bands:
        ax.axvspan(
            low,
            high,
            color=color,
            alpha=0.6,
            lw=0,
            label=f"{name} band (mean p)",
        )
    ax.bar(
        edges[:-1],
        counts / counts.sum(),
        width=np.diff(edges),
        align="edge",
        color="#3d85c6",
        label="tokens",
    )
    low, high = diagnosis.capability_ci
    ax.axvline(
        diagnosis.capability,
        color="black",
        lw=1.5,
        label=f"mean p {diagnosis.capability:.3f} [{low:.3f}, {high:.3f}]",
    )
    for q, ls in ((5, ":"), (30, "--")):
        ax.axvline(
            diagnosis.percentiles[q],
            color="#990000",
            ls=ls,
            lw=1,
            label=f"{q}th percentile p = {diagnosis.percentiles[q]:.3f}",
        )
    ax.set_xlim(0, 1)
    ax.set_xlabel("p of the target token under the base model")
    ax.set_ylabel("share of response tokens")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(
    diagnosis: continuum.Diagnosis, context: dict[str, Any], out_dir: str
) -> str:
    """Writes diagnosis.png, then diagnosis.json; returns the JSON's path.

    The JSON comes last, so its presence means the diagnosis is complete.
    """
    os.makedirs(out_dir, exist_ok=True)
    plot(
        diagnosis,
        os.path.join(out_dir, "diagnosis.png"),
        f"{context['model']} on {context['dataset']}",
    )
    path = os.path.join(out_dir, "diagnosis.json")
    with open(path, "w") as f:
        json.dump({**context, **diagnosis.to_json()}, f, indent=2)
    logger.info("wrote diagnosis.json and diagnosis.png to %s", out_dir)
    return path


def _data_config(args):
    import yaml

    from bnll_jax.data import DataConfig

    overrides = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects key=value, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    if "num_generated" in overrides:
        overrides["num_generated"] = tuple(overrides["num_generated"])
    fields = {
        "dataset": args.data,
        "path": args.data_path,
        "split": args.split,
        "max_length": args.max_length,
        "prompt_format": args.prompt_format,
        **overrides,
    }
    try:
        return DataConfig(**fields)
    except TypeError as error:
        raise ValueError(f"bad data setting: {error}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="preset, HF directory, .gguf file or hub id",
    )
    parser.add_argument(
        "--data",
        default="gsm_symbolic",
        help="math, medical, figfont, gsm_symbolic, generic",
    )
    parser.add_argument(
        "--data-path",
        default=None,
        help="local file or directory (generic, math, ...)",
    )
    parser.add_argument("--split", default="train")
    parser.add_argument("--max-examples", type=int, default=DEFAULT_EXAMPLES)
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument(
        "--prompt-format",
        default=None,
        help="chat or a raw format (qwen-boxed, ...)",
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any other DataConfig field, e.g. num_generated=[2000,100]",
    )
    parser.add_argument(
        "--batch-rows", type=int, default=4, help="packed rows per forward pass"
    )
    parser.add_argument(
        "--tensor-parallel",
        type=int,
        default=1,
        help="devices each copy of the weights spans",
    )
    parser.add_argument(
        "--tokenizer", default=None, help="tokenizer, if not the model's own"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", default=None, help="directory for diagnosis.json and a PNG"
    )


def _print_summary(diagnosis: continuum.Diagnosis, context: dict) -> None:
    rec = diagnosis.recommendation
    low, high = diagnosis.capability_ci
    lines = [
        ("model", context["model"]),
        (
            "data",
            f"{context['dataset']}:{context['split']} "
            f"({diagnosis.num_examples} examples, "
            f"{diagnosis.num_tokens} response tokens)",
        ),
        (
            "mean p (capability)",
            f"{diagnosis.capability:.4f}  95% CI [{low:.4f}, {high:.4f}]",
        ),
        ("mean p per example", f"{diagnosis.example_mean:.4f}"),
        ("tokens with p > 0.55", f"{diagnosis.strong_token_share:.1%}"),
        (
            "p percentiles",
            "  ".join(
                f"{q}%:{v:.3f}" for q, v in diagnosis.percentiles.items()
            ),
        ),
        (
            "keep p >= percentile",
            "  ".join(
                f"{q}%:{spec.split(':')[1]}"
                for q, spec in diagnosis.quantile_thresholds.items()
            ),
        ),
        ("band", rec.band + (" (borderline)" if diagnosis.borderline else "")),
        ("use objective", rec.objective),
        ("worth a sweep", ", ".join(rec.alternatives)),
        ("why", rec.reason),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key:<{width}}  {value}")


def run(args: argparse.Namespace) -> int:
    data_config = _data_config(args)
    diagnosis, context = run_diagnosis(
        args.model,
        data_config,
        max_examples=args.max_examples,
        seed=args.seed,
        batch_rows=args.batch_rows,
        tensor_parallel=args.tensor_parallel,
        tokenizer_name=args.tokenizer,
    )
    _print_summary(diagnosis, context)
    if args.out:
        write_outputs(diagnosis, context, args.out)
    return 0
