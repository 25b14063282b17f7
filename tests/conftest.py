"""Test-wide environment: offline hubs and 8 simulated CPU devices.

Both must be set before jax or transformers is imported anywhere, which is
why they live at the top of conftest.py rather than in a fixture.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
_flag = "--xla_force_host_platform_device_count=8"
if _flag not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " " + _flag


import pytest  # noqa: E402  (after the environment is set)


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M from the shipped GGUF: (bnll_jax model, transformers).

    Session-scoped: dequantising the GGUF takes seconds on each side, and
    several test modules compare against the same pair.
    """
    import torch
    import transformers

    from bnll_jax import presets
    from bnll_jax.models import from_pretrained

    path = presets.smollm2_gguf_path()
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path),
        gguf_file=os.path.basename(path),
        dtype=torch.float32,
    ).eval()
    return from_pretrained("smollm2-135m"), hf_model
