"""tensorflow-datasets builders for the paper's domains, in array_record.

Each builder converts its source once into array_record files under a
`data_dir` and is then read through `builder.as_data_source()` (random
access, no TensorFlow). Every record is `{"index": source row index,
"row": the source row as JSON}`: keeping the whole row, nested keys and
message lists included, lets one built dataset serve any choice of prompt
and response fields (the medical rows hold one pair per model family), and
keeps content checks in one place (`examples.py`) where bad rows are counted
rather than failing the build.

| builder | source |
|---|---|
| `bnll_math` | NuminaMath-CoT 67k subset: hub id, or a local file/directory |
| `bnll_medical` | m23k processed rows: hub id, or a local file/directory |
| `bnll_figfont` | reasoning-gym `figlet_font`, generated offline |
| `bnll_gsm_symbolic` | reasoning-gym `gsm_symbolic`, generated offline |
| `bnll_generic` | any jsonl/json/parquet file or directory |
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from bnll_jax.data import sources
from bnll_jax.data.config import DataConfig

logger = logging.getLogger(__name__)

_FEATURES = {"index": np.int64, "row": tfds.features.Text()}


@dataclasses.dataclass(eq=False)
class FileSourceConfig(tfds.core.BuilderConfig):
    """A builder config reading a local path, or the hub id if none."""

    path: str | None = None


@dataclasses.dataclass(eq=False)
class GeneratedConfig(tfds.core.BuilderConfig):
    """Sizes and seed of a reasoning-gym dataset.

    The train split is items `[0, num_train)` of one reasoning-gym dataset
    and the test split the next `num_test` items, so a smaller config
    generates a prefix of the paper-sized one.
    """

    seed: int = 42
    num_train: int = 40_000
    num_test: int = 5_000


class _RowBuilder(tfds.core.GeneratorBasedBuilder, abc.ABC):
    """Writes `{"index", "row"}` records; subclasses supply the rows."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Source rows stored as JSON with their index."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(self.__doc__ or "").strip(),
            features=tfds.features.FeaturesDict(_FEATURES),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Sources are local files, the hub cache or generated.
        return {
            split: self._generate_examples(split)
            for split in self._split_names()
        }

    def _generate_examples(self, split: str):
        for index, row in self._rows(split):
            # TFDS needs JSON-serialisable rows; parquet may hold dates etc.
            yield index, {"index": index, "row": json.dumps(row, default=str)}

    @abc.abstractmethod
    def _split_names(self) -> list[str]: ...

    @abc.abstractmethod
    def _rows(self, split: str) -> Iterator[tuple[int, dict[str, Any]]]: ...


