"""The work of `svd generate`: find the images, plan the outputs, load the model once, generate in batches.

Everything that can be checked before the model loads is checked first (images readable, outputs writable,
settings sane), so a mistake costs a second, not a model load, and leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
import unicodedata
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch

from curation.video_io import VideoError, decode_frames, probe
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
from svd.generate.segments import SegmentedVideos, extend
from svd.model.loading import SVD_DEFAULT, ModelSourceError, is_text_to_video, load_text_to_video
from svd.model.lora import AdapterError, check_adapter_folder

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class GenerateInputError(ValueError):
    """An image, output or setting that cannot work: one line quoting it."""


@dataclass
class Job:
    image: Path | None  # None: text-to-video, or video-to-video conditioned on the input's first frame
    output: Path
    seed: int
    prompt: str | None = None  # text-to-video

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
    single = len(inputs) == 1 and Path(inputs[0]).is_file()
    outputs = output_paths([image.stem for image in images], output, kind, single=single, what="images")
    seen: dict[Path, Path] = {}
    for image, target in zip(images, outputs, strict=True):
        if target in seen:
            raise GenerateInputError(f"{seen[target]} and {image} would both write {target}")
        seen[target] = image
    for image in images:
        read_image(image)
    return [Job(image, target, seed + index) for index, (image, target) in enumerate(zip(images, outputs, strict=True))]


def plan_prompts(prompts: Sequence[str], output: str | None, kind: OutputKind | None, seed: int) -> list[Job]:
    """One job per prompt, as `plan`'s per image, named by the prompt's first words (NNNN-WORDS with several)."""
    names = (
        [prompt_name(prompts[0])] if len(prompts) == 1 else [f"{i:04d}-{prompt_name(p)}" for i, p in enumerate(prompts)]
    )
    outputs = output_paths(names, output, kind, single=len(prompts) == 1, what="prompts")
    return [
        Job(None, target, seed + index, prompt)
        for index, (prompt, target) in enumerate(zip(prompts, outputs, strict=True))
    ]


def output_paths(
    names: Sequence[str], output: str | None, kind: OutputKind | None, *, single: bool, what: str
) -> list[Path]:
    """Where each named video goes. `single`: `-o` is the output (default NAME.mp4 here); else `-o` is a folder
    (default: here) receiving NAME.mp4 / NAME.gif / NAME/ each, as `--format` says. Checked writable, and distinct."""
    suffix = SUFFIXES[kind or "mp4"]
    try:
        if single:
            target = Path(output) if output else Path(names[0] + suffix)
            if kind is not None and output is not None and output_kind(target) != kind:
                raise GenerateInputError(f"-o {output} is not a {kind} output, but --format {kind} was given")
            outputs = [target]
        else:
            folder = Path(output) if output else Path(".")
            if output is not None and folder.suffix.lower() in (".mp4", ".gif"):
                raise GenerateInputError(
                    f"-o {output}: with several {what}, -o names a folder (use --format for the type)"
                )
            if folder.exists() and not folder.is_dir():
                raise GenerateInputError(f"-o {output}: exists and is not a folder")
            outputs = [folder / (name + suffix) for name in names]
        for target in outputs:
            check_writable(target)
    except ValueError as error:
        raise GenerateInputError(str(error)) from None
    return outputs


def prompt_name(prompt: str) -> str:
    """A file-name-safe stem from a prompt's first words: ASCII letters, digits, - and _, at most 40 characters."""
    ascii_text = unicodedata.normalize("NFKD", prompt).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9_-]+", "-", ascii_text.lower()).strip("-_")[:40].strip("-_") or "video"


def read_prompts(path: str) -> list[str]:
    """The non-empty lines of a text file, one prompt each."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise GenerateInputError(f"{path}: cannot be read as a UTF-8 text file of prompts ({error})") from None
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise GenerateInputError(f"{path}: holds no prompt (one per line)")
    return prompts


def read_init_video(path: Path, frames: int) -> np.ndarray:
    """(F, H, W, 3) uint8: the video's first `frames` frames; GenerateInputError when it cannot give them."""
    try:
        decoded = decode_frames(path, range(frames))
    except VideoError as error:
        raise GenerateInputError(f"{path}: {error}; --init-video needs {frames} frames (see --num-frames)") from None
    return np.stack([decoded[index] for index in range(frames)])


def check_init_video(path: Path) -> None:
    try:
        probe(path)
    except VideoError as error:
        raise GenerateInputError(f"{path}: {error}") from None
    except OSError as error:
        raise GenerateInputError(f"{path}: cannot be read ({error.strerror or error})") from None


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


