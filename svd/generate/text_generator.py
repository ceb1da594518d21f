"""`TextVideoGenerator`: a `svd train` text-to-video export (an inflated SD) turning prompts into videos.

The export is an SVD-layout UNet with SD's VAE, text encoder, tokenizer and scheduler (svd/train/export.py); no
diffusers pipeline drives that combination, so this class is its pipeline. It samples as training conditioned:
the text encoder's hidden states for cross-attention, zeros in the conditioning-latent channels, added time ids
(fps - 1, motion bucket, 0), and classifier-free guidance on the negative prompt (default the empty prompt, which
training's `train.dropout.text` taught the model), one scale for every frame. The samplers are image-to-video's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from svd.generate.denoiser import Branch
from svd.generate.generator import GeneratedVideos, ModelRunner
from svd.generate.options import LoadOptions, SampleSettings
from svd.generate.schedule import Schedule
from svd.model.conditioning import TextConditioner, added_time_ids
from svd.model.loading import TextToVideoComponents, load_text_to_video


class TextVideoGenerator(ModelRunner):
    """The UNet, SD VAE, text encoder, tokenizer and scheduler config of one text-to-video export, ready to sample."""

    def __init__(self, parts: TextToVideoComponents, options: LoadOptions | None = None) -> None:
        super().__init__(parts.unet, parts.vae, [parts.text_encoder], parts.scheduler, options)
        self.text_encoder = parts.text_encoder
        self.conditioner = TextConditioner(parts.tokenizer, parts.text_encoder)

    @classmethod
    def from_pretrained(cls, source: str, options: LoadOptions | None = None) -> TextVideoGenerator:
        """Load an export folder (ModelSourceError, one line, when it cannot be read)."""
        options = options or LoadOptions()
        return cls(load_text_to_video(source, dtype=options.resolved_dtype()), options)

    @torch.no_grad()
    def __call__(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        settings: SampleSettings,
        *,
        negative_prompt: str = "",
        progress: bool = False,
    ) -> GeneratedVideos:
        # 1. Check inputs.
        settings = self.resolve(settings)
        if len(prompts) != len(seeds) or not prompts:
            raise ValueError(f"{len(prompts)} prompts and {len(seeds)} seeds: need one seed per prompt, and a prompt")
        clock = self._clock()
        generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
        # 2. Text hidden states (B, tokens, D) of the prompts and, for guidance, of the negative prompt.
        guided = settings.guidance_scale > 1
        with self._running(self.text_encoder):
            context = self.conditioner(list(prompts))["encoder_hidden_states"]
            negative = self.conditioner([negative_prompt] * len(prompts))["encoder_hidden_states"] if guided else None
        # 3. Micro-conditioning: fps - 1, motion bucket, no noise augmentation (there is no image).
        time_ids = added_time_ids(
            settings.fps, settings.motion_bucket_id, 0.0, batch_size=len(prompts), dtype=self.dtype, device=self.device
        )
        # 4. Initial latents: pure noise from each prompt's generator.
        schedule = Schedule.from_scheduler(self.scheduler, settings.steps, settings.sampler)
        latents = self.initial_noise(settings, generators) * schedule.init_noise_sigma
        timings = {"encode": clock()}
        # 5. Denoising loop.
        latents = self.sample(
            latents,
            schedule,
            settings,
            generators,
            conditional=Branch(context, None),
            unconditional=Branch(negative, None) if guided else None,
            time_ids=time_ids,
            scales=settings.guidance_scale,
            progress=progress,
        )
        timings["sample"] = clock()
        # 6. Decode with the SD VAE, frame by frame in chunks (it has no temporal layers: chunks change nothing).
        with self._running(self.vae):
            video = np.stack([self._decode(one, settings.decode_chunk_size or settings.num_frames) for one in latents])
        timings["decode"] = clock()
        return GeneratedVideos(video, [], list(seeds), timings, steps_run=schedule.steps)

    def _vae_decode(self, chunk: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(chunk).sample
