"""`objective=auto`: diagnose the base model first, then train with the
objective the diagnosis recommends (see bnll_jax.continuum).

The diagnosis is written to `<run_dir>/diagnosis.json` (and a PNG) before
training starts. A resumed run reads the objective back from that file
instead of diagnosing again, so every step of a run uses one objective.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

logger = logging.getLogger(__name__)

AUTO = "auto"
DIAGNOSIS_FILE = "diagnosis.json"


def resolve(config, max_examples: int | None = None):
    """`config` with `objective=auto` replaced by a concrete objective."""
    if config.objective != AUTO:
        return config
    if config.data.source != "dataset" or config.model.name == "tiny":
        raise ValueError(
            "objective=auto diagnoses the base model on the training data: "
            "it needs data.source=dataset and a pretrained model.name"
        )

    path = os.path.join(config.run_dir, DIAGNOSIS_FILE)
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        spec = saved["recommendation"]["objective"]
        logger.info("objective=auto: %s, as diagnosed before (%s)", spec, path)
        return dataclasses.replace(config, objective=spec)

    from bnll_jax import diagnose

    diagnosis, context = diagnose.run_diagnosis(
        config.model.name,
        config.data,
        max_examples=max_examples or diagnose.DEFAULT_EXAMPLES,
        seed=config.seed,
    )
    recommendation = diagnosis.recommendation
    diagnose.write_outputs(diagnosis, context, config.run_dir)
    logger.info(
        "objective=auto chose %s (%s band; %s). Worth a sweep: %s",
        recommendation.objective,
        recommendation.band,
        recommendation.reason,
        ", ".join(recommendation.alternatives),
    )
    return dataclasses.replace(config, objective=recommendation.objective)
