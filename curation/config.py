"""The schema of `svd curate`'s config: one section per stage, named after the stage.

The defaults here are the Stable Video Diffusion paper's pipeline (Blattmann et al. 2023) with the real
model ids; `configs/curation/svd.yaml` spells the same values out (a test keeps the two equal), and
`configs/curation/tiny.yaml` runs the same stage graph on tiny seeded models for tests and trials.
Every stage has `enabled`; a stage switched off leaves its columns empty.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from curation.config_io import StrictModel


class StageConfig(StrictModel):
    enabled: bool = True


class DetectorConfig(StrictModel):
    """One PySceneDetect detector of the cascade, fed the shared decoded frames at its own rate."""

    kind: Literal["content", "adaptive", "threshold"]
    fps: float | None = Field(None, gt=0, description="frames per second it sees; None = every frame")
    threshold: float = Field(gt=0, description="content: score; adaptive: ratio; threshold: mean brightness")
    min_scene_seconds: float = Field(0.5, ge=0)


def _paper_cascade() -> list[DetectorConfig]:
    # Hard cuts at the full rate (adaptive: robust to fast motion); gradual changes at a low rate, where a
    # dissolve's small per-frame steps add up; fades through black by brightness.
    return [
        DetectorConfig(kind="adaptive", fps=None, threshold=3.0),
        DetectorConfig(kind="content", fps=4.0, threshold=27.0),
        DetectorConfig(kind="threshold", fps=None, threshold=12.0),
    ]


class TransitionConfig(StrictModel):
    """How detected cuts become exact boundaries (see curation/transitions.py)."""

    max_transition_seconds: float = Field(1.0, gt=0)
    same_shot_difference: float = Field(8.0, ge=0, description="below this, the two sides are one shot")
    black_level: float = Field(12.0, ge=0, le=255)
    margin_frames: int = Field(1, ge=0, description="extra frames trimmed beside a gradual transition")


class SplitConfig(StageConfig):
    """Cut sources into single-shot clips (PySceneDetect cascade + transition trimming)."""

    min_seconds: float = Field(2.0, gt=0, description="clips shorter than this are dropped")
    max_seconds: float = Field(10.0, gt=0, description="longer scenes are split into equal chunks")
    detect_width: int = Field(256, ge=16, description="frames are decoded once, at this width, for detection")
    detectors: list[DetectorConfig] = Field(default_factory=_paper_cascade, min_length=1)
    transitions: TransitionConfig = Field(default_factory=TransitionConfig)
    reencode: bool = Field(False, description="false: stream copy from a keyframe; true: frame-exact libx264")
    crf: int = Field(18, ge=0, le=51)
    preset: str = "veryfast"


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
