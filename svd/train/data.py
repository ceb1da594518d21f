"""Training data: the WebDataset shards `svd curate` writes, streamed, decoded with PyAV, cut to training clips.

Each sample of a shard is `KEY.mp4` (the clip), `KEY.json` (its record: fps, motion_bucket_id, captions...)
and `KEY.txt`. One training example is the `num_frames` frames of the clip's bucket (`svd.train.buckets`: the
one nearest its aspect ratio) taken every `stride` frames from a random start (any possible one, or one of
`windows_per_clip` fixed windows), resized to cover the bucket's height x width and centre-cropped, with one caption picked among the clip's CoCa, V-BLIP and LLM captions, and the clip's fps (of
the sampled frames) and motion bucket for micro-conditioning. With a latent cache (`svd.train.latents`) each
example also carries its cache key and, when the worker found it there, the window's VAE posterior moments.

Order and resume. Shards are split between ranks (`shards[rank::world]`) and then between a rank's DataLoader
workers; each worker loops over epochs of its own shards, reshuffled per epoch from (seed, rank, worker,
epoch), through a shuffle buffer. Every random choice about a sample (start frame, caption) comes from a
generator seeded by (seed, rank, worker, index of the sample in the worker's stream), so the stream is a pure
function of the config: to resume, the main process says how many items it took, and each worker skips its
share of them before decoding anything (except the examples a checkpoint names as waiting in an unfinished
bucket batch, which are decoded again). The DataLoader takes items from its workers in turn, which makes each
worker's share exact; the main process takes them in stream order.

Broken samples never stop a run: a clip that cannot be decoded, is too short, or lacks its video comes out
as a `Skipped` item, counted by the main process (`ClipBatches.counts`).
"""

from __future__ import annotations

import glob
import io
import json
import logging
import math
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import av
import cv2
import numpy as np
import torch
import webdataset as wds
from braceexpand import braceexpand

from curation.record import CAPTION_TEXT, Column
from svd.train.buckets import Bucket, buckets_of, nearest_bucket
from svd.train.config import DataConfig
from svd.train.latents import LatentCache

log = logging.getLogger(__name__)


@dataclass
class Skipped:
    """A sample that gave no training example, and why (`unreadable`, `too_short`, `no_video`)."""

    key: str
    reason: str
    detail: str = ""
    index: int = -1  # in the rank's stream


def expand_shards(spec: str | Sequence[str] | None) -> list[str]:
    """Shard URLs from paths, globs, brace patterns and URLs; ValueError naming the pattern that matched nothing."""
    if not spec:
        raise ValueError("data.shards is not set: point it at the shards `svd curate` wrote, e.g. out/shards/*.tar")
    patterns = [spec] if isinstance(spec, str) else list(spec)
    urls: list[str] = []
    for pattern in patterns:
        for item in braceexpand(pattern):
            if "://" in item or item.startswith("pipe:"):
                urls.append(item)
                continue
            found = sorted(glob.glob(item)) if glob.has_magic(item) else ([item] if _exists(item) else [])
            if not found:
                raise ValueError(f"data.shards: {item} matches no file")
            urls.extend(found)
    return urls


def _exists(path: str) -> bool:
    import os

    return os.path.isfile(path)


def frame_stride(clip_fps: float, config: DataConfig) -> int:
    if config.fps is None:
        return config.stride
    return max(1, round(clip_fps / config.fps))


def pick_caption(record: dict, probabilities: dict[str, float], rng: np.random.Generator) -> tuple[str, str]:
    """(caption, which) with the configured probabilities over the captions the clip has; ('', 'none') if none.

    Falls back to the shipped `caption` when none of the three captioners left one.
    """
    present = {name: p for name, p in probabilities.items() if p > 0 and _text(record.get(CAPTION_TEXT[name]))}
    if present:
        names = list(present)
        weights = np.array([present[name] for name in names], dtype=np.float64)
        name = names[rng.choice(len(names), p=weights / weights.sum())]
        return _text(record.get(CAPTION_TEXT[name])), name
    shipped = _text(record.get(Column.CAPTION))
    return (shipped, "caption") if shipped else ("", "none")


