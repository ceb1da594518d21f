"""Longer image-to-video: a video extended segment by segment, each conditioned on the one before.

Segment 1 is the plain video of the image. Segment k + 1 is a new video conditioned on frame F - overlap of segment
k (its last frame, with the default overlap of 1): SVD's first frame reproduces its conditioning frame, so the new
segment's first `overlap` frames lie over the old one's last `overlap`, and those are cross-faded (linearly, the old
segment's weight falling across the overlap). So N segments of F frames make N F - (N - 1) overlap frames.

Segment k (from 0) of a video with seed s is sampled with seed s + k * SEGMENT_SEED_STRIDE (mod 2^32): with one
segment the video is exactly the plain run's, and two images' segments never share a seed unless a run holds more
than a million images. The seeds are reported in `--json`.

Known limits: each segment sees only one frame of the past, so motion may change direction at a join, and what
leaves the frame is forgotten. Every segment re-encodes its conditioning frame through the VAE, and guidance pushes
colours a little each time, so colours and contrast drift, more with every segment. A larger `overlap` hides the
join over more frames but conditions each segment on an older frame; a lower `noise_aug_strength` keeps each
segment closer to its conditioning frame (less drift, less motion).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import PIL.Image

from svd.generate.generator import GeneratedVideos, VideoGenerator
from svd.generate.options import SampleSettings
from svd.generate.output import to_uint8

SEGMENT_SEED_STRIDE = 1_000_003


def segment_seed(seed: int, segment: int) -> int:
    return (seed + segment * SEGMENT_SEED_STRIDE) % 2**32


def total_frames(frames_per_segment: int, segments: int, overlap: int) -> int:
    return segments * frames_per_segment - (segments - 1) * overlap


@dataclass
class SegmentedVideos:
    frames: np.ndarray  # (batch, total_frames(...), H, W, 3) float32 in [0, 1]
    segments: list[GeneratedVideos]  # each segment's own videos, before the joins are blended
    seeds: list[list[int]]  # per video, each segment's seed
    timings: dict[str, float] = field(default_factory=dict)


def extend(
    generator: VideoGenerator,
    images: Sequence[PIL.Image.Image],
    seeds: Sequence[int],
    settings: SampleSettings,
    *,
    progress: bool = False,
) -> SegmentedVideos:
    """`settings.segments` segments per image, joined over `settings.overlap` frames."""
    settings = generator.resolve(settings)
    overlap, frames = settings.overlap, settings.num_frames
    done = [generator(images, list(seeds), settings, progress=progress)]
    video = done[0].frames
    fade = np.linspace(1, 0, overlap + 2)[1:-1].reshape(1, overlap, 1, 1, 1)  # the old segment's weight
    for segment in range(1, settings.segments):
        conditions = [PIL.Image.fromarray(frame) for frame in to_uint8(done[-1].frames[:, frames - overlap])]
        done.append(generator(conditions, [segment_seed(s, segment) for s in seeds], settings, progress=progress))
        new = done[-1].frames
        joined = fade * video[:, -overlap:] + (1 - fade) * new[:, :overlap]
        video = np.concatenate([video[:, :-overlap], joined.astype(np.float32), new[:, overlap:]], axis=1)
    timings: dict[str, float] = {}
    for part in done:
        for name, seconds in part.timings.items():
            timings[name] = timings.get(name, 0.0) + seconds
    seed_lists = [[segment_seed(s, k) for k in range(settings.segments)] for s in seeds]
    return SegmentedVideos(video, done, seed_lists, timings)