class _FileRowBuilder(_RowBuilder):
    """Rows of local files or of a hub dataset's data files."""

    HUB_ID: str | None = None

    def _files(self) -> dict[str, list[str]]:
        path = self.builder_config.path
        if path is not None and os.path.exists(path):
            return sources.split_files(path)
        hub_id = path or self.HUB_ID
        if hub_id is None:
            raise ValueError(
                f"{self.name} needs a path to a data file or directory"
            )
        return sources.hub_split_files(hub_id)

    def _split_names(self) -> list[str]:
        return sorted(self._files())

    def _rows(self, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
        index = 0
        for file in self._files()[split]:
            for row in sources.read_rows(file):
                yield index, row
                index += 1


class BnllMath(_FileRowBuilder):
    """NuminaMath-CoT 67k subset: a question and a chain-of-thought answer."""

    HUB_ID = "gaotang/numina-cot-subset-67k"
    BUILDER_CONFIGS = [FileSourceConfig(name="hub")]


class BnllMedical(_FileRowBuilder):
    """m23k rows with prompts and answers formatted per model family."""

    HUB_ID = "gaotang/medical_sft_processed"
    BUILDER_CONFIGS = [FileSourceConfig(name="hub")]


class BnllGeneric(_FileRowBuilder):
    """Any jsonl/json/parquet file, or a directory of split files."""

    BUILDER_CONFIGS = [FileSourceConfig(name="unset")]


class _ReasoningGymBuilder(_RowBuilder):
    """Rows generated offline by a reasoning-gym task."""

    TASK: str = ""
    TASK_KWARGS: dict[str, Any] = {}

    def _split_names(self) -> list[str]:
        return ["train", "test"]

    def _rows(self, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
        import reasoning_gym

        c = self.builder_config
        dataset = reasoning_gym.create_dataset(
            self.TASK,
            seed=c.seed,
            size=c.num_train + c.num_test,
            **self.TASK_KWARGS,
        )
        start, stop = (
            (0, c.num_train)
            if split == "train"
            else (c.num_train, c.num_train + c.num_test)
        )
        for index in range(start, stop):
            yield index, dataset[index]


def _generated_name(seed: int, num_train: int, num_test: int) -> str:
    return f"seed{seed}_train{num_train}_test{num_test}"


class BnllFigfont(_ReasoningGymBuilder):
    """Figlet-font ASCII art to decode into its word (model-weak domain)."""

    TASK = "figlet_font"
    # The paper's settings: words of 2-5 letters, letters spaced apart.
    TASK_KWARGS = {"min_word_len": 2, "max_word_len": 5, "space_letters": True}
    BUILDER_CONFIGS = [GeneratedConfig(name=_generated_name(42, 40_000, 5_000))]


class BnllGsmSymbolic(_ReasoningGymBuilder):
    """GSM-Symbolic word problems with chain-of-thought answers."""

    TASK = "gsm_symbolic"
    TASK_KWARGS = {}
    BUILDER_CONFIGS = [
        GeneratedConfig(
            name=_generated_name(42, 10_000, 1_000),
            num_train=10_000,
            num_test=1_000,
        )
    ]


BUILDERS: dict[str, type[_RowBuilder]] = {
    "math": BnllMath,
    "medical": BnllMedical,
    "figfont": BnllFigfont,
    "gsm_symbolic": BnllGsmSymbolic,
    "generic": BnllGeneric,
}


def _local_fingerprint(path: str) -> str:
    """A name that changes when the files under `path` change."""
    files = [path] if os.path.isfile(path) else []
    for root, _, names in os.walk(path):
        files += [os.path.join(root, n) for n in sorted(names)]
    digest = hashlib.sha256(os.path.abspath(path).encode())
    for file in sorted(files):
        stat = os.stat(file)
        digest.update(f"{file}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return "local_" + digest.hexdigest()[:12]


def builder_config_for(config: DataConfig) -> tfds.core.BuilderConfig:
    """The TFDS builder config a `DataConfig` asks for."""
    wanted = _builder_config(config)
    # TFDS accepts a config named like a registered one only if it is that
    # very object.
    for registered in BUILDERS[config.dataset].BUILDER_CONFIGS:
        if registered.name == wanted.name:
            return registered
    return wanted


def _builder_config(config: DataConfig) -> tfds.core.BuilderConfig:
    if config.dataset in ("figfont", "gsm_symbolic"):
        default = BUILDERS[config.dataset].BUILDER_CONFIGS[0]
        num_train, num_test = config.num_generated or (
            default.num_train,
            default.num_test,
        )
        return GeneratedConfig(
            name=_generated_name(default.seed, num_train, num_test),
            seed=default.seed,
            num_train=num_train,
            num_test=num_test,
        )
    if config.path is None:
        return FileSourceConfig(name="hub")
    if os.path.exists(config.path):
        return FileSourceConfig(
            name=_local_fingerprint(config.path), path=config.path
        )
    # A hub id: the name must be a valid config name.
    safe = "".join(c if c.isalnum() else "_" for c in config.path)
    return FileSourceConfig(name="hub_" + safe, path=config.path)


def load_builder(config: DataConfig) -> tfds.core.DatasetBuilder:
    """The builder for `config`, with its array_record files written."""
    builder = BUILDERS[config.dataset](
        config=builder_config_for(config),
        data_dir=config.data_dir,
        file_format="array_record",
    )
    # TODO: on a multi-host pod every host builds into its own data_dir (or
    # races on a shared one); build once on process 0 before training.
    builder.download_and_prepare()
    return builder


class RowSource:
    """Random access to one split's rows, decoded from array_record."""

    def __init__(self, builder: tfds.core.DatasetBuilder, split: str):
        splits = builder.info.splits
        if split not in splits:
            raise ValueError(
                f"{builder.name} has no split {split!r}; choose one of "
                f"{sorted(splits)}"
            )
        self.name = f"{builder.name}/{builder.builder_config.name}:{split}"
        self._source = builder.as_data_source(split=split)
        # Identifies this build of the rows: a rebuilt dataset (new
        # dataset_info.json) invalidates caches derived from the old one.
        info = os.path.join(builder.data_dir, "dataset_info.json")
        built = os.stat(info).st_mtime_ns if os.path.exists(info) else 0
        self.fingerprint = f"{self.name}:{builder.version}:{len(self)}:{built}"
        self.cache_dir = os.path.join(builder.data_dir, "bnll_tokenized")

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, i: int) -> tuple[int, dict[str, Any]]:
        return _decode(self._source[i])

    def read(self, start: int, stop: int) -> list[tuple[int, dict[str, Any]]]:
        """Rows `[start, stop)`, read in one batched array_record call."""
        records = self._source.__getitems__(list(range(start, stop)))
        return [_decode(record) for record in records]


def _decode(record: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return int(record["index"]), json.loads(record["row"])


def open_rows(config: DataConfig) -> RowSource:
    """Builds the dataset if needed and opens the configured split."""
    return RowSource(load_builder(config), config.split)