def load_generator(model: str | None, options: LoadOptions, *, text: bool = False):
    """A `VideoGenerator` for `model` (default: the official img2vid-xt), or with `text` a `TextVideoGenerator` for
    a text-to-video export; ModelSourceError in one line."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from svd.generate.generator import VideoGenerator
    from svd.generate.text_generator import TextVideoGenerator

    source = model or SVD_DEFAULT
    if text and not is_text_to_video(source):
        raise ModelSourceError(
            f"{source}: not a text-to-video model (a `svd train` export with text_encoder/); --prompt needs one, "
            "given with --model"
        )
    if not text and is_text_to_video(source):
        raise ModelSourceError(
            f"{source}: a text-to-video model (text_encoder/, no image_encoder/): give --prompt instead of images"
        )
    dtype = options.resolved_dtype()
    # Loading bars of local weights say nothing useful; hub downloads keep their own progress bars.
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    if text:
        return TextVideoGenerator(load_text_to_video(source, dtype=dtype), options)
    try:
        parts = _load_parts(source, dtype, hub=not Path(source).exists())
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
    inputs: Sequence[str] = (),
    *,
    prompts: Sequence[str] = (),
    negative_prompt: str = "",
    init_video: str | None = None,
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
    """Generate one video per image (or per prompt, for a text-to-video model; or from `init_video`, video-to-video);
    returns the summary (`--json`). Raises GenerateInputError or ModelSourceError, before anything is written, for
    inputs, outputs, settings or models that cannot work."""
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
    jobs = _plan(inputs, prompts, init_video, output, kind, seed, settings)
    check_sizes(model, settings)
    if load.lora:
        try:
            check_adapter_folder(load.lora)
        except AdapterError as error:
            raise GenerateInputError(str(error)) from None

    generator = load_generator(model, load, text=bool(prompts))
    try:
        settings = generator.resolve(settings)
    except ValueError as error:
        raise GenerateInputError(str(error)) from None
    init_frames = read_init_video(Path(init_video), settings.num_frames) if init_video else None
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
        seeds = [job.seed for job in batch]
        segment_seeds = [[job.seed] for job in batch]
        if prompts:
            videos = generator(
                [job.prompt for job in batch], seeds, settings, negative_prompt=negative_prompt, progress=progress
            )
        elif init_frames is not None:
            image = read_image(batch[0].image) if batch[0].image else PIL.Image.fromarray(init_frames[0])
            videos = generator([image], seeds, settings, init_videos=init_frames[None], progress=progress)
        else:
            images = [read_image(job.image) for job in batch]
            videos = extend(generator, images, seeds, settings, progress=progress)
            segment_seeds = videos.seeds
        for name, seconds in videos.timings.items():
            timings[name] += seconds
        began = time.perf_counter()
        conditions = videos.segments[0].conditions if isinstance(videos, SegmentedVideos) else videos.conditions
        for index, (job, frames) in enumerate(zip(batch, videos.frames, strict=True)):
            write_video(to_uint8(frames), job.output, settings.fps)
            entry = {"output": str(job.output), "seed": job.seed, "frames": len(frames)}
            if job.prompt is not None:
                entry = {"prompt": job.prompt, **entry}
            else:
                write_image(conditions[index], job.condition)
                entry = {"image": str(job.image) if job.image else None, **entry, "condition": str(job.condition)}
            if init_video:
                entry.update(init_video=init_video, steps_run=videos.steps_run)
            if settings.segments > 1:
                entry["segment_seeds"] = segment_seeds[index]
            summary.videos.append(entry)
            if on_video is not None:
                on_video(job)
        timings["write"] += time.perf_counter() - began

    timings["total"] = time.perf_counter() - start
    timings["seconds_per_video"] = (timings["total"] - timings["load"]) / len(jobs)
    summary.timings = {name: round(value, 3) for name, value in timings.items()}
    if device.type == "cuda":
        summary.peak_gpu_memory_bytes = torch.cuda.max_memory_allocated(device)
    return summary


def _plan(
    inputs: Sequence[str],
    prompts: Sequence[str],
    init_video: str | None,
    output: str | None,
    kind: OutputKind | None,
    seed: int,
    settings: SampleSettings,
) -> list[Job]:
    """The jobs of one of the three modes (images, prompts, video-to-video), refusing mixtures that mean nothing."""
    if prompts:
        if inputs or init_video:
            raise GenerateInputError("--prompt makes video from text: give no IMAGE and no --init-video with it")
        if settings.segments > 1:
            raise GenerateInputError("--segments extends image-to-video only (each segment starts from an image)")
        return plan_prompts(prompts, output, kind, seed)
    if init_video:
        video = Path(init_video)
        check_init_video(video)
        if len(inputs) > 1 or (inputs and not Path(inputs[0]).is_file()):
            raise GenerateInputError(
                "--init-video takes at most one IMAGE file to condition on (default: its first frame)"
            )
        if settings.segments > 1:
            raise GenerateInputError("--segments and --init-video cannot be combined: video-to-video has one segment")
        jobs = plan(inputs, output, kind, seed) if inputs else None
        target = jobs[0].output if jobs else Path(output or f"{video.stem}-v2v{SUFFIXES[kind or 'mp4']}")
        if target.resolve() == video.resolve():
            raise GenerateInputError(f"-o {target}: is the --init-video itself; choose another output")
        try:
            check_writable(target)
        except ValueError as error:
            raise GenerateInputError(str(error)) from None
        return [Job(jobs[0].image if jobs else None, target, seed)]
    if not inputs:
        raise GenerateInputError("nothing to generate from: give IMAGE files or folders, --prompt, or --init-video")
    return plan(inputs, output, kind, seed)
