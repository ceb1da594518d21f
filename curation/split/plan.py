"""The clip length policy, from a scan's boundaries to the clips to write, and the clips' keys.

Keys come from a content hash of the source plus the frame range, so a rerun gives the same keys.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from curation.config import SplitConfig
from curation.split.detection import SceneScan

HASH_SAMPLE_BYTES = 1 << 20  # the content hash reads the size and three 1 MiB samples, not the whole file


@dataclass(frozen=True)
class PlannedClip:
    """A range to write: [start, end) in source frames, with what bounds it."""

    start: int
    end: int
    before: str
    after: str
    scene_start: int
    scene_end: int


@dataclass(frozen=True)
class Plan:
    clips: list[PlannedClip]
    scenes: int
    too_short: int  # scenes (or what was left after keyframe snapping) under min_seconds
    no_keyframe: int  # stream copy only: no keyframe inside the scene
    too_short_spans: list[tuple[int, int]]  # the frames of scenes (or chunks) under min_seconds, [start, end)


def plan_clips(scan: SceneScan, config: SplitConfig) -> Plan:
    """Apply the length policy to the shots between boundaries; snap starts to keyframes for `cut: copy`."""
    fps = scan.info.fps
    min_frames = math.ceil(config.min_seconds * fps - 1e-6)
    max_frames = max(min_frames, math.floor(config.max_seconds * fps + 1e-6))
    clips: list[PlannedClip] = []
    too_short_spans: list[tuple[int, int]] = []
    scenes = too_short = no_keyframe = 0
    for start, end, before, after in _scenes(scan):
        scenes += 1
        if end - start < min_frames:
            too_short += 1
            too_short_spans.append((start, end))
            continue
        pieces = math.ceil((end - start) / max_frames)
        edges = [start + round(i * (end - start) / pieces) for i in range(pieces + 1)]
        for i in range(pieces):
            a, b = edges[i], edges[i + 1]
            if config.cut == "copy":
                keyframe = _next_keyframe(scan.keyframes, a)
                if keyframe is None or keyframe >= b:
                    no_keyframe += 1
                    continue
                a = keyframe
            if b - a < min_frames:
                too_short += 1
                if config.cut != "copy":  # short by itself; after keyframe snapping, it is alignment that lost it
                    too_short_spans.append((a, b))
                continue
            clips.append(
                PlannedClip(a, b, before if i == 0 else "chunk", after if i == pieces - 1 else "chunk", start, end)
            )
    return Plan(clips, scenes, too_short, no_keyframe, too_short_spans)


def _scenes(scan: SceneScan):
    """Frame ranges between boundaries, with the kind of boundary on each side."""
    position, before = 0, "start"
    for boundary in scan.boundaries:
        if boundary.start > position:
            yield position, min(boundary.start, scan.num_frames), before, boundary.kind
        position, before = max(position, boundary.end), boundary.kind
    if position < scan.num_frames:
        yield position, scan.num_frames, before, "end"


def _next_keyframe(keyframes: list[int], frame: int) -> int | None:
    i = bisect.bisect_left(keyframes, frame)
    return keyframes[i] if i < len(keyframes) else None


def content_hash(path: str | Path) -> str:
    """sha256 of the size and three samples (start, middle, end): stable across reruns, cheap for 4K hours."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as file:
        for offset in (0, max(0, size // 2 - HASH_SAMPLE_BYTES // 2), max(0, size - HASH_SAMPLE_BYTES)):
            file.seek(offset)
            digest.update(file.read(HASH_SAMPLE_BYTES))
    return digest.hexdigest()


def clip_key(source_name: str, identity: str, source_hash: str, start: int, end: int) -> str:
    """A readable, filesystem- and WebDataset-safe key: no dots, slashes or non-ASCII characters.

    Unique in a run by construction: a run's inputs are distinct locations (`identity`, the input as the job
    names it), and an input's clips distinct frame ranges; the content hash changes the key when the file
    does. 96 bits of digest: at 10^9 clips a collision has odds of about 10^-11.
    """
    ascii_name = unicodedata.normalize("NFKD", Path(source_name).stem).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", ascii_name).strip("_-")[:40] or "video"
    digest = hashlib.sha256(f"{identity}\0{source_hash}:{start}:{end}".encode()).hexdigest()[:24]
    return f"{slug}-{digest}"
