"""Training data: dataset builders, examples with response-only loss masks,
packing, and the grain pipeline that yields fixed-shape batches.

    from bnll_jax.data import DataConfig, prepare_data, make_iterator

    config = DataConfig(dataset="gsm_symbolic", max_length=1024)
    prepared = prepare_data(config, tokenizer)   # logs the data report
    batches = make_iterator(config, tokenizer, jax.process_index(),
                            jax.process_count(), prepared=prepared)

Importing this package registers the TFDS builders (`bnll_math`,
`bnll_medical`, `bnll_figfont`, `bnll_gsm_symbolic`, `bnll_generic`), so
`tfds.data_source("bnll_gsm_symbolic/...")` finds them.
"""

from bnll_jax.data.builders import BUILDERS, load_builder, open_rows
from bnll_jax.data.config import (
    DATASET_DEFAULTS,
    DataConfig,
    medical_fields,
)
from bnll_jax.data.examples import BadRow, Example, ExampleEncoder
from bnll_jax.data.pipeline import (
    DataReport,
    PreparedData,
    data_report,
    make_iterator,
    prepare_data,
)

__all__ = [
    "BUILDERS",
    "DATASET_DEFAULTS",
    "BadRow",
    "DataConfig",
    "DataReport",
    "Example",
    "ExampleEncoder",
    "PreparedData",
    "data_report",
    "load_builder",
    "make_iterator",
    "medical_fields",
    "open_rows",
    "prepare_data",
]
