"""Read SD UNets and official SVD checkpoints; write SVD UNets in diffusers layout (safetensors).

Sources are diffusers folders or hub ids (the defaults name the real models). A folder is checked before
anything heavy is read, so a wrong path gives one line that says what the folder lacks.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLTemporalDecoder,
    DDPMScheduler,
    EulerDiscreteScheduler,
    UNet2DConditionModel,
    UNetSpatioTemporalConditionModel,
)
from transformers import CLIPImageProcessor, CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

SD_DEFAULT = "stabilityai/stable-diffusion-2-1"
SVD_DEFAULT = "stabilityai/stable-video-diffusion-img2vid-xt"
SVD_PARTS = ("unet", "vae", "image_encoder", "feature_extractor", "scheduler")
TEXT_TO_VIDEO_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelSourceError(ValueError):
    """A model source that cannot be read: one line naming the source and what is wrong with it."""


@dataclass
class SVDComponents:
    """The parts of an official SVD checkpoint that training and generation use."""

    unet: UNetSpatioTemporalConditionModel
    vae: AutoencoderKLTemporalDecoder
    image_encoder: CLIPVisionModelWithProjection
    feature_extractor: CLIPImageProcessor
    scheduler: EulerDiscreteScheduler


def load_sd_unet(
    source: str = SD_DEFAULT, *, dtype: torch.dtype | None = None
) -> tuple[UNet2DConditionModel, dict[str, Any] | None]:
    """An SD `UNet2DConditionModel` and its pipeline's scheduler config (None when there is none beside it).

    `source`: a diffusers UNet folder, an SD pipeline folder (its `unet/` is used) or the hub id of an SD pipeline.
    """
    path = Path(source)
    if path.exists():
        if not path.is_dir():
            raise ModelSourceError(f"{source}: not a folder (expected a diffusers UNet or SD pipeline folder)")
        if (path / "config.json").is_file():
            unet_dir, scheduler_dir = path, (path.parent / "scheduler" if path.name == "unet" else None)
        elif (path / "unet" / "config.json").is_file():
            unet_dir, scheduler_dir = path / "unet", path / "scheduler"
        else:
            raise ModelSourceError(
                f"{source}: neither a diffusers UNet folder (config.json) nor an SD pipeline folder (unet/config.json)"
            )
        _check_class(unet_dir / "config.json", "UNet2DConditionModel", source)
        scheduler_file = scheduler_dir / "scheduler_config.json" if scheduler_dir else None
        scheduler = _read_json(scheduler_file) if scheduler_file and scheduler_file.is_file() else None
        return _from_pretrained(UNet2DConditionModel, str(unet_dir), None, dtype), scheduler
    if not _HUB_ID.match(source):
        raise ModelSourceError(f"{source}: no such folder (and not a hub id like stabilityai/stable-diffusion-2-1)")
    # A hub id names an SD pipeline repository; its unet/ is used.
    config = _hub(lambda: UNet2DConditionModel.load_config(source, subfolder="unet"), source)
    _check_class_name(config.get("_class_name"), "UNet2DConditionModel", source)
    try:
        scheduler = dict(DDPMScheduler.load_config(source, subfolder="scheduler"))
    except OSError:
        scheduler = None
    return _from_pretrained(UNet2DConditionModel, source, "unet", dtype), scheduler


def load_svd(
    source: str = SVD_DEFAULT, *, dtype: torch.dtype | None = None, variant: str | None = None
) -> SVDComponents:
    """An official SVD checkpoint in diffusers layout (unet/, vae/, image_encoder/, feature_extractor/, scheduler/).

    `variant="fp16"` reads the hub's half-precision files where a checkpoint has them.
    """
    path = Path(source)
    if path.exists():
        missing = [part for part in SVD_PARTS if not (path / part).is_dir()]
        if missing:
            raise ModelSourceError(
                f"{source}: not an SVD checkpoint folder, it lacks {', '.join(part + '/' for part in missing)}"
            )
        _check_class(path / "unet" / "config.json", "UNetSpatioTemporalConditionModel", source)
    elif not _HUB_ID.match(source):
        raise ModelSourceError(f"{source}: no such folder (and not a hub id like {SVD_DEFAULT})")
    weights = {"torch_dtype": dtype, "variant": variant}
    return SVDComponents(
        unet=_hub(
            lambda: UNetSpatioTemporalConditionModel.from_pretrained(source, subfolder="unet", **weights), source
        ),
        vae=_hub(lambda: AutoencoderKLTemporalDecoder.from_pretrained(source, subfolder="vae", **weights), source),
        image_encoder=_hub(
            lambda: CLIPVisionModelWithProjection.from_pretrained(
                source, subfolder="image_encoder", dtype=dtype, variant=variant
            ),
            source,
        ),
        feature_extractor=_hub(
            lambda: CLIPImageProcessor.from_pretrained(source, subfolder="feature_extractor"), source
        ),
        scheduler=_hub(lambda: EulerDiscreteScheduler.from_pretrained(source, subfolder="scheduler"), source),
    )


@dataclass
class TextToVideoComponents:
    """The parts of a `svd train` text-to-video export: an inflated SD with SD's VAE, text encoder and scheduler."""

    unet: UNetSpatioTemporalConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler: EulerDiscreteScheduler


