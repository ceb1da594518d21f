"""Resolution, aspect-ratio and frame-count buckets (`data.buckets`).

Each clip goes to the bucket whose aspect ratio is nearest its own (in log ratio, so 2:1 and 1:2 are as far
from 1:1), and is resized to cover that bucket and centre-cropped to it: a portrait clip trains in portrait,
not as a landscape crop of its middle. A batch holds one bucket only (`svd.train.data.ClipBatches`). Without
`data.buckets` there is one bucket, `data.height` x `data.width` at `model.num_frames`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from svd.train.config import DataConfig


@dataclass(frozen=True)
class Bucket:
    height: int
    width: int
    num_frames: int

    @property
    def name(self) -> str:
        return f"{self.height}x{self.width}x{self.num_frames}"


def buckets_of(config: DataConfig, num_frames: int) -> list[Bucket]:
    """The configured buckets (frame counts defaulting to `num_frames`), or the one of height x width."""
    if not config.buckets:
        return [Bucket(config.height, config.width, num_frames)]
    return [Bucket(b.height, b.width, b.num_frames or num_frames) for b in config.buckets]


def nearest_bucket(buckets: Sequence[Bucket], height: int, width: int) -> Bucket:
    """The bucket nearest `width / height` in log aspect ratio; ties go to the first listed."""
    ratio = math.log(width / height)
    return min(buckets, key=lambda bucket: abs(math.log(bucket.width / bucket.height) - ratio))
