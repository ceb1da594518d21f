"""`VideoGenerator`: an SVD-layout image-to-video model loaded once, turning batches of still images into videos.

Each call reads as the pipeline's numbered steps. Random numbers are drawn exactly as diffusers'
`StableVideoDiffusionPipeline` draws them when given one CPU generator per image: the noise augmentation of the
conditioning image, then the initial latents, each from that image's generator (seed + index), then any noise the
sampler adds. So a video does not depend on the batch it was made in, and with the default Euler sampler it equals
the pipeline's for the same weights, seed and settings.

`ModelRunner` holds what every generator shares: where the parts run (device, dtype, offload), the UNet's speed
options, the sampling loop and the clock; `svd.generate.text_generator` is its text-to-video sibling.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import PIL.Image
import torch
from diffusers.models.attention_processor import Attention, FusedAttnProcessor2_0
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from svd.generate.denoiser import Branch, GuidedDenoiser, guidance_scales
from svd.generate.options import LoadOptions, SampleSettings, round_size
from svd.generate.sampler import make_sampler
from svd.generate.schedule import Schedule
from svd.model.conditioning import ImageConditioner, added_time_ids, check_added_time_ids
from svd.model.loading import SVDComponents, load_svd
from svd.model.lora import load_adapter


@dataclass
class GeneratedVideos:
    frames: np.ndarray  # (batch, frames, height, width, 3) float32 in [0, 1]
    conditions: list[PIL.Image.Image]  # each conditioning image as the VAE saw it (empty for text-to-video)
    seeds: list[int]
    timings: dict[str, float] = field(default_factory=dict)  # seconds: encode, sample, decode
    steps_run: int = 0  # sampler steps (fewer than settings.steps for video-to-video below strength 1)


class ModelRunner:
    """A UNet, a VAE and the encoders of one checkpoint on their device, with the sampling loop they share."""

    def __init__(self, unet, vae, encoders: Sequence[torch.nn.Module], scheduler, options: LoadOptions | None) -> None:
        self.options = options or LoadOptions()
        self.device = self.options.resolved_device()
        self.dtype = self.options.resolved_dtype()
        self.unet, self.vae, self.scheduler = unet, vae, scheduler
        check_added_time_ids(self.unet)
        self.modules = [self.unet, self.vae, *encoders]
        for module in self.modules:  # (sampling runs under no_grad: requires_grad is left as it is, for validation)
            module.eval()
            if module.dtype != self.dtype:
                module.to(self.dtype)
        if self.options.lora:
            load_adapter(self.unet, self.options.lora, self.options.lora_scale)  # merged: no cost per step
        cuda = self.device.type == "cuda"
        if self.options.channels_last if self.options.channels_last is not None else cuda:
            _channels_last(self.unet)
            _channels_last(self.vae)
        if self.options.fuse_qkv if self.options.fuse_qkv is not None else cuda:
            fuse_qkv(self.unet)
        if self.options.forward_chunking:
            # One frame at a time in the spatial blocks (dim 0: batch x frames); the temporal blocks chunk over frames.
            self.unet.enable_forward_chunking(chunk_size=1, dim=0)
        if not self.options.cpu_offload:
            for module in self.modules:
                module.to(self.device)
        self.unet_forward = torch.compile(self.unet) if self.options.compile else self.unet
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.size_multiple = size_multiple(self.unet.config, self.vae.config)

    def resolve(self, settings: SampleSettings) -> SampleSettings:
        """`settings` with the frame count filled in from the UNet config and sizes this model can take."""
        settings.check()
        resolved = replace(
            settings,
            num_frames=settings.num_frames or self.unet.config.num_frames,
            height=round_size(settings.height, self.size_multiple, "height"),
            width=round_size(settings.width, self.size_multiple, "width"),
        )
        resolved.check()  # the rules that need the frame count (a segment's overlap)
        return resolved

    def latent_shape(self, settings: SampleSettings) -> tuple[int, int, int, int, int]:
        """(1, F, C, h, w): one video's latents."""
        scale = self.vae_scale_factor
        channels = self.vae.config.latent_channels
        return (1, settings.num_frames, channels, settings.height // scale, settings.width // scale)

    def initial_noise(self, settings: SampleSettings, generators: Sequence[torch.Generator]) -> torch.Tensor:
        """(B, F, C, h, w) standard normal noise, each video's from its generator (as the pipeline draws it)."""
        shape = self.latent_shape(settings)
        return torch.cat([randn_tensor(shape, generator=g, device=self.device, dtype=self.dtype) for g in generators])

    def sample(
        self,
        latents: torch.Tensor,
        schedule: Schedule,
        settings: SampleSettings,
        generators: Sequence[torch.Generator],
        *,
        conditional: Branch,
        unconditional: Branch | None,
        time_ids: torch.Tensor,
        scales: torch.Tensor | float,
        progress: bool,
    ) -> torch.Tensor:
        """The denoising loop of `settings.sampler` from `latents` at schedule.sigmas[0]."""
        denoiser = GuidedDenoiser(
            self.unet_forward,
            conditional=conditional,
            unconditional=unconditional,
            added_time_ids=time_ids,
            scales=scales,
            prediction_type=schedule.prediction_type,
            latent_shape=tuple(latents.shape),
            dtype=self.dtype,
            device=self.device,
            cfg=settings.cfg,
        )
        sampler = make_sampler(settings.sampler, s_churn=settings.s_churn)
        with (
            self._running(self.unet),
            tqdm(total=schedule.steps, disable=not progress, desc="steps", leave=False) as bar,
        ):
            return sampler(denoiser, latents, schedule, generators=generators, callback=lambda _: bar.update())

    def _decode(self, latents: torch.Tensor, chunk_size: int) -> np.ndarray:
        """(F, C, h, w) latents -> (F, H, W, 3) float32 frames in [0, 1], on the CPU, `chunk_size` frames at a time."""
        latents = latents / self.vae.config.scaling_factor
        frames = []
        for start in range(0, latents.shape[0], chunk_size):
            chunk = latents[start : start + chunk_size].to(self.device, self.vae.decoder.conv_in.weight.dtype)
            pixels = self._vae_decode(chunk).float()
            frames.append((pixels / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu())
        return torch.cat(frames).numpy()

    def _vae_decode(self, chunk: torch.Tensor) -> torch.Tensor:
        """(n, C, h, w) unscaled latents -> (n, 3, H, W) pixels in [-1, 1]."""
        raise NotImplementedError

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


class VideoGenerator(ModelRunner):
    """The UNet, VAE, CLIP image encoder and scheduler config of one SVD checkpoint, ready to sample."""

    def __init__(self, parts: SVDComponents, options: LoadOptions | None = None) -> None:
        super().__init__(parts.unet, parts.vae, [parts.image_encoder], parts.scheduler, options)
        self.image_encoder = parts.image_encoder
        # As the pipeline: an fp16 VAE with force_upcast encodes in fp32 (the encoder overflows in fp16);
        # here only the encoder is kept in fp32, so the VAE is never converted back and forth.
        if self.dtype == torch.float16 and self.vae.config.force_upcast:
            self.vae.encoder.float()
            self.vae.quant_conv.float()
        self.conditioner = ImageConditioner(self.image_encoder, parts.feature_extractor, self.vae)

    @classmethod
    def from_pretrained(cls, source: str, options: LoadOptions | None = None) -> VideoGenerator:
        """Load a diffusers SVD folder or hub id (ModelSourceError, one line, when it cannot be read)."""
        options = options or LoadOptions()
        return cls(load_svd(source, dtype=options.resolved_dtype()), options)

    @torch.no_grad()
    def __call__(
        self,
        images: Sequence[PIL.Image.Image],
        seeds: Sequence[int],
        settings: SampleSettings,
        *,
        init_videos: np.ndarray | None = None,
        progress: bool = False,
    ) -> GeneratedVideos:
        """One video per image. `init_videos` (B, F, H, W, 3) uint8 turns this into video-to-video: each is encoded,
        noised to `settings.strength` and only the remaining steps run (0: the input through the VAE, 1: a plain run)."""
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
        # 4. Noise-augmented VAE latents of the conditioning images (B, C, h, w), not scaled (SVD).
        with self._running(self.vae):
            latents_of_image = torch.cat(
                [
                    self.conditioner.condition_latents(_pixels(condition), settings.noise_aug_strength, generator=g)
                    for condition, g in zip(conditions, generators, strict=True)
                ]
            )
        # 5. Micro-conditioning: fps - 1, motion bucket, noise augmentation strength.
        time_ids = added_time_ids(
            settings.fps,
            settings.motion_bucket_id,
            settings.noise_aug_strength,
            batch_size=len(images),
            dtype=self.dtype,
            device=self.device,
        )
        # 6. Initial latents, after the augmentation noise in each image's generator: pure noise, or for
        # video-to-video the input's latents noised to the level where the remaining steps start.
        schedule = Schedule.from_scheduler(self.scheduler, settings.steps, settings.sampler)
        noise = self.initial_noise(settings, generators)
        latents = noise * schedule.init_noise_sigma
        if init_videos is not None and settings.strength < 1:  # at strength 1 the input is all noise: a plain run
            if init_videos.shape[:2] != (len(images), frames):
                raise ValueError(f"init videos of shape {init_videos.shape}: need {len(images)} of {frames} frames")
            # As diffusers' image-to-image: the last int(steps x strength) steps run.
            schedule = schedule.from_step(settings.steps - min(int(settings.steps * settings.strength), settings.steps))
            with self._running(self.vae):
                clean = torch.stack([self._encode(video, settings) for video in init_videos])
            latents = (
                clean if not schedule.steps else (clean.float() + noise.float() * schedule.sigmas[0]).to(self.dtype)
            )
        timings["encode"] = clock()
        # 7. Denoising loop; the unconditional branch is a zero image embedding and a zero image latent.
        guided = settings.max_guidance > 1  # as the pipeline: guidance only when some frame is guided above 1
        conditional = Branch(embeddings, latents_of_image)
        unconditional = Branch(torch.zeros_like(embeddings), torch.zeros_like(latents_of_image)) if guided else None
        if schedule.steps:
            latents = self.sample(
                latents,
                schedule,
                settings,
                generators,
                conditional=conditional,
                unconditional=unconditional,
                time_ids=time_ids,
                scales=guidance_scales(settings.min_guidance, settings.max_guidance, frames),
                progress=progress,
            )
        timings["sample"] = clock()
        # 8. Decode each video in chunks of frames (the temporal decoder mixes the frames of a chunk).
        with self._running(self.vae):
            video = np.stack([self._decode(one, settings.decode_chunk_size or frames) for one in latents])
        timings["decode"] = clock()
        return GeneratedVideos(video, conditions, list(seeds), timings, steps_run=schedule.steps)

    def _encode(self, video: np.ndarray, settings: SampleSettings) -> torch.Tensor:
        """(F, H, W, 3) uint8 frames -> (F, C, h, w) scaled latents (the posterior's mode: no randomness)."""
        size = (settings.width, settings.height)
        chunk_size = settings.decode_chunk_size or len(video)
        latents = []
        parameter = self.vae.encoder.conv_in.weight
        for start in range(0, len(video), chunk_size):
            pixels = torch.cat(
                [
                    _pixels(PIL.Image.fromarray(frame).resize(size, PIL.Image.Resampling.LANCZOS))
                    for frame in video[start : start + chunk_size]
                ]
            )
            with torch.autocast(parameter.device.type, enabled=False):
                moments = self.vae.encode(pixels.to(parameter.device, parameter.dtype)).latent_dist
            latents.append(moments.mode() * self.vae.config.scaling_factor)
        return torch.cat(latents).to(self.device, self.dtype)

    def _vae_decode(self, chunk: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(chunk, num_frames=chunk.shape[0]).sample


def size_multiple(unet_config, vae_config) -> int:
    """Heights and widths must survive the VAE's and every UNet level's downsampling: 64 px for SVD."""
    return 2 ** (len(vae_config["block_out_channels"]) - 1) * 2 ** (len(unet_config["down_block_types"]) - 1)


def fuse_qkv(unet: torch.nn.Module) -> None:
    """One matmul for q, k and v in every self-attention, and for k and v in every cross-attention.

    The UNet's own `fuse_qkv_projections` fuses only modules of diffusers' newer attention mixin, which the SVD UNet's
    `Attention` layers are not: there it fuses nothing. The unfused weights stay (diffusers keeps them to unfuse).
    """
    layers = [module for module in unet.modules() if isinstance(module, Attention)]
    for layer in layers:
        layer.fuse_projections(fuse=True)
    if layers:
        unet.set_attn_processor(FusedAttnProcessor2_0())


def _channels_last(module: torch.nn.Module) -> None:
    """2D convolution weights in NHWC (faster cuDNN kernels in half precision); the 3D temporal ones stay."""
    for layer in module.modules():
        if isinstance(layer, torch.nn.Conv2d):
            layer.weight.data = layer.weight.data.contiguous(memory_format=torch.channels_last)


def _pixels(image: PIL.Image.Image) -> torch.Tensor:
    """(1, 3, H, W) float32 in [-1, 1], as diffusers' image processors make them."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0) * 2.0 - 1.0
