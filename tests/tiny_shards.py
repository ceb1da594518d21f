"""Tiny WebDataset shards as `svd curate` writes them, for the training tests: the product's own shard writer
(`pipelines.shards.ShardWriter`) and clip records made by the record module (`curation.record`).

Clips are a coloured square on a flat background that moves right when it starts in the left half and left when
it starts in the right half: the first frame says which way the video goes, but no single frame says how far
the square has got, so only a model that relates frames to each other can predict the later frames.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from curation.captions.text import OK
from curation.record import CAPTION_STATUS, CAPTION_TEXT, ClipRecord, Column, Stage, new_row, shard_record
from curation.video_io import write_frames
from pipelines.shards import ShardWriter
from pipelines.storage import Folder

SIZE = 16  # pixels; even, for 4:2:0
SQUARE = 6
SPEED = 2  # pixels per frame
MAX_SHARD_BYTES = 1 << 40  # shards roll over by sample count only

# What the later stages leave in a record unless a test says otherwise: a motion bucket and three captions,
# the shipped one taken from CoCa.
DEFAULTS = {
    Column.MOTION_BUCKET_ID: 127,
    Column.CAPTION_COCA: "a red square",
    Column.CAPTION_VBLIP: "a square moves",
    Column.CAPTION_LLM: "a red square slides across",
    Column.CAPTION: "a red square",
}
SHIPPED_FROM = "coca"  # the captioner DEFAULTS' shipped caption comes from


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
    """The frames as an H.264 mp4, the way `svd curate` writes clip files."""
    with tempfile.TemporaryDirectory(prefix="tiny-shard-") as folder:
        path = Path(folder, "clip.mp4")
        write_frames(path, iter(frames), fps, frames.shape[2], frames.shape[1], keyframe_seconds=1.0)
        return path.read_bytes()


def clip_record(key: str, frames: np.ndarray, fps: float) -> ClipRecord:
    """What splitting would know of `frames` as the only clip of a source video `KEY.mp4`."""
    count = len(frames)
    return ClipRecord(
        key=key,
        source=f"{key}.mp4",
        clip_index=0,
        start_frame=0,
        end_frame=count,
        start_time=0.0,
        end_time=count / fps,
        fps=fps,
        num_frames=count,
        width=frames.shape[2],
        height=frames.shape[1],
        codec="h264",
        rotation=0,
        transition_before="start",
        transition_after="end",
        scene_start_frame=0,
        scene_end_frame=count,
        written_by="reencode",
        path=f"clips/{key}.mp4",
    )


def record(key: str, frames: np.ndarray, fps: float, **fields) -> dict:
    """A clip's `KEY.json` as `svd curate` writes it: its row (`new_row`) with DEFAULTS' motion bucket and
    captions, `fields` (column names: `motion_bucket_id=None`, `caption_coca=None`...) over them, projected by
    `shard_record`. A captioner's status is ok where it left a caption, None (switched off) where not."""
    columns = {Column(name): value for name, value in fields.items()}  # ValueError for a name that is no column
    split = {column.value: value for column, value in columns.items() if column.stage == Stage.SPLIT}
    row = new_row(clip_record(key, frames, fps), **split)
    for column, value in {**DEFAULTS, **columns}.items():
        if column.stage != Stage.SPLIT:
            row[column] = value
    for name, text in CAPTION_TEXT.items():
        if CAPTION_STATUS[name] not in columns:
            row[CAPTION_STATUS[name]] = OK if row[text] else None
    if Column.CAPTION_SOURCE not in columns:
        row[Column.CAPTION_SOURCE] = SHIPPED_FROM if row[Column.CAPTION] else None
    return shard_record(row)


def shaped_clip(index: int, height: int, width: int) -> tuple[str, bytes, dict]:
    """(key, mp4, record) of 8 smooth random frames of height x width; the key names the shape, KEY-HxW."""
    import PIL.Image

    small = np.random.default_rng(index).integers(0, 256, (8, 4, 4, 3), dtype=np.uint8)
    frames = np.stack([np.asarray(PIL.Image.fromarray(frame).resize((width, height))) for frame in small])
    key = f"c{index:02d}-{height}x{width}"
    return key, encode(frames, 8.0), record(key, frames, 8.0)


def write_shards(folder: Path, clips: list[tuple[str, bytes, dict]], per_shard: int = 8) -> list[Path]:
    """Write (key, mp4 bytes, record) with `svd curate`'s ShardWriter into folder/shard-NNNNNN.tar, `per_shard`
    samples each, the record's shipped caption as KEY.txt; the shards' paths, in order."""
    folder = Path(folder)
    # The writer names shards FOLDER/shard-NNNNNN.tar within its output: the output is folder's parent.
    writer = ShardWriter(Folder(str(folder.absolute().parent)), folder.name, per_shard, MAX_SHARD_BYTES)
    for key, mp4, rec in clips:
        writer.write(key, mp4, rec, rec.get(Column.CAPTION) or "")
    return [folder / name for name in writer.close()]


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
