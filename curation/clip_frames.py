"""The frames a clip's scoring stages need, decoded in one pass.

Motion wants frames at 2 fps, OCR and CLIP the first, middle and last, a captioner N uniform ones: the
stages name frame indices, `plan_frames` merges them, and `decode_frames` decodes the clip once up to
the last index wanted, converting only the wanted frames (downscaled by FFmpeg, not kept at 4K).
Indices count the clip file's frames in presentation order from 0, like `video_io.decode_scaled`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from curation.config import CurationConfig
from curation.video_io import VideoError, open_video


@dataclass(frozen=True)
class FramePlan:
    """Which frames each stage needs, and the size they are decoded at (None: the coded size)."""

    indices: dict[str, list[int]]  # stage name -> frame indices
    max_side: int | None

    @property
    def all_indices(self) -> list[int]:
        return sorted({index for wanted in self.indices.values() for index in wanted})


def key_indices(num_frames: int) -> list[int]:
    """First, middle and last frame (fewer when the clip has fewer frames)."""
    _check_count(num_frames)
    return sorted({0, (num_frames - 1) // 2, num_frames - 1})


def uniform_indices(num_frames: int, count: int) -> list[int]:
    """`count` frames spread evenly from the first to the last (fewer, deduplicated, for short clips)."""
    _check_count(num_frames)
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if count == 1:
        return [(num_frames - 1) // 2]
    return sorted({round(i * (num_frames - 1) / (count - 1)) for i in range(count)})


def sampled_indices(num_frames: int, fps: float, sample_fps: float) -> list[int]:
    """Frames at `sample_fps` from the first one: the frame showing each instant k / sample_fps.

    Above the clip's own rate this is every frame. At least two frames whenever the clip has two, so a
    very short clip still gives one flow step.
    """
    _check_count(num_frames)
    if fps <= 0 or sample_fps <= 0:
        raise ValueError(f"frame rates must be positive, got fps={fps}, sample_fps={sample_fps}")
    step = max(1.0, fps / sample_fps)
    indices = [round(k * step) for k in range(math.floor((num_frames - 1) / step + 1e-9) + 1)]
    if len(indices) == 1 and num_frames > 1:
        indices.append(num_frames - 1)
    return indices


def plan_frames(num_frames: int, fps: float, config: CurationConfig) -> FramePlan:
    """The frames the enabled score stages need, decoded at the largest size any of them asks for."""
    indices: dict[str, list[int]] = {}
    sides: list[int] = []
    if config.motion.enabled:
        indices["motion"] = sampled_indices(num_frames, fps, config.motion.sample_fps)
        sides.append(config.motion.max_side)
    if config.ocr.enabled:
        indices["ocr"] = key_indices(num_frames)
        sides.append(config.ocr.max_side)
    if config.clip.enabled:
        indices["clip"] = key_indices(num_frames)
        sides.append(config.clip.max_side)
    return FramePlan(indices, max(sides) if sides else None)


def decode_frames(path: str | Path, indices: Iterable[int], max_side: int | None = None) -> dict[int, np.ndarray]:
    """Decode the clip once and return the wanted frames as RGB uint8, as displayed (rotation applied).

    Frames whose long side exceeds `max_side` are scaled down by FFmpeg (area averaging, aspect kept).
    Raises VideoError when the clip has fewer frames than an index asks for: a score is never computed
    from a stand-in frame.
    """
    wanted = sorted(set(indices))
    if not wanted:
        return {}
    if wanted[0] < 0:
        raise ValueError(f"frame indices must be >= 0, got {wanted[0]}")
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be positive, got {max_side}")
    path = Path(path)
    frames: dict[int, np.ndarray] = {}
    next_wanted = 0
    with open_video(path) as container:
        if not container.streams.video:
            raise VideoError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = -1
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index != wanted[next_wanted]:
                    continue
                frames[index] = _to_rgb(frame, max_side)
                next_wanted += 1
                if next_wanted == len(wanted):
                    return frames
        except av.error.FFmpegError as error:
            raise VideoError(f"decoding stopped after frame {index + 1}: {error.strerror or error}") from None
    raise VideoError(f"clip has {index + 1} frames, frame {wanted[next_wanted]} was asked for")


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) with the long side at most `max_side`, aspect kept; never upscaled."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_rgb(frame: av.VideoFrame, max_side: int | None) -> np.ndarray:
    width, height = scaled_size(frame.width, frame.height, max_side)
    image = frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="AREA")
    # FFmpeg's display matrix angle is counterclockwise, like np.rot90 with positive k.
    turns = round(frame.rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def _check_count(num_frames: int) -> None:
    if num_frames < 1:
        raise ValueError(f"a clip needs at least one frame, got num_frames={num_frames}")


def middle_frame_index(num_frames: int) -> int:
    """The frame CoCa captions: the middle one (the earlier of the two middle frames of an even count)."""
    if num_frames < 1:
        raise ValueError(f"a clip needs at least one frame, got num_frames={num_frames}")
    return (num_frames - 1) // 2


def uniform_frame_indices(num_frames: int, count: int) -> list[int]:
    """The `count` frames of a `num_frames` clip that VideoBLIP sees, first and last included.

    VideoBLIP was trained on frames chosen this way (pytorchvideo's UniformTemporalSubsample); a clip with
    fewer frames than `count` repeats frames. One frame: the middle one.
    """
    if num_frames < 1 or count < 1:
        raise ValueError(f"num_frames and count must be at least 1, got {num_frames} and {count}")
    if count == 1:
        return [(num_frames - 1) // 2]
    return [index * (num_frames - 1) // (count - 1) for index in range(count)]