def _text(value) -> str:
    return value.strip() if isinstance(value, str) else ""


def decode_clip(
    data: bytes, buckets: Sequence[Bucket], config: DataConfig, rng: np.random.Generator
) -> tuple[np.ndarray, float, list[int], Bucket]:
    """The frames of the clip's nearest bucket: (F, H, W, 3) RGB uint8 every `stride` frames from a random start,
    their fps, their indices and the bucket.

    Raises ValueError("too short ...") when the clip has too few frames, av errors when it cannot be decoded.
    """
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        bucket = nearest_bucket(buckets, stream.height, stream.width)
        num_frames = bucket.num_frames
        clip_fps = float(stream.average_rate or stream.guessed_rate or 0) or 24.0
        stride = frame_stride(clip_fps, config)
        span = (num_frames - 1) * stride + 1
        total = stream.frames  # may be 0 when the container does not say
        if total and total < span:
            raise ValueError(f"too short: {total} frames, {span} needed")
        start = window_start(total - span, config.windows_per_clip, rng) if total else 0
        wanted = range(start, start + span, stride)
        frames = []
        for index, frame in enumerate(container.decode(stream)):
            if index in wanted:
                frames.append(resize_crop(frame.to_ndarray(format="rgb24"), bucket.height, bucket.width))
                if len(frames) == num_frames:
                    break
    if len(frames) < num_frames:
        raise ValueError(f"too short: {len(frames)} of {num_frames} frames decoded")
    return np.stack(frames), clip_fps / stride, list(wanted), bucket


def window_start(last: int, windows: int | None, rng: np.random.Generator) -> int:
    """A start frame in 0..last: any (windows None), or one of `windows` fixed ones, the centres of as many equal
    parts of that range (1: the middle), so that the same windows come back epoch after epoch."""
    if windows is None:
        return int(rng.integers(0, last + 1))
    return round(last * (int(rng.integers(0, windows)) + 0.5) / windows)


