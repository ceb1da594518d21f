"""`VideoGenerator`: an SVD-layout model loaded once, turning batches of still images into videos.

Each call reads as the pipeline's numbered steps. Random numbers are drawn exactly as diffusers'
`StableVideoDiffusionPipeline` draws them when given one CPU generator per image: the noise augmentation of the
conditioning image, then the initial latents, each from that image's generator (seed + index). So a video does
not depend on the batch it was made in, and it equals the pipeline's for the same weights, seed and settings.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import PIL.Image
import torch
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from svd.generate.options import LoadOptions, SampleSettings, round_size
from svd.generate.sampler import EulerSampler, Schedule
from svd.model.conditioning import ImageConditioner, added_time_ids, check_added_time_ids
from svd.model.loading import SVDComponents, load_svd
from svd.model.lora import load_adapter


@dataclass
class GeneratedVideos:
    frames: np.ndarray  # (batch, frames, height, width, 3) float32 in [0, 1]
    conditions: list[PIL.Image.Image]  # each conditioning image as the VAE saw it (height x width, before noise)
    seeds: list[int]
    timings: dict[str, float] = field(default_factory=dict)  # seconds: encode, sample, decode


class VideoGenerator:
    """The UNet, VAE, CLIP image encoder and scheduler config of one checkpoint, ready to sample."""

    def __init__(self, parts: SVDComponents, options: LoadOptions | None = None) -> None:
        self.options = options or LoadOptions()
        self.device = self.options.resolved_device()
        self.dtype = self.options.resolved_dtype()
        self.unet, self.vae, self.image_encoder = parts.unet, parts.vae, parts.image_encoder
        self.scheduler = parts.scheduler
        check_added_time_ids(self.unet)
        for module in (self.unet, self.vae, self.image_encoder):
            module.requires_grad_(False).eval()
            if module.dtype != self.dtype:
                module.to(self.dtype)
        # As the pipeline: an fp16 VAE with force_upcast encodes in fp32 (the encoder overflows in fp16);
        # here only the encoder is kept in fp32, so the VAE is never converted back and forth.
        if self.dtype == torch.float16 and self.vae.config.force_upcast:
            self.vae.encoder.float()
            self.vae.quant_conv.float()
        self.conditioner = ImageConditioner(self.image_encoder, parts.feature_extractor, self.vae)
        if self.options.lora:
            load_adapter(self.unet, self.options.lora, self.options.lora_scale)  # merged: no cost per step
        cuda = self.device.type == "cuda"
        if self.options.channels_last if self.options.channels_last is not None else cuda:
            _channels_last(self.unet)
            _channels_last(self.vae)
        if self.options.fuse_qkv if self.options.fuse_qkv is not None else cuda:
            self.unet.fuse_qkv_projections()
        if self.options.forward_chunking:
            # One frame at a time in the spatial blocks (dim 0: batch x frames); the temporal blocks chunk over frames.
            self.unet.enable_forward_chunking(chunk_size=1, dim=0)
        if not self.options.cpu_offload:
            for module in (self.unet, self.vae, self.image_encoder):
                module.to(self.device)
        self.unet_forward = torch.compile(self.unet) if self.options.compile else self.unet
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.size_multiple = size_multiple(self.unet.config, self.vae.config)

    @classmethod
    def from_pretrained(cls, source: str, options: LoadOptions | None = None) -> VideoGenerator:
        """Load a diffusers SVD folder or hub id (ModelSourceError, one line, when it cannot be read)."""
        options = options or LoadOptions()
        return cls(load_svd(source, dtype=options.resolved_dtype()), options)

    def resolve(self, settings: SampleSettings) -> SampleSettings:
        """`settings` with the frame count filled in from the UNet config and sizes this model can take."""
        settings.check()
        return replace(
            settings,
            num_frames=settings.num_frames or self.unet.config.num_frames,
            height=round_size(settings.height, self.size_multiple, "height"),
            width=round_size(settings.width, self.size_multiple, "width"),
        )

    @torch.no_grad()
    def __call__(
        self,
        images: Sequence[PIL.Image.Image],
        seeds: Sequence[int],
        settings: SampleSettings,
        *,
        progress: bool = False,
    ) -> GeneratedVideos:
        # 1. Check inputs.
        settings = self.resolve(settings)
        if len(images) != len(seeds) or not images:
            raise ValueError(f"{len(images)} images and {len(seeds)} seeds: need one seed per image, and an image")
        timings: dict[str, float] = {}
        clock = self._clock()
        frames, height, width = settings.num_frames, settings.height, settings.width
        generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
        # 2. Conditioning images: the CLIP branch sees the image as given (the pipeline resizes it to 224 with
        # antialiasing), the VAE branch sees it resized to height x width with Lanczos (the pipeline's
        # VideoProcessor.preprocess), both in [-1, 1].
        images = [image.convert("RGB") for image in images]
        conditions = [image.resize((width, height), PIL.Image.Resampling.LANCZOS) for image in images]
        # 3. CLIP image embeddings (B, 1, D).
        with self._running(self.image_encoder):
            embeddings = torch.cat([self.conditioner.clip_embedding(_pixels(image)) for image in images])
        embeddings = embeddings.to(self.device, self.dtype)
        # 4. Noise-augmented VAE latents of the conditioning images (B, C, h, w), not scaled (SVD).
        with self._running(self.vae):
            latents_of_image = torch.cat(
                [
                    self.conditioner.condition_latents(_pixels(condition), settings.noise_aug_strength, generator=g)
                    for condition, g in zip(conditions, generators, strict=True)
                ]
            )
        latents_of_image = latents_of_image.to(self.device, self.dtype)
        # 5. Micro-conditioning: fps - 1, motion bucket, noise augmentation strength.
        time_ids = added_time_ids(
            settings.fps,
            settings.motion_bucket_id,
            settings.noise_aug_strength,
            batch_size=len(images),
            dtype=self.dtype,
            device=self.device,
        )
        # 6. Initial latents, after the augmentation noise in each image's generator.
        schedule = Schedule.from_scheduler(self.scheduler, settings.steps)
        shape = (
            1,
            frames,
            self.vae.config.latent_channels,
            height // self.vae_scale_factor,
            width // self.vae_scale_factor,
        )
        latents = torch.cat(
            [randn_tensor(shape, generator=g, device=self.device, dtype=self.dtype) for g in generators]
        )
        latents = latents * schedule.init_noise_sigma
        timings["encode"] = clock()
        # 7. Denoising loop.
        sampler = EulerSampler(schedule, cfg=settings.cfg)
        with (
            self._running(self.unet),
            tqdm(total=settings.steps, disable=not progress, desc="steps", leave=False) as bar,
        ):
            latents = sampler(
                self.unet_forward,
                latents,
                image_embeddings=embeddings,
                condition_latents=latents_of_image,
                added_time_ids=time_ids,
                min_guidance=settings.min_guidance,
                max_guidance=settings.max_guidance,
                callback=lambda _: bar.update(),
            )
        timings["sample"] = clock()
        # 8. Decode each video in chunks of frames (the temporal decoder mixes the frames of a chunk).
        with self._running(self.vae):
            video = np.stack([self._decode(one, settings.decode_chunk_size or frames) for one in latents])
        timings["decode"] = clock()
        return GeneratedVideos(frames=video, conditions=conditions, seeds=list(seeds), timings=timings)

    def _decode(self, latents: torch.Tensor, chunk_size: int) -> np.ndarray:
        """(F, C, h, w) latents -> (F, H, W, 3) float32 frames in [0, 1], on the CPU."""
        latents = latents / self.vae.config.scaling_factor
        frames = []
        for start in range(0, latents.shape[0], chunk_size):
            chunk = latents[start : start + chunk_size].to(self.device, self.vae.decoder.conv_in.weight.dtype)
            pixels = self.vae.decode(chunk, num_frames=chunk.shape[0]).sample.float()
            frames.append((pixels / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu())
        return torch.cat(frames).numpy()

    @contextmanager
    def _running(self, module: torch.nn.Module) -> Iterator[None]:
        """With CPU offload, `module` is on the device only while it runs."""
        if not self.options.cpu_offload:
            yield
            return
        module.to(self.device)
        try:
            yield
        finally:
            module.to("cpu")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def _clock(self):
        """Seconds since the previous call (device work included)."""
        last = [time.perf_counter()]

        def lap() -> float:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            now = time.perf_counter()
            elapsed, last[0] = now - last[0], now
            return elapsed

        return lap


def size_multiple(unet_config, vae_config) -> int:
    """Heights and widths must survive the VAE's and every UNet level's downsampling: 64 px for SVD."""
    return 2 ** (len(vae_config["block_out_channels"]) - 1) * 2 ** (len(unet_config["down_block_types"]) - 1)


def _channels_last(module: torch.nn.Module) -> None:
    """2D convolution weights in NHWC (faster cuDNN kernels in half precision); the 3D temporal ones stay."""
    for layer in module.modules():
        if isinstance(layer, torch.nn.Conv2d):
            layer.weight.data = layer.weight.data.contiguous(memory_format=torch.channels_last)


def _pixels(image: PIL.Image.Image) -> torch.Tensor:
    """(1, 3, H, W) float32 in [-1, 1], as diffusers' image processors make them."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0) * 2.0 - 1.0
