"""The data configuration and the paper's per-dataset defaults.

A `DataConfig` says where rows come from (a dataset builder, a local file or
a hub id), which fields hold the prompt and the response, how prompts are
formatted, and how examples become fixed-shape batches. Fields left `None`
take the dataset's default from `DATASET_DEFAULTS`, so that
`DataConfig(dataset="math")` reproduces the paper's math run.
"""

from __future__ import annotations

import dataclasses

DATASETS = ("math", "medical", "figfont", "gsm_symbolic", "generic")
TRUNCATIONS = ("right", "left", "error")
ON_BAD_ROW = ("skip", "error")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DatasetDefaults:
    """Where a dataset's rows come from and which fields a run trains on."""

    hub_id: str | None
    prompt_field: str | None
    response_field: str | None
    prompt_format: str = "chat"
    max_length: int = 1024


# Field names are those of the processed rows the paper's runs read: the
# math and medical rows keep their fields under `extra_info`, and the medical
# rows hold prompts already formatted for one model family (so they are used
# verbatim, with the raw format `plain`).
DATASET_DEFAULTS: dict[str, DatasetDefaults] = {
    "math": DatasetDefaults(
        hub_id="gaotang/numina-cot-subset-67k",
        prompt_field="extra_info.question",
        response_field="extra_info.answer",
        max_length=3072,
    ),
    "medical": DatasetDefaults(
        hub_id="gaotang/medical_sft_processed",
        prompt_field="extra_info.qwen_prompt",
        # The source spells the field "reponse".
        response_field="extra_info.qwen_reponse_no_thinking",
        prompt_format="plain",
        max_length=800,
    ),
    "figfont": DatasetDefaults(
        hub_id=None,
        prompt_field="question",
        response_field="answer",
        max_length=800,
    ),
    "gsm_symbolic": DatasetDefaults(
        hub_id=None,
        prompt_field="question",
        response_field="metadata.answer_cot",
        max_length=1024,
    ),
    "generic": DatasetDefaults(
        hub_id=None, prompt_field="prompt", response_field="response"
    ),
}

# The medical rows carry one prompt/response pair per model family; the
# paper's Qwen runs read the qwen pair and its Llama runs the llama pair.
MEDICAL_FIELDS: dict[str, tuple[str, str]] = {
    "qwen": ("extra_info.qwen_prompt", "extra_info.qwen_reponse_no_thinking"),
    "llama": (
        "extra_info.llama_prompt",
        "extra_info.llama_reponse_no_thinking",
    ),
}


def medical_fields(family: str) -> dict[str, str]:
    """`prompt_field`/`response_field` of the medical rows for a family.

    Use as `DataConfig(dataset="medical", **medical_fields("llama"))`.
    """
    if family not in MEDICAL_FIELDS:
        raise ValueError(
            f"no medical fields for model family {family!r}; choose one of "
            f"{sorted(MEDICAL_FIELDS)}"
        )
    prompt_field, response_field = MEDICAL_FIELDS[family]
    return {"prompt_field": prompt_field, "response_field": response_field}


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Everything that turns a dataset into a stream of training batches.

    Attributes:
      dataset: one of `DATASETS`; `generic` reads any jsonl/json/parquet file.
      path: a local file, a directory of split files, a saved Hugging Face
        dataset directory, or a hub dataset id; `None` uses the dataset's
        hub id (math, medical) or generates rows (figfont, gsm_symbolic).
      split: the split to train on.
      data_dir: where the array_record files are written and read; `None`
        uses tensorflow-datasets' default (~/tensorflow_datasets).
      prompt_field / response_field: dotted keys into a row (`a.b.c`).
      messages_field: a dotted key to a list of `{role, content}` turns; when
        set it replaces prompt/response and every assistant turn is a
        response.
      prompt_format: `chat` (the tokenizer's chat template) or a raw format
        name from `bnll_jax.tokenizer.RAW_PROMPT_FORMATS`.
      system_prompt: a system turn prepended in chat format.
      max_length: tokens per example and per packed row.
      truncation: what to do with an example longer than `max_length`: keep
        its first (`right`) or last (`left`) tokens, or raise (`error`).
      on_bad_row: `skip` (count and report) or `error` (raise at the row).
      packing: pack several examples into each row; otherwise one padded
        example per row.
      batch_size: global batch size in rows, split evenly across hosts.
        A packed row holds several examples (the report's
        `examples_per_step` says how many per batch), so matching the
        paper's 256 examples per step takes far fewer packed rows.
      seed: seeds the shuffle and packing order of every epoch.
      num_epochs: passes over the data.
      shuffle: shuffle examples (and packed rows) each epoch.
      num_generated: rows generated per split for figfont/gsm_symbolic, as
        `(train, test)`; `None` uses the paper's sizes.
      cache_tokenized: keep tokenized examples next to the dataset files
        and reuse them while rows, tokenizer and settings are unchanged.
      read_threads / prefetch_buffer_size: grain's threaded prefetching.
    """

    dataset: str = "gsm_symbolic"
    path: str | None = None
    split: str = "train"
    data_dir: str | None = None
    prompt_field: str | None = None
    response_field: str | None = None
    messages_field: str | None = None
    prompt_format: str | None = None
    system_prompt: str | None = None
    max_length: int | None = None
    truncation: str = "right"
    on_bad_row: str = "skip"
    packing: bool = True
    batch_size: int = 8
    seed: int = 0
    num_epochs: int = 1
    shuffle: bool = True
    num_generated: tuple[int, int] | None = None
    cache_tokenized: bool = True
    read_threads: int = 2
    prefetch_buffer_size: int = 8

    def __post_init__(self):
        _check_choice("dataset", self.dataset, DATASETS)
        _check_choice("truncation", self.truncation, TRUNCATIONS)
        _check_choice("on_bad_row", self.on_bad_row, ON_BAD_ROW)
        if self.dataset == "generic" and self.path is None:
            raise ValueError(
                "dataset 'generic' needs a path: set path to a jsonl, json "
                "or parquet file or a directory of them"
            )
        for name in ("batch_size", "num_epochs", "read_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError("max_length must be at least 2 tokens")

    @property
    def defaults(self) -> DatasetDefaults:
        return DATASET_DEFAULTS[self.dataset]

    def resolved(self) -> DataConfig:
        """This config with every `None` default filled from the dataset."""
        d = self.defaults
        uses_messages = self.messages_field is not None
        return dataclasses.replace(
            self,
            prompt_field=None
            if uses_messages
            else (self.prompt_field or d.prompt_field),
            response_field=None
            if uses_messages
            else (self.response_field or d.response_field),
            prompt_format=self.prompt_format or d.prompt_format,
            max_length=self.max_length or d.max_length,
        )


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {choices}")
