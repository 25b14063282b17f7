"""Padding of packed rows against one right-padded example per row.

Builds (or reuses) a dataset, tokenizes it with the given tokenizer, and
prints the share of row positions that are padding when examples are packed
by best-fit decreasing and when each example is right-padded to max_length,
as the reference trainer does. `padding` counts rows that hold examples;
`w/ fill` adds the all-padding rows that complete the last global batch.

    python benchmarks/packing.py                       # gsm_symbolic, 3072
    python benchmarks/packing.py --dataset figfont --max-length 800
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

from bnll_jax.data.config import DataConfig
from bnll_jax.data.pipeline import prepare_data
from bnll_jax.tokenizer import load_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="gsm_symbolic")
    parser.add_argument("--path", default=None)
    parser.add_argument("--tokenizer", default="smollm2-135m")
    parser.add_argument("--max-length", type=int, default=3072)
    parser.add_argument(
        "--num-rows",
        type=int,
        default=None,
        help="train rows generated for figfont/gsm_symbolic (default: the "
        "builder's, 40000 for figfont and 10000 for gsm_symbolic)",
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()

    data_dir = args.data_dir or tempfile.mkdtemp(prefix="bnll_packing_")
    tokenizer = load_tokenizer(args.tokenizer)
    config = DataConfig(
        dataset=args.dataset,
        path=args.path,
        data_dir=data_dir,
        max_length=args.max_length,
        batch_size=args.batch_size,
        num_generated=None if args.num_rows is None else (args.num_rows, 1),
    )
    results = {}
    for packing in (True, False):
        start = time.perf_counter()
        prepared = prepare_data(
            dataclasses.replace(config, packing=packing), tokenizer
        )
        results[packing] = (prepared.report, time.perf_counter() - start)

    packed, packed_s = results[True]
    padded, padded_s = results[False]
    lengths = prepared.examples.lengths
    print(f"dataset {packed.source}, tokenizer {args.tokenizer}")
    print(
        f"{packed.num_examples} examples, tokens per example mean "
        f"{lengths.mean():.0f}, max {lengths.max()}; max_length "
        f"{packed.seq_len}, global batch {args.batch_size}"
    )
    print(
        f"{'':14}{'rows':>8}{'fill':>6}{'steps':>7}{'ex/step':>9}"
        f"{'padding':>9}{'w/ fill':>9}{'prepare s':>11}"
    )
    for name, report, seconds in (
        ("packed (BFD)", packed, packed_s),
        ("right-padded", padded, padded_s),
    ):
        print(
            f"{name:14}{report.num_batch_rows:8d}{report.num_fill_rows:6d}"
            f"{report.steps:7d}{report.examples_per_step:9.1f}"
            f"{report.padding_fraction:9.2%}"
            f"{report.batch_padding_fraction:9.2%}{seconds:11.1f}"
        )
    print(
        f"right-padded rows / packed rows = "
        f"{padded.num_batch_rows / packed.num_batch_rows:.1f}x"
    )


if __name__ == "__main__":
    main()
