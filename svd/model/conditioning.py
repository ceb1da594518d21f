"""What the SVD UNet is conditioned on, for image-to-video and for text-to-video.

Image-to-video, as SVD and diffusers' `StableVideoDiffusionPipeline` do it:
  - cross-attention: the CLIP image embedding of the conditioning frame, one token, (batch, 1, dim);
  - channel concat: the conditioning frame's VAE latent (the distribution's mode, *not* multiplied by the VAE
    scaling factor), encoded after adding `noise_aug_strength` Gaussian noise to its pixels, repeated on
    every frame and concatenated after the noisy latent's channels;
  - micro-conditioning through `added_time_ids`: (fps - 1, motion_bucket_id, noise_aug_strength).
Text-to-video (the video-pretraining stage on captions): the text encoder's hidden states for cross-attention,
and zeros in the conditioning-latent channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import AutoencoderKLTemporalDecoder
from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import _resize_with_antialiasing
from torch import Tensor
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

ADDED_TIME_IDS = ("fps", "motion_bucket_id", "noise_aug_strength")


def added_time_ids(
    fps: float | Tensor,
    motion_bucket_id: float | Tensor,
    noise_aug_strength: float | Tensor,
    *,
    batch_size: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Tensor:
    """(batch, 3) added time ids; each argument is one number or one per video.

    `fps` is the clip's real frame rate: SVD was conditioned on fps - 1, which diffusers' pipeline also
    subtracts before building these ids (generative-models, scripts/sampling/simple_video_sample.py).
    """
    values = [fps, motion_bucket_id, noise_aug_strength]
    columns = [torch.as_tensor(value, dtype=torch.float64).reshape(-1).expand(batch_size) for value in values]
    columns[0] = columns[0] - 1
    return torch.stack(columns, dim=1).to(device=device, dtype=dtype)


def check_added_time_ids(unet) -> None:
    """The UNet's `add_embedding` must take exactly the three SVD ids (the pipeline's own check)."""
    expected = unet.add_embedding.linear_1.in_features
    passed = unet.config.addition_time_embed_dim * len(ADDED_TIME_IDS)
    if expected != passed:
        raise ValueError(
            f"UNet add_embedding takes {expected} inputs, but {len(ADDED_TIME_IDS)} added time ids x "
            f"addition_time_embed_dim {unet.config.addition_time_embed_dim} make {passed}"
        )


def unet_sample(noisy_input: Tensor, condition_latents: Tensor | None) -> Tensor:
    """The UNet's `sample`: (batch, frames, 2C, h, w), the conditioning latent after the noisy one.

    `condition_latents` is (batch, C, h, w), repeated on every frame, or None for text-to-video (zeros).
    """
    if condition_latents is None:
        return torch.cat([noisy_input, torch.zeros_like(noisy_input)], dim=2)
    frames = condition_latents.unsqueeze(1).expand(-1, noisy_input.shape[1], -1, -1, -1)
    return torch.cat([noisy_input, frames.to(noisy_input.dtype)], dim=2)


class ImageConditioner:
    """CLIP embedding and noise-augmented VAE latent of conditioning frames; loaded once, called per batch."""

    def __init__(
        self,
        image_encoder: CLIPVisionModelWithProjection,
        feature_extractor: CLIPImageProcessor,
        vae: AutoencoderKLTemporalDecoder,
    ) -> None:
        self.image_encoder = image_encoder
        self.vae = vae
        self.size = image_encoder.config.image_size
        self.mean = torch.tensor(feature_extractor.image_mean).reshape(1, 3, 1, 1)
        self.std = torch.tensor(feature_extractor.image_std).reshape(1, 3, 1, 1)

    @torch.no_grad()
    def clip_embedding(self, images: Tensor) -> Tensor:
        """(batch, 3, H, W) pixels in [-1, 1] -> (batch, 1, dim) image embeddings for cross-attention."""
        # As the pipeline and the original code: resize with antialiasing in [-1, 1], then CLIP-normalise.
        pixels = _resize_with_antialiasing(images.float(), (self.size, self.size))
        pixels = ((pixels + 1.0) / 2.0 - self.mean.to(pixels.device)) / self.std.to(pixels.device)
        parameter = next(self.image_encoder.parameters())
        embeds = self.image_encoder(pixels.to(device=parameter.device, dtype=parameter.dtype)).image_embeds
        return embeds.unsqueeze(1)

    @torch.no_grad()
    def condition_latents(
        self, images: Tensor, noise_aug_strength: float | Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """(batch, 3, H, W) pixels in [-1, 1] -> (batch, C, H/8, W/8) latents of the noise-augmented frames."""
        noise = torch.randn(
            images.shape, generator=generator, device=generator.device if generator is not None else images.device
        )
        strength = torch.as_tensor(noise_aug_strength, dtype=images.dtype, device=images.device).reshape(-1, 1, 1, 1)
        augmented = images + strength * noise.to(images.device)
        parameter = next(self.vae.parameters())
        with torch.autocast(parameter.device.type, enabled=False):  # the VAE's own dtype (see posterior_moments)
            return self.vae.encode(augmented.to(device=parameter.device, dtype=parameter.dtype)).latent_dist.mode()

    @torch.no_grad()
    def video_latents(self, frames: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """(batch, frames, 3, H, W) pixels in [-1, 1] -> (batch, frames, C, H/8, W/8) training targets x0.

        Sampled from the posterior and scaled by the VAE's `scaling_factor`, which the pipeline divides out
        before decoding.
        """
        parameter = next(self.vae.parameters())
        flat = frames.flatten(0, 1).to(device=parameter.device, dtype=parameter.dtype)
        latents = self.vae.encode(flat).latent_dist.sample(generator) * self.vae.config.scaling_factor
        return latents.reshape(*frames.shape[:2], *latents.shape[1:])

    def __call__(
        self, images: Tensor, noise_aug_strength: float | Tensor, *, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        return {
            "encoder_hidden_states": self.clip_embedding(images),
            "condition_latents": self.condition_latents(images, noise_aug_strength, generator=generator),
        }


class TextConditioner:
    """Text encoder hidden states of captions, exactly as diffusers' SD pipelines encode a prompt."""

    def __init__(self, tokenizer, text_encoder) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder

    @torch.no_grad()
    def __call__(self, captions: Sequence[str]) -> dict[str, Tensor]:
        tokens = self.tokenizer(
            list(captions),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        device = next(self.text_encoder.parameters()).device
        mask = None
        if getattr(self.text_encoder.config, "use_attention_mask", False):
            mask = tokens.attention_mask.to(device)
        hidden = self.text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]
        return {"encoder_hidden_states": hidden, "condition_latents": None}
