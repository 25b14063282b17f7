"""Reading and writing Hugging Face safetensors checkpoints.

A checkpoint directory holds either one `model.safetensors` or shards listed
in `model.safetensors.index.json` (`weight_map`: tensor name -> file).
Tensors are read one at a time, memory-mapped, so loading a 7B model never
holds more than one tensor in host memory beyond the placed weights.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import safetensors
from safetensors.numpy import save_file

logger = logging.getLogger(__name__)

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


class SafetensorsReader:
    """Tensor names and arrays of a (possibly sharded) checkpoint."""

    def __init__(self, directory: str):
        self.directory = directory
        index_path = os.path.join(directory, INDEX_FILE)
        single_path = os.path.join(directory, SINGLE_FILE)
        if os.path.isfile(index_path):
            with open(index_path) as f:
                try:
                    weight_map = json.load(f)["weight_map"]
                except (json.JSONDecodeError, KeyError) as e:
                    raise ValueError(
                        f"{index_path} has no readable 'weight_map' ({e})"
                    ) from e
            self._file_of = {
                name: os.path.join(directory, file)
                for name, file in weight_map.items()
            }
        elif os.path.isfile(single_path):
            self._file_of = {
                name: single_path for name in self._open(single_path).keys()
            }
        else:
            raise ValueError(
                f"no {SINGLE_FILE} or {INDEX_FILE} in {directory}; is it a "
                "Hugging Face checkpoint directory?"
            )
        for path in sorted(set(self._file_of.values())):
            if not os.path.isfile(path):
                raise ValueError(
                    f"checkpoint shard {path} listed in {INDEX_FILE} is "
                    "missing; download the checkpoint again"
                )
        self._handles: dict[str, safetensors.safe_open] = {}

    @staticmethod
    def _open(path: str):
        try:
            return safetensors.safe_open(path, framework="numpy")
        except Exception as e:  # safetensors raises its own error types
            raise ValueError(
                f"checkpoint shard {path} is not a readable safetensors file "
                f"({e}); download it again"
            ) from e

    def names(self) -> set[str]:
        return set(self._file_of)

    def location(self, name: str) -> str:
        return self._file_of.get(name, self.directory)

    def get(self, name: str) -> np.ndarray:
        path = self._file_of[name]
        if path not in self._handles:
            self._handles[path] = self._open(path)
        try:
            return self._handles[path].get_tensor(name)
        except Exception as e:
            raise ValueError(
                f"cannot read tensor {name!r} from {path} ({e}); the file "
                "is corrupt or does not match its index"
            ) from e


def write_safetensors(
    tensors: dict[str, np.ndarray], directory: str, max_shard_bytes: int
) -> list[str]:
    """Writes tensors as one file or as shards with an index; returns files.

    Shards are filled in the given order up to `max_shard_bytes` (a tensor
    larger than that gets a shard of its own).
    """
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name, array in tensors.items():
        if shards[-1] and size + array.nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = array
        size += array.nbytes

    # transformers refuses safetensors files without a "format" entry.
    metadata = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], os.path.join(directory, SINGLE_FILE), metadata)
        return [SINGLE_FILE]

    files, weight_map = [], {}
    for i, shard in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, os.path.join(directory, file), metadata)
        files.append(file)
        weight_map.update({name: file for name in shard})
    total = sum(a.nbytes for a in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    with open(os.path.join(directory, INDEX_FILE), "w") as f:
        json.dump(index, f, indent=2)
    logger.info("wrote %d safetensors shards to %s", len(files), directory)
    return files
