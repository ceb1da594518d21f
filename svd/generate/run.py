"""The work of `svd generate`: find the images, plan the outputs, load the model once, generate in batches.

Everything that can be checked before the model loads is checked first (images readable, outputs writable,
settings sane), so a mistake costs a second, not a model load, and leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import PIL.Image
import torch

from svd.generate.options import LoadOptions, SampleSettings
from svd.generate.output import (
    SUFFIXES,
    OutputKind,
    check_writable,
    condition_path,
    output_kind,
    to_uint8,
    write_image,
    write_video,
)
from svd.model.loading import SVD_DEFAULT, ModelSourceError
from svd.model.lora import AdapterError, check_adapter_folder

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class GenerateInputError(ValueError):
    """An image, output or setting that cannot work: one line quoting it."""


@dataclass
class Job:
    image: Path
    output: Path
    seed: int

    @property
    def condition(self) -> Path:
        return condition_path(self.output)


@dataclass
class Summary:
    """What `--json` prints: the settings used, one entry per video, and timings in seconds."""

    model: str
    device: str
    dtype: str
    seed: int
    settings: dict[str, Any]
    load: dict[str, Any]
    videos: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    peak_gpu_memory_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan(inputs: Sequence[str], output: str | None, kind: OutputKind | None, seed: int) -> list[Job]:
    """One job per image. One image file: `-o` is its output (default NAME.mp4 here). Several images or a folder:
    `-o` is a folder (default: here) receiving NAME.mp4 / NAME.gif / NAME/ per image, as `--format` says."""
    images: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise GenerateInputError(f"{item}: no images in this folder ({', '.join(IMAGE_SUFFIXES)})")
            images += found
        elif path.is_file():
            images.append(path)
        else:
            raise GenerateInputError(f"{item}: no such image file or folder")
    try:
        if len(inputs) == 1 and Path(inputs[0]).is_file():
            target = Path(output) if output else Path(images[0].stem + SUFFIXES[kind or "mp4"])
            if kind is not None and output is not None and output_kind(target) != kind:
                raise GenerateInputError(f"-o {output} is not a {kind} output, but --format {kind} was given")
            outputs = [target]
        else:
            folder = Path(output) if output else Path(".")
            if output is not None and folder.suffix.lower() in (".mp4", ".gif"):
                raise GenerateInputError(
                    f"-o {output}: with several images, -o names a folder (use --format for the type)"
                )
            if folder.exists() and not folder.is_dir():
                raise GenerateInputError(f"-o {output}: exists and is not a folder")
            outputs = [folder / (image.stem + SUFFIXES[kind or "mp4"]) for image in images]
            seen: dict[Path, Path] = {}
            for image, target in zip(images, outputs, strict=True):
                if target in seen:
                    raise GenerateInputError(f"{seen[target]} and {image} would both write {target}")
                seen[target] = image
        for target in outputs:
            check_writable(target)
    except ValueError as error:
        raise GenerateInputError(str(error)) from None
    for image in images:
        read_image(image)
    return [Job(image, target, seed + index) for index, (image, target) in enumerate(zip(images, outputs, strict=True))]


def read_image(path: Path) -> PIL.Image.Image:
    """The image as RGB (alpha dropped), fully decoded; GenerateInputError when it cannot be read."""
    try:
        with PIL.Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise GenerateInputError(f"{path}: cannot be read as an image ({reason})") from None


def check_sizes(model: str | None, settings: SampleSettings) -> None:
    """Sizes this model cannot take, from a local folder's configs, before its weights load."""
    from svd.generate.generator import size_multiple
    from svd.generate.options import round_size

    folder = Path(model) if model else None
    configs = [folder / part / "config.json" for part in ("unet", "vae")] if folder else []
    if not configs or not all(path.is_file() for path in configs):
        return  # a hub id, or a folder that loading will refuse with its own message
    try:
        unet, vae = (json.loads(path.read_text(encoding="utf-8")) for path in configs)
        multiple = size_multiple(unet, vae)
    except (ValueError, KeyError, TypeError):
        return
    try:
        for name in ("height", "width"):
            round_size(getattr(settings, name), multiple, name, warn=False)
    except ValueError as error:
        raise GenerateInputError(str(error)) from None


