"""The schema of `svd curate`'s config: one section per stage, named after the stage.

The defaults here are the Stable Video Diffusion paper's pipeline (Blattmann et al. 2023) with the real
model ids; `configs/curation/svd.yaml` spells the same values out (a test keeps the two equal), and
`configs/curation/tiny.yaml` runs the same stage graph on tiny seeded models for tests and trials.
Every stage has `enabled`; a stage switched off leaves its columns empty.
"""

from __future__ import annotations

from pydantic import Field

from curation.config_io import StrictModel


class StageConfig(StrictModel):
    enabled: bool = True


class SplitConfig(StageConfig):
    """Cut sources into single-shot clips (PySceneDetect cascade + transition trimming)."""

    min_seconds: float = Field(2.0, gt=0, description="clips shorter than this are dropped")
    max_seconds: float = Field(10.0, gt=0, description="longer scenes are split into equal chunks")


class MotionConfig(StageConfig):
    """Farneback optical flow on frames sampled at `sample_fps`, short side resized to `short_side` px."""

    sample_fps: float = Field(2.0, gt=0)
    short_side: int = Field(16, ge=8)


class OcrConfig(StageConfig):
    """EasyOCR's CRAFT text detector; `model_dir` None means the weights packaged with the install."""

    model_dir: str | None = None


class ClipConfig(StageConfig):
    """open_clip image/text embeddings for the aesthetic score and the caption match score."""

    model: str = "ViT-L-14"
    pretrained: str = "openai"


class CocaConfig(StageConfig):
    model: str = "coca_ViT-L-14"
    pretrained: str = "mscoco_finetuned_laion2B-s13B-b90k"


class VBlipConfig(StageConfig):
    model: str = "kpyu/video-blip-opt-2.7b-ego4d"
    num_frames: int = Field(8, ge=1)


class LlmConfig(StageConfig):
    model: str = "Qwen/Qwen2.5-1.5B-Instruct"


class CaptionConfig(StageConfig):
    coca: CocaConfig = Field(default_factory=CocaConfig)
    vblip: VBlipConfig = Field(default_factory=VBlipConfig)
    llm: LlmConfig = Field(default_factory=LlmConfig)


class FilterConfig(StageConfig):
    """Absolute thresholds (None = off); the paper's text-area limit is 0.07 of the frame."""

    max_text_area: float | None = Field(0.07, ge=0, le=1)


class OutputConfig(StrictModel):
    shard_max_samples: int = Field(1000, ge=1)
    shard_max_bytes: int = Field(1_000_000_000, ge=1)


class RayConfig(StrictModel):
    """Where the job runs: None starts an embedded local Ray sized to the machine."""

    address: str | None = None


class CurationConfig(StrictModel):
    split: SplitConfig = Field(default_factory=SplitConfig)
    motion: MotionConfig = Field(default_factory=MotionConfig)
    ocr: OcrConfig = Field(default_factory=OcrConfig)
    clip: ClipConfig = Field(default_factory=ClipConfig)
    caption: CaptionConfig = Field(default_factory=CaptionConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
