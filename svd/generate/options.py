"""What a generation run asks for: how the model is loaded (`LoadOptions`) and how videos are sampled (`SampleSettings`).

The defaults are those of diffusers' `StableVideoDiffusionPipeline`: 25 steps, fps 7 (given to the model as
fps - 1), motion bucket 127, noise augmentation 0.02, guidance 1.0 -> 3.0 across frames, 576x1024. Stability's own
`simple_video_sample.py` differs in steps and guidance: `PRESETS` names its settings (`--preset sgm-xt`).
Each field is declared once, here: `svd generate` takes its options' defaults, and its help texts (a field's
`metadata["help"]`), from these classes, so this module imports no torch until a method needs it (the command
line's help stays fast).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

    from svd.generate.denoiser import CFGMode

SamplerName = Literal["euler", "heun", "dpmpp_2m", "ddim"]
SAMPLER_NAMES: tuple[SamplerName, ...] = ("euler", "heun", "dpmpp_2m", "ddim")

# Named settings, over the defaults (diffusers' StableVideoDiffusionPipeline's: 25 steps, guidance 1.0 -> 3.0).
# Stability's scripts/sampling/simple_video_sample.py with configs/inference/svd.yaml and svd_xt.yaml:
PRESETS: dict[str, dict[str, float | int]] = {
    "diffusers": {},
    "sgm-svd": {"steps": 25, "min_guidance": 1.0, "max_guidance": 2.5},  # the 14-frame img2vid model
    "sgm-xt": {"steps": 30, "min_guidance": 1.5, "max_guidance": 3.0},  # the 25-frame img2vid-xt model
}

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
    sampler: SamplerName = _setting("euler", "Sampler: euler, heun (2 UNet calls a step), dpmpp_2m or ddim.")
    s_churn: float = _setting(0.0, "Euler only: sgm's s_churn, noise re-added at each step (0: deterministic).")
    guidance_scale: float = _setting(7.5, "Text-to-video: guidance scale of every frame (image-to-video: min/max).")
    strength: float = _setting(
        0.8, "With --init-video: how far it is noised (0 keeps it, 1 is a plain run); runs int(steps x strength) steps."
    )
    segments: int = _setting(
        1, "Image-to-video: this many segments in all, each conditioned on the last frame of the one before."
    )
    overlap: int = _setting(1, "Frames shared by neighbouring segments, cross-faded at the join.")
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
        if self.sampler not in SAMPLER_NAMES:
            raise ValueError(f"sampler {self.sampler!r}: choose one of {', '.join(SAMPLER_NAMES)}")
        if self.s_churn < 0 or (self.s_churn > 0 and self.sampler != "euler"):
            raise ValueError(f"s_churn {self.s_churn}: must be at least 0, and is a setting of the euler sampler only")
        if not 0 <= self.strength <= 1:
            raise ValueError(f"strength {self.strength}: must be between 0 and 1")
        if self.segments < 1 or self.overlap < 1:
            raise ValueError(f"segments {self.segments}, overlap {self.overlap}: each must be at least 1")
        if self.num_frames is not None and self.segments > 1 and self.overlap >= self.num_frames:
            raise ValueError(f"overlap {self.overlap}: must be below the {self.num_frames} frames of a segment")

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