def resize_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale to cover height x width (area filter when shrinking), then crop the centre."""
    h, w = image.shape[:2]
    scale = max(height / h, width / w)
    size = (max(width, math.ceil(w * scale - 1e-6)), max(height, math.ceil(h * scale - 1e-6)))
    if size != (w, h):
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return np.ascontiguousarray(image[top : top + height, left : left + width])


class ClipStream(torch.utils.data.IterableDataset):
    """One rank's endless stream of training examples (dicts) and `Skipped` items, in a reproducible order."""

    def __init__(
        self,
        urls: list[str],
        config: DataConfig,
        num_frames: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        skip: int = 0,
        replay: Sequence[int] = (),
        cache: LatentCache | None = None,
    ) -> None:
        self.urls = urls[rank::world_size]
        if not self.urls:
            raise ValueError(f"rank {rank} of {world_size} has no shard: {len(urls)} shard(s) for {world_size} ranks")
        self.config, self.seed, self.rank = config, seed, rank
        self.buckets = buckets_of(config, num_frames)
        self.num_workers = max(1, num_workers)
        self.skip = skip
        self.replay = set(replay)
        self.cache = cache
        self.probabilities = config.captions.model_dump()

    def __iter__(self) -> Iterator[dict | Skipped]:
        info = torch.utils.data.get_worker_info()
        # The DataLoader takes items from its workers 0, 1, ... in turn, starting again at 0 on resume: item j of
        # the stream comes from logical worker j % num_workers, which skips the items it gave before `skip`, except
        # those to `replay` (taken before a checkpoint, but still waiting in a bucket's unfinished batch).
        workers = self.num_workers
        worker = ((info.id if info is not None else 0) + self.skip) % workers
        urls = self.urls[worker::workers]
        skip = (self.skip - worker + workers - 1) // workers
        again = {index // workers for index in self.replay if index % workers == worker}
        for index, sample in enumerate(self._raw_samples(urls, worker)):
            if index < skip and index not in again:
                continue
            rng = np.random.default_rng([self.seed, self.rank, worker, index])
            item = self._example(sample, rng)
            if isinstance(item, Skipped):
                item.index = index * workers + worker
            else:
                item["index"] = index * workers + worker
            yield item

    def _raw_samples(self, urls: list[str], worker: int) -> Iterator[dict]:
        """Undecoded samples, shuffled, epoch after epoch (or resampled shards forever)."""
        for epoch in range(1_000_000_000):
            rng = random.Random(f"{self.seed}-{self.rank}-{worker}-{epoch}")
            if self.config.resample:
                order = [rng.choice(urls) for _ in range(len(urls))]
            else:
                order = rng.sample(urls, len(urls))
            samples = wds.tarfile_to_samples(handler=wds.warn_and_continue)(iter([{"url": u} for u in order]))
            count = 0
            for sample in _shuffled(samples, self.config.shuffle_buffer, rng):
                count += 1
                yield sample
            if count == 0:
                log.warning("worker %d of rank %d: its shards hold no samples; it stops", worker, self.rank)
                return

    def _example(self, sample: dict, rng: np.random.Generator) -> dict | Skipped:
        key = sample.get("__key__", "?")
        try:
            record = json.loads(sample["json"]) if "json" in sample else {}
        except ValueError:
            record = {}
        if "mp4" not in sample:
            return Skipped(key, "no_video")
        try:
            frames, fps, indices, bucket = decode_clip(sample["mp4"], self.buckets, self.config, rng)
        except ValueError as error:
            reason = "too_short" if str(error).startswith("too short") else "unreadable"
            return Skipped(key, reason, str(error))
        except (av.error.FFmpegError, IndexError, OSError) as error:  # IndexError: no video stream
            return Skipped(key, "unreadable", f"{type(error).__name__}: {error}")
        caption, source = pick_caption(record, self.probabilities, rng)
        motion = record.get(Column.MOTION_BUCKET_ID)
        example = {
            "key": key,
            "bucket": bucket.name,
            "frames": torch.from_numpy(frames).permute(0, 3, 1, 2),  # (F, 3, H, W) uint8
            "caption": caption,
            "caption_source": source,
            "fps": float(fps),
            "motion_bucket_id": int(motion) if motion is not None else self.config.default_motion_bucket_id,
            "motion_bucket_default": motion is None,
        }
        if self.cache is not None:
            example["cache_key"] = self.cache.key(sample["mp4"], indices, bucket.height, bucket.width)
            example["moments"], example["cache_status"] = self.cache.load(example["cache_key"], bucket.num_frames)
        return example


def _index(item: dict | Skipped) -> int:
    return item.index if isinstance(item, Skipped) else item["index"]


def _shuffled(samples: Iterator[dict], size: int, rng: random.Random) -> Iterator[dict]:
    """A shuffle buffer: keep `size` samples, emit a random one as each new one arrives."""
    buffer: list[dict] = []
    for sample in samples:
        if len(buffer) < size:
            buffer.append(sample)
            continue
        index = rng.randrange(size)
        buffer[index], sample = sample, buffer[index]
        yield sample
    rng.shuffle(buffer)
    yield from buffer


class ClipBatches:
    """Batches of examples from a `ClipStream` through a DataLoader, each of one bucket; counts what was skipped.

    Items are taken in the stream's order (a small buffer puts back the order the DataLoader's workers
    interleave), and each example waits in its bucket until that bucket has `batch_size` of them. The data state
    a checkpoint stores is `position`, the number of items taken (examples and skipped ones), and `waiting()`,
    the stream indices of the examples still waiting in unfinished batches: on resume these are decoded again
    (identically: every random choice about a sample comes from its index) and put back first, so batches
    continue exactly. With a `cache`, batches also hold `cache_keys` and `moments` (None where the cache had no
    readable entry) and `counts` the lookups (`latent_cache_hit`, `_miss`, `_unreadable`).
    """

    def __init__(
        self,
        config: DataConfig,
        num_frames: int,
        batch_size: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        position: int = 0,
        waiting: Sequence[int] = (),
        cache: LatentCache | None = None,
    ) -> None:
        urls = expand_shards(config.shards)
        shards_here = len(urls[rank::world_size])
        workers = min(config.num_workers, shards_here)
        if workers < config.num_workers:
            log.info(
                "%d DataLoader worker(s), not %d: rank %d has %d shard(s)",
                workers,
                config.num_workers,
                rank,
                shards_here,
            )
        self.stream = ClipStream(
            urls,
            config,
            num_frames,
            seed=seed,
            rank=rank,
            world_size=world_size,
            num_workers=workers,
            skip=position,
            replay=waiting,
            cache=cache,
        )
        self.loader = torch.utils.data.DataLoader(
            self.stream,
            batch_size=None,
            num_workers=workers,
            persistent_workers=False,
            prefetch_factor=4 if workers else None,
        )
        self.batch_size = batch_size
        self.cache = cache
        self.position = position
        self.counts: Counter[str] = Counter()
        self._items = iter(self.loader)
        self._early: dict[int, dict | Skipped] = {}  # items that came before their turn, by stream index
        self._buckets: dict[str, list[dict]] = {}  # examples waiting for their bucket's batch to fill
        replays = set(waiting)
        while replays:  # the examples that waited at the checkpoint come back first, each from its worker
            item = self._receive()
            if _index(item) in replays:
                replays.discard(item["index"])
                self._buckets.setdefault(item["bucket"], []).append(item)
            else:
                self._early[_index(item)] = item
        for examples in self._buckets.values():
            examples.sort(key=lambda example: example["index"])

    def waiting(self) -> list[int]:
        """Stream indices of the examples taken but not yet in a batch (for the checkpoint)."""
        return sorted(example["index"] for examples in self._buckets.values() for example in examples)

    def __iter__(self):
        return self

    def _receive(self) -> dict | Skipped:
        return next(self._items)  # StopIteration: every worker ran dry (shards without samples)

    def _take(self) -> dict | Skipped:
        """The next item in stream order."""
        while self.position not in self._early:
            item = self._receive()
            self._early[_index(item)] = item
        self.position += 1
        return self._early.pop(self.position - 1)

    def __next__(self) -> dict:
        while True:
            item = self._take()
            if isinstance(item, Skipped):
                self.counts[f"skipped_{item.reason}"] += 1
                log.warning("skipped %s (%s): %s", item.key, item.reason, item.detail)
                continue
            self.counts["examples"] += 1
            self.counts["no_caption"] += item["caption_source"] == "none"
            self.counts["default_motion_bucket"] += item["motion_bucket_default"]
            if self.cache is not None:
                self.counts[f"latent_cache_{item['cache_status']}"] += 1
            waiting = self._buckets.setdefault(item["bucket"], [])
            waiting.append(item)
            if len(waiting) == self.batch_size:
                examples = self._buckets.pop(item["bucket"])
                break
        batch = {
            "keys": [e["key"] for e in examples],
            "bucket": examples[0]["bucket"],
            "frames": torch.stack([e["frames"] for e in examples]),  # (B, F, 3, H, W) uint8
            "captions": [e["caption"] for e in examples],
            "fps": torch.tensor([e["fps"] for e in examples]),
            "motion_bucket_id": torch.tensor([e["motion_bucket_id"] for e in examples], dtype=torch.float32),
        }
        if self.cache is not None:
            batch["cache_keys"] = [e["cache_key"] for e in examples]
            batch["moments"] = [e["moments"] for e in examples]
        return batch
