"""Where the curation models run.

Every model stage (scores, captions) loads its model once per worker through these helpers, so device
choice and half precision on GPU are the same everywhere (the "cannot load" error is `curation.errors`').
"""

from __future__ import annotations

from typing import Literal

import torch

Precision = Literal["auto", "fp32", "fp16", "bf16"]
# open_clip names a dtype by its own strings (create_model(precision=...)).
OPEN_CLIP_PRECISION = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


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
