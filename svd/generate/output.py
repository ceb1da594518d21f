"""Write generated videos: H.264 mp4 (PyAV), gif (Pillow) or a folder of PNG frames.

The kind follows the output path: `.mp4`, `.gif`, or no extension for a folder of PNG frames. Every output is
written under a hidden temporary name beside its final place and renamed when complete, so an interrupted or
failed run never leaves a half-written file or folder behind.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import PIL.Image

from curation.video_io import write_mp4

log = logging.getLogger(__name__)

OutputKind = Literal["mp4", "gif", "png"]
KINDS: dict[str, OutputKind] = {".mp4": "mp4", ".gif": "gif", "": "png"}
SUFFIXES = {kind: suffix for suffix, kind in KINDS.items()}
FRAME_NAME = "frame-{:04d}.png"
_FRAME_FILE = re.compile(r"^frame-\d{4,}\.png$")


def output_kind(path: str | Path) -> OutputKind:
    """mp4, gif or png (a folder of frames) from the path's extension; ValueError for any other extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in KINDS:
        raise ValueError(f"{path}: unsupported output type {suffix!r}: use .mp4, .gif, or a folder name for PNG frames")
    return KINDS[suffix]


def condition_path(output: str | Path) -> Path:
    """Where the conditioning image goes: beside the output, `NAME.condition.png` (never over the input image)."""
    output = Path(output)
    return output.with_name(f"{output.stem if output.suffix else output.name}.condition.png")


def check_writable(output: str | Path) -> None:
    """Refuse, before any work, an output that would replace something that is not a previous result."""
    output = Path(output)
    if output_kind(output) == "png":
        if output.is_dir() and any(not _FRAME_FILE.match(p.name) for p in output.iterdir()):
            raise ValueError(f"{output}: exists and holds other files than PNG frames; choose another output folder")
        if output.exists() and not output.is_dir():
            raise ValueError(f"{output}: exists and is not a folder (PNG frames go to a folder)")
    elif output.is_dir():
        raise ValueError(f"{output}: is a folder, not a {output.suffix} file")


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8, rounding as diffusers' `numpy_to_pil`."""
    return (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)


def write_video(frames: np.ndarray, output: str | Path, fps: float) -> Path:
    """(F, H, W, 3) uint8 frames -> `output` (its kind from the extension), complete or not at all."""
    output = Path(output)
    kind = output_kind(output)
    check_writable(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if kind == "png":
        return _atomic_folder(output, lambda staging: _write_pngs(frames, staging))
    writer = write_mp4 if kind == "mp4" else _write_gif
    return _atomic_file(output, lambda staging: writer(frames, staging, fps))


def write_image(image: PIL.Image.Image, output: str | Path) -> Path:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    return _atomic_file(output, lambda staging: image.save(staging, format="PNG"))


def _write_gif(frames: np.ndarray, path: Path, fps: float) -> None:
    images = [PIL.Image.fromarray(frame) for frame in frames]
    # GIF delays are in hundredths of a second: 7 fps is stored as 140 ms.
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=1000 / fps, loop=0)


def _write_pngs(frames: np.ndarray, folder: Path) -> None:
    folder.mkdir()
    for index, frame in enumerate(frames):
        PIL.Image.fromarray(frame).save(folder / FRAME_NAME.format(index), format="PNG")


def _staging(output: Path) -> Path:
    return output.with_name(f".{output.stem}.partial-{os.getpid()}{output.suffix}")


def _atomic_file(output: Path, write: Callable[[Path], None]) -> Path:
    staging = _staging(output)
    try:
        write(staging)
        os.replace(staging, output)
    finally:
        staging.unlink(missing_ok=True)
    return output


def _atomic_folder(output: Path, write: Callable[[Path], None]) -> Path:
    staging = _staging(output)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        write(staging)
        if output.exists():  # frames of an earlier run (check_writable allowed it)
            shutil.rmtree(output)
        staging.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output
