"""What `svd train` trains and conditions with: the video UNet and its frozen encoders, from `model:`.

| base_kind, conditioning | UNet | frozen parts |
| --- | --- | --- |
| svd, image (finetune an official SVD) | the checkpoint's unet/ | its vae/, image_encoder/, feature_extractor/, scheduler/ |
| sd, text (video pretraining) | the SD UNet, inflated | the SD pipeline's vae/, text_encoder/, tokenizer/, scheduler/ |
| sd, image | the SD UNet, inflated | vae/, image_encoder/, feature_extractor/, scheduler/ of `model.image_parts` |

For base_kind sd, `model.base` may also be a folder `svd inflate` wrote: its video UNet is used as it is, with the
SD scheduler config (hence the `backbone` parameterisation) recorded in its `inflated_from.json`, and text
parts from the SD source it names. `model.random` builds each of these randomly from configs instead (tests and `configs/train/tiny.yaml`).
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLTemporalDecoder,
    EulerDiscreteScheduler,
    UNet2DConditionModel,
    UNetSpatioTemporalConditionModel,
)
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from svd.model.conditioning import ImageConditioner, TextConditioner, check_added_time_ids
from svd.model.inflate import inflate, read_inflated
from svd.model.loading import ModelSourceError, _hub, load_sd_unet, load_svd
from svd.model.parameterisation import Parameterisation, make_parameterisation
from svd.train.config import RandomModelConfig, TrainModelConfig

# stabilityai/stable-diffusion-2-1 scheduler/ and stable-video-diffusion-img2vid-xt scheduler/ configs.
SD21_SCHEDULER = {
    "_class_name": "DDIMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}
SVD_SCHEDULER = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "sigma_max": 700.0,
    "sigma_min": 0.002,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "timestep_type": "continuous",
    "trained_betas": None,
    "use_karras_sigmas": True,
}


@dataclass
class Components:
    unet: UNetSpatioTemporalConditionModel
    vae: Any  # AutoencoderKLTemporalDecoder (image) or AutoencoderKL (text)
    conditioner: ImageConditioner | TextConditioner
    parameterisation: Parameterisation
    scheduler: EulerDiscreteScheduler  # what generation samples with (see build_components)
    parts: dict[str, Any] = field(default_factory=dict)  # frozen parts to export beside unet/, by folder name
    source: dict[str, Any] = field(default_factory=dict)  # where they came from, for the export's README

    def frozen_modules(self) -> list[torch.nn.Module]:
        return [m for m in self.parts.values() if isinstance(m, torch.nn.Module)]


def build_components(config: TrainModelConfig, work_dir: Path) -> Components:
    """Load or build every model `config` names; the UNet in fp32, everything else frozen in eval mode."""
    if config.random is not None:
        unet, scheduler_config, parts = _random(config, config.random, work_dir)
        source = {"random": config.random.model_dump()}
    elif config.base_kind == "svd":
        svd = load_svd(config.base)
        unet, scheduler_config = svd.unet, None
        parts = {
            "vae": svd.vae,
            "image_encoder": svd.image_encoder,
            "feature_extractor": svd.feature_extractor,
            "scheduler": svd.scheduler,
        }
        source = {"base": config.base}
    else:
        unet, scheduler_config, sd_source = _inflated_unet(config.base, config.num_frames)
        if config.conditioning == "text":
            parts = _sd_text_parts(sd_source)
            source = {"base": config.base}
        else:
            parts = _svd_image_parts(config.image_parts)
            source = {"base": config.base, "image_parts": config.image_parts}
    if config.conditioning == "image" and "image_encoder" not in parts:
        raise ValueError("model.conditioning image needs an image encoder; this base provides text parts only")
    if config.conditioning == "text" and "text_encoder" not in parts:
        raise ValueError("model.conditioning text needs a text encoder; this base provides image parts only")
    check_added_time_ids(unet)
    if config.conditioning == "image":
        check_cross_attention(unet, parts["image_encoder"], config)
    # The frame count trained is the one the export's pipeline samples by default (SVD-xt's config says 25).
    unet.register_to_config(num_frames=config.num_frames)
    unet.float().train()
    for module in parts.values():
        if isinstance(module, torch.nn.Module):
            module.requires_grad_(False).eval()
    if config.conditioning == "image":
        conditioner = ImageConditioner(parts["image_encoder"], parts["feature_extractor"], parts["vae"])
    else:
        conditioner = TextConditioner(parts["tokenizer"], parts["text_encoder"])
    parameterisation = make_parameterisation(config, scheduler_config)
    # Generation samples with an Euler scheduler either way: SVD's continuous-sigma one for `edm`; for `backbone`
    # one built from the SD scheduler config, whose discrete timesteps and prediction type the frozen backbone
    # knows (Euler's x / sqrt(sigma^2 + 1) is DDPM's noisy latent), so the SVD pipeline samples it correctly too.
    if config.resolved_parameterisation() == "backbone":
        parts["scheduler"] = EulerDiscreteScheduler.from_config(scheduler_config)
    elif not isinstance(parts.get("scheduler"), EulerDiscreteScheduler):
        parts["scheduler"] = EulerDiscreteScheduler(**SVD_SCHEDULER)
    return Components(unet, parts["vae"], conditioner, parameterisation, parts["scheduler"], parts, source)


def _inflated_unet(base: str, num_frames: int) -> tuple[UNetSpatioTemporalConditionModel, dict | None, str]:
    """(video UNet, SD scheduler config, SD source) for base_kind sd: an `svd inflate` output folder as it is,
    with the scheduler config (so the parameterisation) it recorded, or an SD UNet inflated now."""
    inflated = read_inflated(base)
    if inflated is not None:
        unet, provenance = inflated
        return unet, provenance.get("scheduler"), str(provenance.get("source") or base)
    sd_unet, scheduler_config = load_sd_unet(base)
    return inflate(sd_unet.float(), num_frames=num_frames), scheduler_config, base


def check_cross_attention(unet: UNetSpatioTemporalConditionModel, image_encoder, config: TrainModelConfig) -> None:
    """Image-to-video feeds the CLIP image embedding to cross-attention: its width must be the UNet's (an SD 1.x
    UNet attends to 768-d text, SVD's image encoder embeds in 1024) - a config error, not a shape error later."""
    widths = unet.config.cross_attention_dim
    widths = set(widths) if isinstance(widths, (list, tuple)) else {widths}
    embedding = image_encoder.config.projection_dim
    if widths != {embedding}:
        raise ModelSourceError(
            f"model.base {config.base}: its UNet's cross-attention takes {', '.join(map(str, sorted(widths)))}-d "
            f"context, but the image encoder embeds images in {embedding} dimensions; image-to-video needs a base "
            "of that width (SD 2.x and SVD: 1024, not SD 1.x: 768), or use model.conditioning: text"
        )


