"""Where the curation models run, and the one error a model that cannot be loaded gives.

Every model stage (scores, captions) loads its model once per worker through these helpers, so device
choice, half precision on GPU and the "cannot load" message are the same everywhere.
"""

from __future__ import annotations

from typing import Literal

import torch

Precision = Literal["auto", "fp32", "fp16", "bf16"]
# open_clip names a dtype by its own strings (create_model(precision=...)).
OPEN_CLIP_PRECISION = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


class ModelLoadError(RuntimeError):
    """A model that cannot be loaded: names the stage, the model and how to point at a local copy.

    Raised before any clip is processed, so a run never stops halfway for a missing model.
    """

    def __init__(self, stage: str, model: str, reason: str, config_key: str):
        super().__init__(
            f"{stage}: cannot load model {model!r}: {reason}. "
            f"Give a local folder or file with --set {config_key}=PATH (no model hub is needed then)"
        )


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks the first CUDA GPU when there is one, else the CPU; any torch device string is accepted."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but no CUDA GPU is visible")
    return device


def resolve_dtype(device: torch.device, precision: Precision = "auto") -> torch.dtype:
    """`auto`: bf16 on GPUs that support it, else fp16 on GPU; fp32 on CPU (half precision is slow there)."""
    if precision == "fp32":
        return torch.float32
    if precision == "fp16":
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
