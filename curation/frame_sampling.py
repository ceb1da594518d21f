"""Which frames of a clip each stage looks at, as indices in presentation order from 0.

Motion wants frames at 2 fps, OCR and CLIP the first, middle and last, CoCa the middle one, VideoBLIP N
uniform ones: the stages name frame indices, `stages.frame_plan` merges them, and `video_io.decode_frames`
decodes the clip once for all of them.
"""

from __future__ import annotations

import math


def key_indices(num_frames: int) -> list[int]:
    """First, middle and last frame (fewer when the clip has fewer frames)."""
    return sorted({0, middle_frame_index(num_frames), num_frames - 1})


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


def _check_count(num_frames: int) -> None:
    if num_frames < 1:
        raise ValueError(f"a clip needs at least one frame, got num_frames={num_frames}")


def middle_frame_index(num_frames: int) -> int:
    """The frame CoCa captions: the middle one (the earlier of the two middle frames of an even count)."""
    _check_count(num_frames)
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
