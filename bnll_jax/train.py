"""`bnll train CONFIG [key=value ...]`: run or resume a training run.

Running the same command again resumes from the run's latest complete
checkpoint. Every option is documented in bnll_jax/training/config.py.
"""

from __future__ import annotations

import argparse
import logging
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML file, e.g. configs/tiny.yaml")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="dotted overrides, e.g. objective=p optimizer.learning_rate=2e-5",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config and exit without training",
    )


def run(args: argparse.Namespace) -> int:
    from bnll_jax.training import config as config_lib

    # Orbax reports every file it renames at INFO; keep that for DEBUG.
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("absl").setLevel(logging.WARNING)

    config = config_lib.load_config(args.config, args.overrides)
    if args.print_config:
        config_lib.validate(config)
        print(config_lib.to_yaml(config), end="")
        return 0

    from bnll_jax.training.loop import TrainingDiverged, train

    try:
        result = train(config)
    except TrainingDiverged as error:
        print(f"bnll train: stopped: {error}", file=sys.stderr)
        return 1
    if result.export_dir:
        print(f"exported the final model to {result.export_dir}")
    return 0
