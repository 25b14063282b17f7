"""The `bnll` command line: one subcommand per job.

Each subcommand lives in its own module exposing `add_arguments(parser)` and
`run(args) -> int`; modules are imported only when their subcommand runs so
that `bnll --help` stays fast and a broken optional dependency of one job
does not break the others.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "analyze": (
        "bnll_jax.analyze",
        "gradient weights of objectives, computed with jax.grad",
    ),
    "diagnose": (
        "bnll_jax.diagnose",
        "where a model and dataset sit on the capability continuum",
    ),
    "eval": (
        "bnll_jax.evaluation.cli",
        "generate on a benchmark and score it (math, mcq, figfont, ...)",
    ),
    "train": (
        "bnll_jax.train",
        "train or resume a run: bnll train CONFIG [key=value ...]",
    ),
    "export": (
        "bnll_jax.export",
        "export a checkpoint in Hugging Face format",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bnll",
        description="SFT with probability-based objectives (JAX/Flax).",
    )
    parser.add_argument(
        "--log-level", default="INFO", help="Python logging level."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text)
        sub_parser.set_defaults(_module=module)
        # Subcommand modules import jax and friends inside run(), so
        # building the parser stays fast.
        importlib.import_module(module).add_arguments(sub_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # JAX logs its backend probing (e.g. no TPU found) at INFO.
    logging.getLogger("jax").setLevel(
        max(logging.WARNING, logging.getLogger().level)
    )
    try:
        return importlib.import_module(args._module).run(args) or 0
    except ValueError as error:
        # Input errors carry a message meant for the user: no traceback.
        print(f"bnll {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
