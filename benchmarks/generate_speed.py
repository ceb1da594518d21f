"""Seconds per video and peak GPU memory of `svd generate` vs diffusers' `StableVideoDiffusionPipeline`.

Full-size random weights built from the SVD-img2vid-xt configs below (never downloaded): the UNet, the temporal
VAE, the ViT-H/14 CLIP image encoder and the scheduler. Both sides share the same weights, image, seed and
settings (576x1024, 25 steps, fps 7, motion bucket 127, guidance 1 -> 3, every frame decoded at once), in one
process: diffusers first, with the scheduler matching each sampler (`reference_scheduler`), then ours with each
sampler (channels-last, fused QKV, batched CFG; `--compile` adds torch.compile), ours with `--low-memory`, and
ours making a 4-segment video. Each is warmed up with a 2-step run first.

    python benchmarks/generate_speed.py                  # needs a GPU: 14 and 25 frames, fp16; JSON lines
    python benchmarks/generate_speed.py --dtype bf16 --compile
    python benchmarks/generate_speed.py --tiny           # the same code on tiny models on the CPU (a smoke test)
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import (
    AutoencoderKLTemporalDecoder,
    DDIMScheduler,
    EDMDPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    StableVideoDiffusionPipeline,
    UNetSpatioTemporalConditionModel,
)
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

sys.path.insert(0, str(Path(__file__).parent))
from model_params import SVD_XT_UNET  # noqa: E402

from svd.generate.generator import VideoGenerator  # noqa: E402
from svd.generate.options import SAMPLER_NAMES, LoadOptions, SampleSettings, low_memory  # noqa: E402
from svd.generate.segments import extend, total_frames  # noqa: E402
from svd.model.loading import SVDComponents  # noqa: E402
from svd.train.components import SVD_SCHEDULER  # noqa: E402

# stable-video-diffusion-img2vid-xt vae/config.json and image_encoder/config.json (CLIP ViT-H/14).
SVD_XT_VAE = {
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "force_upcast": True,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "out_channels": 3,
    "sample_size": 768,
    "scaling_factor": 0.18215,
}
SVD_XT_IMAGE_ENCODER = {
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "image_size": 224,
    "intermediate_size": 5120,
    "layer_norm_eps": 1e-5,
    "num_attention_heads": 16,
    "num_channels": 3,
    "num_hidden_layers": 32,
    "patch_size": 14,
    "projection_dim": 1024,
}
TINY_UNET = {
    "block_out_channels": [32, 64],
    "down_block_types": ["CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"],
    "up_block_types": ["UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"],
    "cross_attention_dim": 32,
    "num_attention_heads": [2, 4],
    "layers_per_block": 1,
    "addition_time_embed_dim": 32,
    "projection_class_embeddings_input_dim": 96,
}
TINY_VAE = {"block_out_channels": [32, 64], "down_block_types": ["DownEncoderBlock2D"] * 2, "latent_channels": 4}
TINY_IMAGE_ENCODER = {
    "hidden_size": 32,
    "projection_dim": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 37,
    "image_size": 224,
    "patch_size": 32,
}


def build(tiny: bool, device: torch.device, dtype: torch.dtype) -> SVDComponents:
    """Random full-size (or tiny) parts, initialised directly on the device."""
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNetSpatioTemporalConditionModel(**(TINY_UNET if tiny else SVD_XT_UNET))
        vae = AutoencoderKLTemporalDecoder(**(TINY_VAE if tiny else SVD_XT_VAE))
        vision = CLIPVisionConfig(**(TINY_IMAGE_ENCODER if tiny else SVD_XT_IMAGE_ENCODER))
        image_encoder = CLIPVisionModelWithProjection(vision)
    return SVDComponents(
        unet=unet.to(dtype).eval(),
        vae=vae.to(dtype).eval(),
        image_encoder=image_encoder.to(dtype).eval(),
        feature_extractor=CLIPImageProcessor(crop_size=224, size=224),
        scheduler=EulerDiscreteScheduler(**SVD_SCHEDULER),
    )


def measure(run, device: torch.device) -> tuple[float, float | None]:
    """(seconds, peak GPU GiB) of one call."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return time.perf_counter() - start, torch.cuda.max_memory_allocated(device) / 2**30
    return time.perf_counter() - start, None


def reference_scheduler(sampler: str):
    """The diffusers scheduler a diffusers user would run SVD with for `sampler`. Heun and DDIM have no EDM version
    in diffusers: HeunDiscreteScheduler and DDIMScheduler on SVD's config make as many UNet calls as ours (2n - 1 and
    n) at other noise levels, which is what a timing needs."""
    if sampler == "dpmpp_2m":
        return EDMDPMSolverMultistepScheduler(
            sigma_min=0.002, sigma_max=700.0, sigma_data=1.0, prediction_type="v_prediction"
        )
    cls = {"euler": EulerDiscreteScheduler, "heun": HeunDiscreteScheduler, "ddim": DDIMScheduler}[sampler]
    return cls.from_config(SVD_SCHEDULER)