def load_generator(model: str | None, options: LoadOptions):
    """A `VideoGenerator` for `model` (default: the official img2vid-xt); ModelSourceError in one line."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from svd.generate.generator import VideoGenerator

    source = model or SVD_DEFAULT
    path = Path(source)
    if path.is_dir() and (path / "text_encoder").is_dir() and not (path / "image_encoder").is_dir():
        raise ModelSourceError(
            f"{source}: a text-to-video model (text_encoder/, no image_encoder/); svd generate makes video from an image"
        )
    dtype = options.resolved_dtype()
    # Loading bars of local weights say nothing useful; hub downloads keep their own progress bars.
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        parts = _load_parts(source, dtype, hub=not path.exists())
    except ModelSourceError as error:
        if model is None:
            raise ModelSourceError(
                f"{error}; no --model was given, so the default {SVD_DEFAULT} was tried (it needs the Hugging Face "
                "hub or its local cache): pass --model with a local SVD checkpoint folder"
            ) from None
        raise
    return VideoGenerator(parts, options)


def _load_parts(source: str, dtype: torch.dtype, *, hub: bool):
    from svd.model.loading import load_svd

    with warnings.catch_warnings():
        # huggingface_hub's deprecation notices about diffusers' own calls are not the user's business.
        warnings.filterwarnings("ignore", category=UserWarning, module="huggingface_hub")
        warnings.filterwarnings("ignore", category=FutureWarning, module="huggingface_hub")
        if hub and dtype in (torch.float16, torch.bfloat16):
            try:  # the hub's half-precision files: half the download
                return load_svd(source, dtype=dtype, variant="fp16")
            except ModelSourceError:
                pass
        return load_svd(source, dtype=dtype)


def generate(
    inputs: Sequence[str],
    *,
    output: str | None = None,
    kind: OutputKind | None = None,
    model: str | None = None,
    load: LoadOptions | None = None,
    settings: SampleSettings | None = None,
    seed: int | None = None,
    batch_size: int = 1,
    progress: bool = False,
    on_video: Callable[[Job], None] | None = None,
) -> Summary:
    """Generate one video per image; returns the summary (`--json`). Raises GenerateInputError or
    ModelSourceError, before anything is written, for inputs, outputs, settings or models that cannot work."""
    start = time.perf_counter()
    load, settings = load or LoadOptions(), settings or SampleSettings()
    if batch_size < 1:
        raise GenerateInputError(f"batch size {batch_size}: must be at least 1")
    seed = random.SystemRandom().randrange(2**32) if seed is None else seed
    try:
        settings.check()
    except ValueError as error:
        raise GenerateInputError(str(error)) from None
    try:
        device = load.resolved_device()
    except RuntimeError:
        raise GenerateInputError(f"device {load.device}: not a torch device (cpu, cuda, cuda:1...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GenerateInputError(f"device {device}: no CUDA GPU is available here (use --device cpu)")
    jobs = plan(inputs, output, kind, seed)
    check_sizes(model, settings)
    if load.lora:
        try:
            check_adapter_folder(load.lora)
        except AdapterError as error:
            raise GenerateInputError(str(error)) from None

    generator = load_generator(model, load)
    try:
        settings = generator.resolve(settings)
    except ValueError as error:
        raise GenerateInputError(str(error)) from None
    device = generator.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    summary = Summary(
        model=model or SVD_DEFAULT,
        device=str(device),
        dtype=str(generator.dtype).removeprefix("torch."),
        seed=seed,
        settings=settings.to_dict(),
        load={**asdict(load), "batch_size": batch_size},
    )
    timings = {"load": time.perf_counter() - start, "encode": 0.0, "sample": 0.0, "decode": 0.0, "write": 0.0}

    for first in range(0, len(jobs), batch_size):
        batch = jobs[first : first + batch_size]
        videos = generator(
            [read_image(job.image) for job in batch], [job.seed for job in batch], settings, progress=progress
        )
        for name, seconds in videos.timings.items():
            timings[name] += seconds
        began = time.perf_counter()
        for job, frames, condition in zip(batch, videos.frames, videos.conditions, strict=True):
            write_video(to_uint8(frames), job.output, settings.fps)
            write_image(condition, job.condition)
            summary.videos.append(
                {"image": str(job.image), "output": str(job.output), "condition": str(job.condition), "seed": job.seed}
            )
            if on_video is not None:
                on_video(job)
        timings["write"] += time.perf_counter() - began

    timings["total"] = time.perf_counter() - start
    timings["seconds_per_video"] = (timings["total"] - timings["load"]) / len(jobs)
    summary.timings = {name: round(value, 3) for name, value in timings.items()}
    if device.type == "cuda":
        summary.peak_gpu_memory_bytes = torch.cuda.max_memory_allocated(device)
    return summary
