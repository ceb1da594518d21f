"""What a generation run asks for: how the model is loaded (`LoadOptions`) and how videos are sampled (`SampleSettings`).

The defaults are the conventions of diffusers' `StableVideoDiffusionPipeline` and Stability's
`simple_video_sample.py`: 25 steps, fps 7 (given to the model as fps - 1), motion bucket 127, noise
augmentation 0.02, guidance 1.0 -> 3.0 across frames, 576x1024. Each field is declared once, here: `svd generate`
takes its options' defaults, and its help texts (a field's `metadata["help"]`), from these classes, so this module
imports no torch until a method needs it (the command line's help stays fast).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

    from svd.generate.sampler import CFGMode

log = logging.getLogger(__name__)

TORCH_DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}  # precision name: torch dtype's name
DTypeName = Literal["auto", "fp16", "bf16", "fp32"]


@dataclass
class LoadOptions:
    """Where and how the model runs; fixed for the life of a `VideoGenerator`."""

    device: str | None = None  # None: cuda when there is one, else cpu
    dtype: DTypeName = "auto"  # auto: fp16 on a GPU (the official checkpoints' precision), fp32 on a CPU
    cpu_offload: bool = False  # keep each part on the CPU except while it runs
    forward_chunking: bool = False  # UNet feed-forward layers one frame at a time: less memory, same result
    channels_last: bool | None = None  # None: on CUDA only
    fuse_qkv: bool | None = None  # one matmul for attention q, k, v; None: on CUDA only
    compile: bool = False  # torch.compile the UNet (minutes of compilation on the first video)
    lora: str | None = None  # a LoRA adapter folder (`svd train`'s RUN_DIR/final/lora), merged into the UNet
    lora_scale: float = 1.0  # its strength: 0 the base model, 1 as trained

    def resolved_device(self) -> torch.device:
        import torch

        if self.device is not None:
            return torch.device(self.device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def resolved_dtype(self) -> torch.dtype:
        import torch

        if self.dtype == "auto":
            return torch.float16 if self.resolved_device().type == "cuda" else torch.float32
        return getattr(torch, TORCH_DTYPES[self.dtype])


def _setting(default, help: str):
    """A `SampleSettings` field with the help text of its `svd generate` option."""
    return field(default=default, metadata={"help": help})


@dataclass
class SampleSettings:
    """Per-run sampling settings; `num_frames=None` takes the UNet config's frame count."""

    num_frames: int | None = _setting(None, "Frames per video (default: the model's, 25 for -xt).")
    steps: int = _setting(25, "Sampling steps.")
    fps: int = _setting(7, "Frame rate of the video; the model is conditioned on fps - 1, as SVD was trained.")
    motion_bucket_id: int = _setting(127, "More is more motion.")
    noise_aug_strength: float = _setting(
        0.02, "Noise added to the conditioning image: more gives more motion and less likeness."
    )
    min_guidance: float = _setting(1.0, "Guidance scale of the first frame.")
    max_guidance: float = _setting(3.0, "Guidance scale of the last frame (linear between).")
    height: int = _setting(576, "Rounded to a multiple of 64.")
    width: int = _setting(1024, "Rounded to a multiple of 64.")
    # None: every frame at once, as the pipeline (best temporal consistency)
    decode_chunk_size: int | None = _setting(
        None, "Frames the VAE decodes at once (default: all; fewer use less memory, with slightly less smooth motion)."
    )
    cfg: CFGMode = "batched"

    def check(self) -> None:
        """Values no model can use: ValueError quoting the value."""
        for name in ("steps", "fps", "height", "width"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} {getattr(self, name)}: must be at least 1")
        if self.num_frames is not None and self.num_frames < 1:
            raise ValueError(f"num_frames {self.num_frames}: must be at least 1")
        if self.decode_chunk_size is not None and self.decode_chunk_size < 1:
            raise ValueError(f"decode_chunk_size {self.decode_chunk_size}: must be at least 1")
        if self.motion_bucket_id < 0:
            raise ValueError(f"motion_bucket_id {self.motion_bucket_id}: must not be negative")
        if self.noise_aug_strength < 0:
            raise ValueError(f"noise_aug_strength {self.noise_aug_strength}: must not be negative")
        if self.min_guidance > self.max_guidance:
            raise ValueError(f"min_guidance {self.min_guidance} is above max_guidance {self.max_guidance}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def low_memory(load: LoadOptions, settings: SampleSettings, *, decode_chunk_size_given: bool) -> None:
    """The `--low-memory` preset, in place: 14 frames at 576x1024 in under 8 GB of GPU memory.

    Model CPU offload (only the running part on the GPU: the fp16 UNet alone is 3 GB), feed-forward chunking,
    the two guidance branches one after the other, and the VAE decoding 2 frames at a time (diffusers' SVD
    memory advice). Precision stays half on a GPU.
    """
    load.cpu_offload = True
    load.forward_chunking = True
    settings.cfg = "sequential"
    if not decode_chunk_size_given:
        settings.decode_chunk_size = 2


def round_size(value: int, multiple: int, name: str, *, warn: bool = True) -> int:
    """`value` rounded to the nearest multiple of `multiple` (a warning when it changes); ValueError if it cannot."""
    rounded = round(value / multiple) * multiple
    if rounded < multiple:
        raise ValueError(f"{name} {value}: too small, this model needs a multiple of {multiple} (at least {multiple})")
    if rounded != value and warn:
        log.warning("%s %d is not a multiple of %d: using %d", name, value, multiple, rounded)
    return rounded