def _sd_text_parts(source: str) -> dict[str, Any]:
    def load(cls, sub):
        return _hub(lambda: cls.from_pretrained(source, subfolder=sub), source)

    path = Path(source)
    base = path.parent if path.name == "unet" else path  # a unet/ folder inside an SD pipeline folder
    source = str(base) if path.exists() else source
    return {
        "vae": load(AutoencoderKL, "vae"),
        "text_encoder": load(CLIPTextModel, "text_encoder"),
        "tokenizer": load(CLIPTokenizer, "tokenizer"),
    }


def _svd_image_parts(source: str) -> dict[str, Any]:
    def load(cls, sub):
        return _hub(lambda: cls.from_pretrained(source, subfolder=sub), source)

    return {
        "vae": load(AutoencoderKLTemporalDecoder, "vae"),
        "image_encoder": load(CLIPVisionModelWithProjection, "image_encoder"),
        "feature_extractor": load(CLIPImageProcessor, "feature_extractor"),
    }


def _random(config: TrainModelConfig, random: RandomModelConfig, work_dir: Path):
    """A seeded random UNet and frozen parts from the configs in `model.random`."""
    torch.manual_seed(random.seed)
    if config.base_kind == "sd":
        unet = inflate(UNet2DConditionModel(**random.unet), num_frames=config.num_frames)
        scheduler_config = random.scheduler or SD21_SCHEDULER
    else:
        unet = UNetSpatioTemporalConditionModel(**{"num_frames": config.num_frames, **random.unet})
        scheduler_config = None
    parts: dict[str, Any] = {}
    if config.conditioning == "image":
        parts["vae"] = AutoencoderKLTemporalDecoder(**random.vae)
        vision = CLIPVisionConfig(**random.image_encoder)
        parts["image_encoder"] = CLIPVisionModelWithProjection(vision)
        parts["feature_extractor"] = CLIPImageProcessor(crop_size=vision.image_size, size=vision.image_size)
        if config.base_kind == "svd":
            parts["scheduler"] = EulerDiscreteScheduler(**(random.scheduler or SVD_SCHEDULER))
    else:
        parts["vae"] = AutoencoderKL(**random.vae)
        text = CLIPTextConfig(**random.text_encoder)
        parts["text_encoder"] = CLIPTextModel(text)
        parts["tokenizer"] = character_tokenizer(work_dir / "tokenizer", text.max_position_embeddings)
    return unet, scheduler_config, parts


def character_tokenizer(folder: Path, max_length: int) -> CLIPTokenizer:
    """A CLIP tokenizer over single lower-case letters (a random text encoder needs no real vocabulary)."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in string.ascii_lowercase:
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length)
