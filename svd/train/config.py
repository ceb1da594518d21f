"""`TrainConfig`: the typed config of `svd train` (sections data, model, train, log, validation).

Defaults are the SVD paper's where it states them; `configs/train/*.yaml` set the rest per run.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from curation.config_io import StrictModel
from svd.model.config import VideoModelConfig


class CaptionProbabilities(StrictModel):
    """How often each caption of a clip is picked per step (SVD paper, appendix C: CoCa 0.5, V-BLIP 0.25,
    LLM 0.25). Captions a clip lacks are left out and the others renormalised."""

    coca: float = Field(0.5, ge=0)
    vblip: float = Field(0.25, ge=0)
    llm: float = Field(0.25, ge=0)


class BucketConfig(StrictModel):
    height: int = Field(ge=8)
    width: int = Field(ge=8)
    num_frames: int | None = Field(None, ge=1, description="frames per example in this bucket; None: model.num_frames")


class DataConfig(StrictModel):
    shards: str | list[str] | None = Field(
        None,
        description="WebDataset shards written by `svd curate`: paths, globs (out/shards/*.tar), brace patterns "
        "(shard-{000000..000009}.tar) or URLs (http(s)://, pipe:), one string or a list",
    )
    height: int = Field(
        320, ge=8, description="training resolution without buckets: clips are resized to cover it, then centre-cropped"
    )
    width: int = Field(576, ge=8)
    buckets: list[BucketConfig] | None = Field(
        None,
        description="resolution / aspect-ratio buckets (height, width, optional num_frames): each clip trains in "
        "the one nearest its aspect ratio, resized to cover it and centre-cropped; a batch holds one bucket. "
        "None: one bucket, height x width",
    )
    fps: float | None = Field(
        None,
        gt=0,
        description="target frame rate of the sampled frames: stride = round(clip fps / fps); None: use stride",
    )
    stride: int = Field(1, ge=1, description="take every stride-th frame when fps is None")
    shuffle_buffer: int = Field(100, ge=1, description="samples held in each worker's shuffle buffer")
    num_workers: int = Field(4, ge=0, description="DataLoader worker processes per rank (each reads its own shards)")
    resample: bool = Field(
        False,
        description="False: each worker goes through its share of the rank's shards once per epoch, in a new shuffled "
        "order each epoch, epochs repeating until train.max_steps; True: shards drawn with replacement, no epochs",
    )
    windows_per_clip: int | None = Field(
        None,
        ge=1,
        description="None: each example starts at any possible frame of its clip, drawn anew every time; N: at one of "
        "N fixed windows per clip (the centres of N equal parts of the possible starts; 1: the middle one), so "
        "windows come back epoch after epoch and data.latent_cache hits",
    )
    latent_cache: str | None = Field(
        None,
        description="folder of cached VAE posteriors (mean and log-variance, safetensors) of training windows; None: "
        "encode every window every step. Keyed by the clip's bytes, the window's frame indices, height x width, the "
        "VAE encoder's weights and train.precision, so runs and ranks can share one folder; a window hits only "
        "when drawn again (see windows_per_clip). Targets are still sampled from the posterior each step, and "
        "the noise-augmented conditioning frame is still encoded each step (SVD noises its pixels)",
    )
    captions: CaptionProbabilities = CaptionProbabilities()
    default_motion_bucket_id: int = Field(127, ge=0, le=255, description="for clips whose motion_bucket_id is null")


class RandomModelConfig(StrictModel):
    """A randomly initialised model built from configs (tests, `tiny.yaml`): no download.

    `unet` is a `UNet2DConditionModel` config (base_kind sd: inflated) or a `UNetSpatioTemporalConditionModel`
    config (base_kind svd). `vae` is an `AutoencoderKL` (text) or `AutoencoderKLTemporalDecoder` (image)
    config; `image_encoder` a `CLIPVisionConfig`, `text_encoder` a `CLIPTextConfig`; the tokenizer is a
    character-level CLIP tokenizer. `scheduler`: None takes SD 2.1's (sd) or SVD-xt's (svd).
    """

    seed: int = 0
    unet: dict[str, Any]
    vae: dict[str, Any] = {}
    image_encoder: dict[str, Any] = {}
    text_encoder: dict[str, Any] = {}
    scheduler: dict[str, Any] | None = None


class TrainModelConfig(VideoModelConfig):
    random: RandomModelConfig | None = Field(None, description="build a random model from these configs, not `base`")
    image_parts: str = Field(
        "stabilityai/stable-video-diffusion-img2vid-xt",
        description="image-to-video from an inflated SD: the SVD checkpoint whose vae/, image_encoder/, "
        "feature_extractor/ and scheduler/ condition the model and go into the export",
    )


class ConditioningDropout(StrictModel):
    """Per-video probabilities of training without conditioning, for classifier-free guidance.

    image: the conditioning frame is dropped (zero CLIP embedding and zero latent, what the SVD pipeline feeds
    its unconditional branch); text: the caption is replaced by the empty prompt; both: both at once. Drawn as
    one uniform number per video: [0, both) both, [both, both+image) image, then text.
    """

    image: float = Field(0.1, ge=0, le=1)
    text: float = Field(0.1, ge=0, le=1)
    both: float = Field(0.0, ge=0, le=1)


class TrainLoopConfig(StrictModel):
    max_steps: int = Field(1000, ge=1, description="optimizer steps")
    batch_size: int = Field(1, ge=1, description="videos per rank per micro-batch")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    lr: float = Field(3e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = Field(100, ge=0, description="linear warmup from 0")
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine/linear decay end, as a fraction of lr")
    grad_clip: float | None = Field(1.0, gt=0, description="max global gradient norm; None: no clipping")
    precision: Literal["bf16", "fp32"] = Field("bf16", description="autocast dtype of the forward pass")
    ema_decay: float | None = Field(0.9999, gt=0, lt=1, description="EMA of the trainable weights; None: no EMA")
    gradient_checkpointing: bool = Field(False, description="recompute activations, temporal blocks included")
    optimizer: Literal["adamw", "adamw8bit"] = Field(
        "adamw", description="adamw8bit: bitsandbytes' 8-bit AdamW on CUDA, a quarter of the optimizer memory"
    )
    tf32: bool = Field(
        False,
        description="TF32 fp32 matmuls and convolutions on Ampere+ GPUs (as diffusers' --allow_tf32); False: "
        "PyTorch's defaults",
    )
    fsdp: bool = Field(
        False,
        description="under torchrun, shard parameters, gradients and optimizer states across ranks (torch FSDP2), "
        "for model.freeze: all; otherwise ranks are data-parallel (DDP), each holding all of them",
    )
    noise_aug_p_mean: float = Field(
        -3.0, description="conditioning-frame noise: ln(strength) ~ N(p_mean, p_std^2), as SVD"
    )
    noise_aug_p_std: float = Field(0.5, gt=0)
    dropout: ConditioningDropout = ConditioningDropout()
    checkpoint_every: int = Field(500, ge=1, description="steps between checkpoints (and one at the end)")
    keep_checkpoints: int = Field(2, ge=1, description="newest checkpoints kept in RUN_DIR/checkpoints")
    seed: int = 0
    device: str = Field("auto", description="auto: cuda when present (cuda:LOCAL_RANK under torchrun), else cpu")


class LogConfig(StrictModel):
    every: int = Field(10, ge=1, description="steps between console/TensorBoard lines")
    tensorboard: bool = True


class ValidationConfig(StrictModel):
    every: int = Field(0, ge=0, description="steps between validation videos; 0: none")
    image: str | None = Field(None, description="conditioning image; None: the first frame of the first batch")
    prompt: str = Field("", description="text-to-video prompt")
    num_frames: int | None = Field(None, ge=1, description="None: model.num_frames")
    num_inference_steps: int = Field(25, ge=1)
    fps: int = 7
    motion_bucket_id: int = 127
    noise_aug_strength: float = 0.02
    guidance_scale: float = Field(3.0, ge=1, description="max guidance (image) / guidance (text)")
    seed: int = 0
    ema: bool = Field(
        True, description="sample with the EMA weights (what the export holds) when train.ema_decay is set"
    )


class ExportConfig(StrictModel):
    merge_lora: bool = Field(
        False,
        description="with model.lora: also fold the adapter into the UNet and write the whole model beside "
        "final/lora/ (final/unet/, and the rest of the pipeline)",
    )


class TrainConfig(StrictModel):
    data: DataConfig = DataConfig()
    model: TrainModelConfig = TrainModelConfig()
    train: TrainLoopConfig = TrainLoopConfig()
    log: LogConfig = LogConfig()
    validation: ValidationConfig = ValidationConfig()
    export: ExportConfig = ExportConfig()