def benchmark(
    *,
    tiny: bool,
    frames_list: list[int],
    steps: int,
    dtype_name: str = "fp16",
    with_compile: bool = False,
    skip_diffusers: bool = False,
    samplers: tuple[str, ...] = ("euler",),
    low_memory_row: bool = True,
    segments: int = 1,
) -> Iterator[dict]:
    """One row per implementation, sampler and frame count, as each is measured: diffusers with the matching
    scheduler (unless skipped), ours; then for Euler ours with torch.compile (if `with_compile`) and ours with
    `--low-memory` (if `low_memory_row`); and ours with `segments` segments when above 1. Full size on the GPU,
    tiny on the CPU."""
    device = torch.device("cpu" if tiny else "cuda")
    dtype = torch.float32 if tiny else {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    height, width = (32, 32) if tiny else (576, 1024)
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8))
    parts = build(tiny, device, dtype)
    header = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "dtype": str(dtype).removeprefix("torch."),
        "height": height,
        "width": width,
        "steps": steps,
    }

    def row(name: str, sampler: str, frames: int, seconds: float, peak: float | None) -> dict:
        return {
            **header,
            "impl": name,
            "sampler": sampler,
            "frames": frames,
            "seconds_per_video": round(seconds, 3),
            "peak_gib": None if peak is None else round(peak, 2),
            "frames_per_s": round(frames / seconds, 3),
        }

    baseline: dict[tuple[str, int], float] = {}  # (sampler, frames) -> diffusers' seconds per video
    # 1. diffusers, before ours changes the shared modules (fused QKV, channels-last, offload).
    if not skip_diffusers:
        pipeline = StableVideoDiffusionPipeline(
            vae=parts.vae,
            image_encoder=parts.image_encoder,
            unet=parts.unet,
            scheduler=parts.scheduler,
            feature_extractor=parts.feature_extractor,
        ).to(device)
        pipeline.set_progress_bar_config(disable=True)
        for sampler in samplers:
            pipeline.scheduler = reference_scheduler(sampler)
            for frames in frames_list:

                def diffusers_run(n=steps, frames=frames):
                    generator = torch.Generator().manual_seed(0)
                    pipeline(image, height=height, width=width, num_frames=frames, num_inference_steps=n,
                             generator=generator, output_type="np")  # fmt: skip

                diffusers_run(2)
                seconds, peak = measure(diffusers_run, device)
                baseline[sampler, frames] = seconds
                yield row("diffusers", sampler, frames, seconds, peak)
        del pipeline

    # 2. ours with each sampler; 3. with torch.compile; 4. --low-memory; 5. several segments.
    variants = [
        ("ours", sampler, LoadOptions(device=str(device)), SampleSettings(sampler=sampler)) for sampler in samplers
    ]
    if with_compile:
        variants.append(("ours+compile", "euler", LoadOptions(device=str(device), compile=True), SampleSettings()))
    if low_memory_row:
        low_load, low_settings = LoadOptions(device=str(device)), SampleSettings()
        low_memory(low_load, low_settings, decode_chunk_size_given=False)
        variants.append(("ours --low-memory", "euler", low_load, low_settings))
    if segments > 1:
        variants.append(
            (f"ours --segments {segments}", "euler", LoadOptions(device=str(device)), SampleSettings(segments=segments))
        )
    generators: dict[str, VideoGenerator] = {}
    for name, sampler, load, settings in variants:
        key = repr(load)
        if key not in generators:  # one model per set of load options (the parts are shared: build once)
            generators.clear()
            generators[key] = VideoGenerator(parts, load)
        generator = generators[key]
        for frames in frames_list:
            run_settings = SampleSettings(
                **{**settings.to_dict(), "num_frames": frames, "steps": steps, "height": height, "width": width}
            )
            warmup = SampleSettings(**{**run_settings.to_dict(), "steps": 2, "segments": 1})
            generator([image], [0], warmup)
            seconds, peak = measure(lambda g=generator, s=run_settings: extend(g, [image], [0], s), device)
            result = row(name, sampler, total_frames(frames, settings.segments, settings.overlap), seconds, peak)
            if (sampler, frames) in baseline and settings.segments == 1:
                result["speedup_vs_diffusers"] = round(baseline[sampler, frames] / seconds, 3)
            yield result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny models, 32x32, on the CPU")
    parser.add_argument("--frames", type=int, nargs="+", default=[14, 25])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--dtype", choices=["fp16", "bf16"], default="fp16")
    parser.add_argument("--compile", action="store_true", help="also time ours with torch.compile")
    parser.add_argument("--skip-diffusers", action="store_true")
    parser.add_argument("--samplers", nargs="+", choices=SAMPLER_NAMES, default=list(SAMPLER_NAMES))
    parser.add_argument("--segments", type=int, default=4, help="also time ours with this many segments (1: not)")
    args = parser.parse_args()

    if not args.tiny and not torch.cuda.is_available():
        sys.exit("no GPU: run with --tiny for a CPU smoke test")
    rows = benchmark(
        tiny=args.tiny,
        frames_list=[3] if args.tiny else args.frames,
        steps=2 if args.tiny else args.steps,
        dtype_name=args.dtype,
        with_compile=args.compile,
        skip_diffusers=args.skip_diffusers,
        samplers=tuple(args.samplers),
        segments=args.segments,
    )
    for row in rows:
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
