"""Tiny randomly initialised models for the video-model tests (no hub access; built from configs here).

GroupNorm in the SVD blocks is fixed at 32 groups, so widths are multiples of 32.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLTemporalDecoder,
    EulerDiscreteScheduler,
    StableVideoDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPImageProcessor, CLIPTokenizer, CLIPVisionConfig, CLIPVisionModelWithProjection

# The real pipelines' scheduler configs, re-exported for the tests.
from svd.train.components import SD21_SCHEDULER, SVD_SCHEDULER, character_tokenizer  # noqa: F401

CROSS_DIM = 32
LATENT = 8  # latent height and width used in the UNet tests

# SD 2.x: linear attention projections, heads per block. SD 1.x: 1x1-conv projections, one head count.
SD_KINDS = {
    "sd2": {"attention_head_dim": (2, 4), "use_linear_projection": True, "upcast_attention": True},
    "sd1": {"attention_head_dim": 2, "use_linear_projection": False},
}

# stable-diffusion-v1-5 (epsilon prediction).
SD15_SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}


def sd_unet_config(kind: str = "sd2", **overrides) -> dict:
    return {
        "sample_size": LATENT,
        "block_out_channels": (32, 64),
        "layers_per_block": 1,
        "cross_attention_dim": CROSS_DIM,
        "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
        **SD_KINDS[kind],
        **overrides,
    }


def sd_unet(kind: str = "sd2", seed: int = 0, **overrides) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(**sd_unet_config(kind, **overrides)).eval()


def svd_pipeline(unet) -> StableVideoDiffusionPipeline:
    """An SVD pipeline around `unet` with a tiny VAE (downsampling 2x) and a tiny CLIP image encoder.

    The CLIP encoder takes 224 px like the real one: the pipeline resizes conditioning images to 224.
    """
    torch.manual_seed(1)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        latent_channels=4,
    )
    vision = CLIPVisionConfig(
        hidden_size=32,
        projection_dim=CROSS_DIM,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=224,
        intermediate_size=37,
        patch_size=32,
    )
    pipeline = StableVideoDiffusionPipeline(
        vae=vae.eval(),
        image_encoder=CLIPVisionModelWithProjection(vision).eval(),
        unet=unet.eval(),
        scheduler=EulerDiscreteScheduler(**SVD_SCHEDULER),
        feature_extractor=CLIPImageProcessor(crop_size=224, size=224),
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def tokenizer(folder: Path, max_length: int = 16) -> CLIPTokenizer:
    """A character-level CLIP tokenizer (lower-case letters), written to `folder`."""
    return character_tokenizer(folder, max_length)


def frames_per_image(sd, x: torch.Tensor, timestep, context: torch.Tensor) -> torch.Tensor:
    """Ground truth: the SD UNet applied to each frame of x (batch, frames, C, h, w) on its own."""
    batch, frames = x.shape[:2]
    flat = sd(x.flatten(0, 1), timestep, encoder_hidden_states=context.repeat_interleave(frames, dim=0)).sample
    return flat.reshape(batch, frames, *flat.shape[1:])
