"""The tiny training config (`configs/train/tiny.yaml`) the `svd train` tests run, pointed at test shards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml
from diffusers import AutoencoderKLTemporalDecoder, UNet2DConditionModel
from tiny_shards import random_square
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

from curation.config_io import load_config
from svd.train.components import SD21_SCHEDULER
from svd.train.config import TrainConfig

TINY = Path(__file__).parents[1] / "configs" / "train" / "tiny.yaml"


def tiny_config(shards: str, *overrides: str) -> TrainConfig:
    """tiny.yaml on `shards` at 16x16, logging every step, then `overrides` (`--set` style)."""
    return load_config(
        TrainConfig, TINY, [f"data.shards={shards}", "data.height=16", "data.width=16", "log.every=1", *overrides]
    )


def tiny_parts(folder: Path) -> tuple[Path, Path]:
    """An SD pipeline folder (unet/, scheduler/) and SVD image parts (vae/, image_encoder/, feature_extractor/),
    from the random configs of configs/train/tiny.yaml, the VAE with a sharp posterior and unit-variance latents."""
    random = yaml.safe_load(TINY.read_text())["model"]["random"]
    torch.manual_seed(0)
    sd, parts = folder / "sd", folder / "parts"
    UNet2DConditionModel(**random["unet"]).save_pretrained(sd / "unet")
    (sd / "scheduler").mkdir(parents=True)
    (sd / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD21_SCHEDULER))
    vae = AutoencoderKLTemporalDecoder(**random["vae"])
    with torch.no_grad():
        channels = vae.config.latent_channels
        vae.quant_conv.weight[channels:] = 0.0
        vae.quant_conv.bias[channels:] = -20.0  # log-variance: posterior std 5e-5
        rng = np.random.default_rng(99)
        clips = np.stack([random_square(rng, 4) for _ in range(32)])
        pixels = torch.from_numpy(clips).flatten(0, 1).permute(0, 3, 1, 2).float() / 127.5 - 1
        spread = vae.encode(pixels).latent_dist.mode().std().item()
    vae.register_to_config(scaling_factor=1.0 / spread)
    vae.save_pretrained(parts / "vae")
    vision = CLIPVisionConfig(**random["image_encoder"])
    CLIPVisionModelWithProjection(vision).save_pretrained(parts / "image_encoder")
    CLIPImageProcessor(crop_size=vision.image_size, size=vision.image_size).save_pretrained(parts / "feature_extractor")
    return sd, parts


def assert_same_checkpoints(first: Path, second: Path, step: int) -> None:
    """The trainable weights, EMA and optimizer state of two runs' step-`step` checkpoints agree (to 1e-5)."""
    from safetensors.torch import load_file

    for name in ("trainable", "ema", "optimizer"):
        a = load_file(first / "checkpoints" / f"step-{step:08d}" / f"{name}.safetensors")
        b = load_file(second / "checkpoints" / f"step-{step:08d}" / f"{name}.safetensors")
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)