def is_text_to_video(source: str | Path) -> bool:
    """A folder with a text encoder and no image encoder: what `svd train` exports for model.conditioning text."""
    path = Path(source)
    return path.is_dir() and (path / "text_encoder").is_dir() and not (path / "image_encoder").is_dir()


def load_text_to_video(source: str, *, dtype: torch.dtype | None = None) -> TextToVideoComponents:
    """A text-to-video export folder (unet/, vae/, text_encoder/, tokenizer/, scheduler/), checked first."""
    path = Path(source)
    if not path.is_dir():
        raise ModelSourceError(f"{source}: no such folder (a text-to-video model is a folder `svd train` exported)")
    missing = [part for part in TEXT_TO_VIDEO_PARTS if not (path / part).is_dir()]
    if missing:
        raise ModelSourceError(
            f"{source}: not a text-to-video export, it lacks {', '.join(part + '/' for part in missing)}"
        )
    _check_class(path / "unet" / "config.json", "UNetSpatioTemporalConditionModel", source)
    return TextToVideoComponents(
        unet=_from_pretrained(UNetSpatioTemporalConditionModel, source, "unet", dtype),
        vae=_from_pretrained(AutoencoderKL, source, "vae", dtype),
        text_encoder=_hub(lambda: CLIPTextModel.from_pretrained(source, subfolder="text_encoder", dtype=dtype), source),
        tokenizer=_hub(lambda: CLIPTokenizer.from_pretrained(source, subfolder="tokenizer"), source),
        scheduler=_hub(lambda: EulerDiscreteScheduler.from_pretrained(source, subfolder="scheduler"), source),
    )


def save_unet(unet: UNetSpatioTemporalConditionModel, output: str | Path) -> Path:
    """Write `unet` as a diffusers folder (config.json + safetensors) that `from_pretrained` reads."""
    unet.save_pretrained(str(output), safe_serialization=True)
    return Path(output)


def _from_pretrained(cls, source: str, subfolder: str | None, dtype: torch.dtype | None):
    return _hub(lambda: cls.from_pretrained(source, subfolder=subfolder, torch_dtype=dtype), source)


def _hub(load, source: str):
    """Run a diffusers/transformers load; turn "not found / not reachable" into one line."""
    try:
        return load()
    except OSError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
            first += " (HF_HUB_OFFLINE is set: only the local cache is read)"
        raise ModelSourceError(f"{source}: cannot be loaded: {first}") from None


def _check_class(config_file: Path, expected: str, source: str) -> None:
    _check_class_name(_read_json(config_file).get("_class_name"), expected, source)


def _check_class_name(found: str | None, expected: str, source: str) -> None:
    if found is not None and found != expected:
        raise ModelSourceError(f"{source}: holds a {found}, not a {expected}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelSourceError(f"{path}: not a readable JSON config ({error})") from None
