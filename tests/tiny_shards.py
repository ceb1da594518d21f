"""Tiny WebDataset shards in the format `svd curate` writes (KEY.mp4, KEY.json, KEY.txt), for the training tests.

Clips are a coloured square on a flat background that moves right when it starts in the left half and left when
it starts in the right half: the first frame says which way the video goes, but no single frame says how far
the square has got, so only a model that relates frames to each other can predict the later frames.
Kept small so it can be swapped for the real shard writer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import webdataset as wds

from curation.video_io import write_frames

SIZE = 16  # pixels; even, for 4:2:0
SQUARE = 6
SPEED = 2  # pixels per frame


def square_frames(x0: int, y0: int, direction: int, num_frames: int, colour=(230, 40, 40), size: int = SIZE):
    """(F, size, size, 3) uint8: a square at (x0, y0) moving `direction` (+1 right, -1 left) SPEED px per frame."""
    frames = np.full((num_frames, size, size, 3), 30, dtype=np.uint8)
    for k in range(num_frames):
        x = int(np.clip(x0 + direction * SPEED * k, 0, size - SQUARE))
        frames[k, y0 : y0 + SQUARE, x : x + SQUARE] = colour
    return frames


def random_square(rng: np.random.Generator, num_frames: int, size: int = SIZE) -> np.ndarray:
    direction = int(rng.choice([-1, 1]))
    x0 = int(rng.integers(0, 3)) if direction > 0 else int(rng.integers(size - SQUARE - 2, size - SQUARE + 1))
    y0 = int(rng.integers(0, size - SQUARE + 1))
    return square_frames(x0, y0, direction, num_frames, size=size)


def encode(frames: np.ndarray, fps: float = 8.0) -> bytes:
    path = Path(f"/tmp/tiny-shard-{id(frames)}.mp4")
    try:
        write_frames(path, iter(frames), fps, frames.shape[2], frames.shape[1], keyframe_seconds=1.0)
        return path.read_bytes()
    finally:
        path.unlink(missing_ok=True)


def record(key: str, frames: np.ndarray, fps: float, **fields) -> dict:
    """A clip record with the fields `svd curate` writes (scores and captions as given, else null)."""
    base = {
        "key": key,
        "source": f"{key}.mp4",
        "clip_index": 0,
        "start_frame": 0,
        "end_frame": len(frames),
        "start_time": 0.0,
        "end_time": len(frames) / fps,
        "fps": fps,
        "num_frames": len(frames),
        "width": frames.shape[2],
        "height": frames.shape[1],
        "codec": "h264",
        "rotation": 0,
        "motion_score": None,
        "motion_bucket_id": 127,
        "text_area_ratio": None,
        "aesthetic_score": None,
        "clip_score": None,
        "caption_coca": "a red square",
        "caption_vblip": "a square moves",
        "caption_llm": "a red square slides across",
        "caption": "a red square",
    }
    base.update(fields)
    return base


def write_shards(folder: Path, clips: list[tuple[str, bytes, dict]], per_shard: int = 8) -> list[Path]:
    """Pack (key, mp4 bytes, record) into folder/shard-NNNNNN.tar, `per_shard` samples each."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for start in range(0, len(clips), per_shard):
        path = folder / f"shard-{start // per_shard:06d}.tar"
        with wds.TarWriter(str(path)) as writer:
            for key, mp4, rec in clips[start : start + per_shard]:
                writer.write(
                    {
                        "__key__": key,
                        "mp4": mp4,
                        "json": json.dumps(rec).encode(),
                        "txt": (rec.get("caption") or "").encode(),
                    }
                )
        paths.append(path)
    return paths


def square_shards(
    folder: Path, count: int = 16, num_frames: int = 8, fps: float = 8.0, seed: int = 0, per_shard: int = 8
) -> list[Path]:
    rng = np.random.default_rng(seed)
    clips = []
    for index in range(count):
        frames = random_square(rng, num_frames)
        key = f"square-{seed}-{index:04d}"
        clips.append((key, encode(frames, fps), record(key, frames, fps)))
    return write_shards(folder, clips, per_shard)


def assert_export_samples(final: Path) -> None:
    """An `svd train` export (`RUN/final`) loads in diffusers' StableVideoDiffusionPipeline and samples."""
    import PIL.Image
    import torch
    from diffusers import StableVideoDiffusionPipeline

    pipeline = StableVideoDiffusionPipeline.from_pretrained(final)
    pipeline.set_progress_bar_config(disable=True)
    latents = pipeline(
        PIL.Image.fromarray(square_frames(2, 4, 1, 1)[0]),
        height=16,
        width=16,
        num_frames=4,
        num_inference_steps=2,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
    ).frames
    assert latents.shape == (1, 4, 4, 8, 8) and torch.isfinite(latents).all()
