"""WebDataset shards of the kept clips: `shard-NNNNNN.tar`, each sample `KEY.mp4`, `KEY.json`, `KEY.txt`.

A shard is written under a temporary name and moved to its own when complete, so a reader (or a resumed run)
never sees half a shard. Shards roll over at `max_samples` samples or `max_bytes` bytes, whichever
comes first (a single clip larger than `max_bytes` gets a shard of its own).
"""

from __future__ import annotations

import json
import re

import webdataset as wds

from pipelines.storage import Folder

SHARD_PATTERN = "shard-{index:06d}.tar"
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")  # WebDataset splits a name at its first dot: keys have none


class ShardWriter:
    """Write samples in order into `folder` of `output`; `close()` finishes the last shard and returns the
    names of the shards written."""

    def __init__(self, output: Folder, folder: str, max_samples: int, max_bytes: int, first_index: int = 0):
        self.output = output
        self.folder = folder
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self.index = first_index
        self.written: list[str] = []
        self._file = None
        self._tar: wds.TarWriter | None = None
        self._samples = 0
        self._bytes = 0

    def write(self, key: str, video: bytes, record: dict, caption: str) -> None:
        if not _SAFE_KEY.match(key):
            raise ValueError(f"unsafe sample key {key!r}: keys are letters, digits, '_' and '-' only")
        payload = sample_json(record)
        size = sample_size(len(video), payload, caption)
        if self._tar is not None and _rolls_over(self._samples, self._bytes, size, self.max_samples, self.max_bytes):
            self._finish()
        if self._tar is None:
            self._start()
        self._tar.write({"__key__": key, "mp4": video, "json": payload, "txt": caption})
        self._samples += 1
        self._bytes += size

    def close(self) -> list[str]:
        if self._tar is not None:
            self._finish()
        return self.written

    def _name(self) -> str:
        return f"{self.folder}/{SHARD_PATTERN.format(index=self.index)}"

    def _start(self) -> None:
        # A fixed mtime makes the shards of a resumed run byte-identical to those of an uninterrupted one.
        self._file = self.output.open_partial(self._name())
        self._tar = wds.TarWriter(self._file, mtime=0)
        self._samples = self._bytes = 0

    def _finish(self) -> None:
        self._tar.close()
        self._file.close()  # the tar writer does not close a file object it was given
        self.output.publish(self._name())
        self.written.append(self._name().rsplit("/", 1)[1])
        self._tar = self._file = None
        self.index += 1


def sample_json(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False, sort_keys=True).encode()


def sample_size(video_bytes: int, payload: bytes, caption: str) -> int:
    """What a sample adds to a shard, as the rollover counts it."""
    return video_bytes + len(payload) + len(caption.encode()) + 3 * 1024  # tar headers


def count_shards(sizes: list[int], max_samples: int, max_bytes: int) -> int:
    """How many shards `ShardWriter` fills with samples of these sizes, in this order (without writing them)."""
    shards = samples = total = 0
    for size in sizes:
        if shards == 0 or _rolls_over(samples, total, size, max_samples, max_bytes):
            shards, samples, total = shards + 1, 0, 0
        samples, total = samples + 1, total + size
    return shards


def _rolls_over(samples: int, total: int, size: int, max_samples: int, max_bytes: int) -> bool:
    """Whether a sample of `size` bytes starts a new shard after one of `samples` samples and `total` bytes."""
    return samples >= max_samples or total + size > max_bytes


def clear_shards(output: Folder, folder: str) -> None:
    """Remove every shard and partial shard, before the shards of a run are (re)written."""
    for name in output.list(folder, "shard-*.tar*"):
        output.remove(f"{folder}/{name}")
