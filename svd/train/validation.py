"""Validation videos: a fixed conditioning image (or prompt) and seed, sampled every `validation.every` steps.

Image-to-video goes through diffusers' own `StableVideoDiffusionPipeline` (what the export is loaded with);
text-to-video through the Euler loop below, the same scheduler, with classifier-free guidance on the empty
prompt, decoding frame by frame with the SD VAE.
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import torch
from diffusers import StableVideoDiffusionPipeline

from svd.model.conditioning import added_time_ids, unet_sample
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
            frames = text_to_video(
                components,
                unet,
                config.prompt,
                height=height,
                width=width,
                num_frames=num_frames,
                steps=config.num_inference_steps,
                guidance_scale=config.guidance_scale,
                fps=config.fps,
                motion_bucket_id=config.motion_bucket_id,
                generator=generator,
                device=device,
            )
    finally:
        unet.train(was_training)
    return (np.clip(np.asarray(frames), 0, 1) * 255).round().astype(np.uint8)


def text_to_video(
    components: Components,
    unet,
    prompt: str,
    *,
    height: int,
    width: int,
    num_frames: int,
    steps: int,
    guidance_scale: float,
    fps: int,
    motion_bucket_id: int,
    generator: torch.Generator,
    device: torch.device,
) -> np.ndarray:
    """Euler sampling of an inflated SD on a caption: (F, H, W, 3) floats in [0, 1]."""
    scheduler, vae = components.scheduler, components.vae
    context = components.conditioner([prompt, ""])["encoder_hidden_states"].to(device)
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    shape = (1, num_frames, vae.config.latent_channels, height // scale, width // scale)
    latents = torch.randn(shape, generator=generator).to(device) * scheduler.init_noise_sigma
    ids = added_time_ids(fps, motion_bucket_id, 0.0, batch_size=2, device=device)
    scheduler.set_timesteps(steps, device=device)
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(torch.cat([latents] * 2), t)
        output = unet(unet_sample(model_input, None), t, encoder_hidden_states=context, added_time_ids=ids).sample
        conditional, unconditional = output.chunk(2)
        output = unconditional + guidance_scale * (conditional - unconditional)
        latents = scheduler.step(output, t, latents, generator=generator).prev_sample
    pixels = vae.decode(latents[0] / vae.config.scaling_factor).sample  # (F, 3, H, W)
    return ((pixels.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()
