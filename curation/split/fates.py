"""Where each frame of a source went, so a user sees what splitting cut away and why.

Every frame has exactly one fate, the first that applies:
  clip        written into a clip (whether the filter later keeps it is the clip's row)
  transition  inside a detected transition (a dissolve, fade or wipe; a hard cut holds no frame)
  too_short   in a scene shorter than `split.min_seconds`
  alignment   in a usable scene but not written: before the first keyframe (stream copy starts there), in a
              scene without a keyframe, or cut off where B-frame reordering ends a copied clip early
The spans of one source cover its frames [0, num_frames) without gap or overlap, in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

CLIP, TRANSITION, TOO_SHORT, ALIGNMENT = "clip", "transition", "too_short", "alignment"
FATES = (CLIP, TRANSITION, TOO_SHORT, ALIGNMENT)  # in order of precedence

Span = tuple[int, int, str]  # [start, end) and the fate of those frames
# The split counts (summary.json) of each fate's frames.
FATE_COUNTS = {
    CLIP: "frames_in_clips",
    TRANSITION: "frames_in_transitions",
    TOO_SHORT: "frames_in_too_short_scenes",
    ALIGNMENT: "frames_lost_to_alignment",
}


def frame_fates(
    num_frames: int,
    transitions: Iterable[tuple[int, int]],
    too_short: Iterable[tuple[int, int]],
    clips: Iterable[tuple[int, int]],
) -> list[Span]:
    """The fate of every frame as runs of one fate, from the frame ranges [start, end) of each kind."""
    fate = np.full(num_frames, FATES.index(ALIGNMENT), dtype=np.int8)
    for name, ranges in ((TOO_SHORT, too_short), (TRANSITION, transitions), (CLIP, clips)):  # later ones win
        for start, end in ranges:
            fate[max(0, start) : min(num_frames, end)] = FATES.index(name)
    if num_frames == 0:
        return []
    changes = np.flatnonzero(np.diff(fate)) + 1
    starts = [0, *changes.tolist()]
    ends = [*changes.tolist(), num_frames]
    return [(start, end, FATES[fate[start]]) for start, end in zip(starts, ends, strict=True)]


def fate_counts(spans: Sequence[Span]) -> dict[str, int]:
    """Frames per fate (every fate present, zero where none)."""
    counts = dict.fromkeys(FATES, 0)
    for start, end, fate in spans:
        counts[fate] += end - start
    return counts
