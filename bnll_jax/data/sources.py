"""Reading raw rows from files, saved Hugging Face datasets and the hub.

Rows are plain dicts (nested dicts and lists kept as they are). A file that
cannot be read, or is not of the format its name says, raises a
`ValueError` naming the file; content problems inside a row are left to
`examples.py`, which counts and reports them.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from typing import Any

FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".arrow")

_MISSING = object()


def get_field(row: Any, dotted_key: str) -> Any:
    """Returns `row[a][b][c]` for the key `a.b.c`; `MISSING` if absent.

    Integer parts index into lists, so `messages.0.content` works too.
    """
    value = row
    for part in dotted_key.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit():
            if int(part) >= len(value):
                return _MISSING
            value = value[int(part)]
        else:
            return _MISSING
    return value


def is_missing(value: Any) -> bool:
    return value is _MISSING


def split_files(path: str) -> dict[str, list[str]]:
    """Maps split names to the data files of a local path.

    A single file is the `train` split. In a directory, each data file
    belongs to the split its name starts with (`train-0000.parquet`,
    `test.jsonl`, `val.parquet`); a saved Hugging Face `DatasetDict` has one
    sub-directory per split.
    """
    if os.path.isfile(path):
        return {"train": [path]}
    if not os.path.isdir(path):
        raise ValueError(f"data path {path} is neither a file nor a directory")

    if os.path.isfile(os.path.join(path, "dataset_dict.json")):
        with open(os.path.join(path, "dataset_dict.json")) as f:
            names = json.load(f)["splits"]
        return {
            name: _saved_dataset_files(os.path.join(path, name))
            for name in names
        }
    if os.path.isfile(os.path.join(path, "state.json")):
        return {"train": _saved_dataset_files(path)}

    splits: dict[str, list[str]] = {}
    pattern = os.path.join(path, "**", "*")
    for file in sorted(glob.glob(pattern, recursive=True)):
        if not file.endswith(FILE_SUFFIXES) or not os.path.isfile(file):
            continue
        stem = os.path.basename(file).split(".")[0]
        split = stem.split("-")[0].split("_")[0]
        splits.setdefault(split, []).append(file)
    if not splits:
        raise ValueError(
            f"no {'/'.join(FILE_SUFFIXES)} files under {path}; point path "
            "at a data file or a directory that holds some"
        )
    return splits


def _saved_dataset_files(folder: str) -> list[str]:
    """Arrow files of a dataset written by `datasets.Dataset.save_to_disk`."""
    state_file = os.path.join(folder, "state.json")
    try:
        with open(state_file) as f:
            state = json.load(f)
        return [
            os.path.join(folder, d["filename"]) for d in state["_data_files"]
        ]
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{state_file} is not a saved Hugging Face dataset state "
            f"({error}); re-save it with Dataset.save_to_disk"
        ) from None


def hub_split_files(hub_id: str) -> dict[str, list[str]]:
    """Downloads a hub dataset's data files (or finds them in the cache)."""
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            hub_id,
            repo_type="dataset",
            allow_patterns=[f"*{s}" for s in FILE_SUFFIXES],
        )
    except Exception as error:  # noqa: BLE001 -- hub errors vary by version
        raise ValueError(
            f"could not fetch hub dataset {hub_id} ({error}); go online, or "
            "download it and set path to the local copy"
        ) from None
    return split_files(folder)


def read_rows(file: str) -> Iterator[dict[str, Any]]:
    """Yields the rows of one jsonl, json, parquet or arrow file."""
    try:
        if file.endswith(".jsonl"):
            yield from _read_jsonl(file)
        elif file.endswith(".json"):
            yield from _read_json(file)
        elif file.endswith(".parquet"):
            yield from _read_arrow_table(file, "parquet")
        elif file.endswith(".arrow"):
            yield from _read_arrow_table(file, "arrow")
        else:
            raise ValueError(
                f"{file}: unknown data file type; use one of {FILE_SUFFIXES}"
            )
    except OSError as error:
        raise ValueError(f"cannot read data file {file}: {error}") from None


def _read_jsonl(file: str) -> Iterator[dict[str, Any]]:
    with open(file, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{file}:{line_number} is not valid JSON ({error}); "
                    "fix or remove that line"
                ) from None
            yield row if isinstance(row, dict) else {"value": row}


def _read_json(file: str) -> Iterator[dict[str, Any]]:
    with open(file, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{file} is not valid JSON ({error}); a .json file must "
                "hold a list of rows (use .jsonl for one row per line)"
            ) from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise ValueError(f"{file} must hold a JSON list of rows")
    for row in data:
        yield row if isinstance(row, dict) else {"value": row}


def _read_arrow_table(file: str, kind: str) -> Iterator[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if kind == "parquet":
            batches = pq.ParquetFile(file).iter_batches(batch_size=1024)
        else:
            # `save_to_disk` writes the Arrow IPC stream format.
            with open(file, "rb") as f:
                batches = list(pa.ipc.open_stream(f))
    except pa.ArrowException as error:
        raise ValueError(
            f"{file} is not a readable {kind} file ({error})"
        ) from None
    for batch in batches:
        yield from batch.to_pylist()
