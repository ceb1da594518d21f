"""Motion score: how much a clip moves, from dense optical flow on tiny frames (the SVD paper's filter).

Frames sampled at `sample_fps` (2 fps) are area-resized so the short side is `short_side` (16 px), turned
grey, and OpenCV's Farneback flow is computed between consecutive samples. The score is the mean flow
magnitude over every pixel and every step, in pixels of the small frame per sampled step. At that size
texture and noise vanish and only motion of the picture as a whole is left, which is what the paper
filters on. `motion_bucket_id` turns the score into SVD's 0-255 micro-conditioning value.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from curation.config import MotionConfig

MAX_BUCKET = 255  # SVD's motion_bucket_id range is 0..255


def motion_score(frames: Sequence[np.ndarray], config: MotionConfig) -> float:
    """Mean Farneback flow magnitude between consecutive frames (RGB uint8, already sampled in time)."""
    if len(frames) < 2:
        raise ValueError(f"motion needs at least two sampled frames, got {len(frames)}")
    grey = [_small_grey(frame, config.short_side) for frame in frames]
    flow_config = config.farneback
    magnitudes = []
    for previous, current in zip(grey, grey[1:], strict=False):
        flow = cv2.calcOpticalFlowFarneback(
            previous,
            current,
            None,
            flow_config.pyr_scale,
            flow_config.levels,
            flow_config.winsize,
            flow_config.iterations,
            flow_config.poly_n,
            flow_config.poly_sigma,
            0,
        )
        magnitudes.append(float(np.linalg.norm(flow, axis=2).mean()))
    return float(np.mean(magnitudes))


def motion_bucket_id(score: float, config: MotionConfig) -> int:
    """Linear map of the motion score to 0..255: `bucket_max_motion` and above give 255."""
    if not np.isfinite(score) or score < 0:
        raise ValueError(f"motion score must be a finite number >= 0, got {score}")
    return int(min(MAX_BUCKET, round(MAX_BUCKET * score / config.bucket_max_motion)))


def _small_grey(frame: np.ndarray, short_side: int) -> np.ndarray:
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an RGB frame (H, W, 3), got shape {frame.shape}")
    height, width = frame.shape[:2]
    scale = short_side / min(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Area averaging when shrinking (no aliasing); a frame already smaller is enlarged smoothly.
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(frame, size, interpolation=interpolation)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
