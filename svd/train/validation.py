"""Validation videos: a fixed conditioning image (or prompt) and seed, sampled every `validation.every` steps.

Image-to-video goes through diffusers' own `StableVideoDiffusionPipeline` (what the export is loaded with);
text-to-video through `svd generate`'s `TextVideoGenerator` (what samples the export), Euler on the same scheduler,
with classifier-free guidance on the empty prompt.
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import torch
from diffusers import StableVideoDiffusionPipeline

from svd.generate.options import LoadOptions, SampleSettings
from svd.generate.text_generator import TextVideoGenerator
from svd.model.loading import TextToVideoComponents
from svd.train.components import Components
from svd.train.config import ValidationConfig


@torch.no_grad()
def validation_video(
    components: Components,
    unet,
    config: ValidationConfig,
    image: PIL.Image.Image | None,
    *,
    height: int,
    width: int,
    num_frames: int,
    device: torch.device,
) -> np.ndarray:
    """(F, H, W, 3) uint8 frames from the fixed conditioning."""
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    was_training = unet.training
    unet.eval()
    try:
        if "image_encoder" in components.parts:
            pipeline = StableVideoDiffusionPipeline(
                vae=components.parts["vae"],
                image_encoder=components.parts["image_encoder"],
                unet=unet,
                scheduler=components.scheduler,
                feature_extractor=components.parts["feature_extractor"],
            )
            pipeline.set_progress_bar_config(disable=True)
            frames = pipeline(
                image,
                height=height,
                width=width,
                num_frames=num_frames,
                num_inference_steps=config.num_inference_steps,
                min_guidance_scale=1.0,
                max_guidance_scale=config.guidance_scale,
                fps=config.fps,
                motion_bucket_id=config.motion_bucket_id,
                noise_aug_strength=config.noise_aug_strength,
                decode_chunk_size=4,
                generator=generator,
                output_type="np",
            ).frames[0]
        else:
            parts = TextToVideoComponents(
                unet,
                components.vae,
                components.parts["text_encoder"],
                components.parts["tokenizer"],
                components.scheduler,
            )
            # fp32 and no layout or fusion changes: this is the UNet being trained.
            options = LoadOptions(device=str(device), dtype="fp32", channels_last=False, fuse_qkv=False)
            settings = SampleSettings(
                num_frames=num_frames,
                steps=config.num_inference_steps,
                fps=config.fps,
                motion_bucket_id=config.motion_bucket_id,
                guidance_scale=config.guidance_scale,
                height=height,
                width=width,
            )
            frames = TextVideoGenerator(parts, options)([config.prompt], [config.seed], settings).frames[0]
    finally:
        unet.train(was_training)
    return (np.clip(np.asarray(frames), 0, 1) * 255).round().astype(np.uint8)
