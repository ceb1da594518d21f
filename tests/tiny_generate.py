"""Tiny random SVD checkpoints and images for the `svd generate` tests (built from configs, nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import StableVideoDiffusionPipeline, UNetSpatioTemporalConditionModel
from tiny_models import CROSS_DIM, svd_pipeline

from svd.model.loading import SVDComponents

FRAMES = 3  # the UNet config's frame count: what `svd generate` makes without --num-frames


def tiny_svd_unet(seed: int = 0, num_frames: int = FRAMES) -> UNetSpatioTemporalConditionModel:
    """An SVD-layout UNet with two levels (32/64 channels): sizes are multiples of 4 px with the tiny VAE."""
    torch.manual_seed(seed)
    return UNetSpatioTemporalConditionModel(
        sample_size=16,
        in_channels=8,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=CROSS_DIM,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        num_attention_heads=(2, 4),
        addition_time_embed_dim=32,
        projection_class_embeddings_input_dim=3 * 32,
        num_frames=num_frames,
    ).eval()


def tiny_svd_pipeline(seed: int = 0) -> StableVideoDiffusionPipeline:
    return svd_pipeline(tiny_svd_unet(seed))


def components(pipeline: StableVideoDiffusionPipeline) -> SVDComponents:
    return SVDComponents(
        unet=pipeline.unet,
        vae=pipeline.vae,
        image_encoder=pipeline.image_encoder,
        feature_extractor=pipeline.feature_extractor,
        scheduler=pipeline.scheduler,
    )


def save_tiny_svd(folder: Path) -> Path:
    """A diffusers SVD checkpoint folder (model_index.json, unet/, vae/, ...) as the hub's."""
    tiny_svd_pipeline().save_pretrained(str(folder), safe_serialization=True)
    return folder


def random_image(path: Path | None = None, size: tuple[int, int] = (48, 40), seed: int = 0) -> PIL.Image.Image:
    """A smooth random RGB image of `size` (width, height), written to `path` when given."""
    rng = np.random.default_rng(seed)
    small = PIL.Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    image = small.resize(size, PIL.Image.Resampling.BICUBIC)
    if path is not None:
        image.save(path)
    return image
