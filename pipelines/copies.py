"""Inputs that are the same file, found before any is split (`dedup.exact`): by size first, then by the sha256 of
the whole content of the inputs whose sizes collide.

A crawl's copies (the same upload in two folders, under two names) have equal sizes, and files of equal size are
few otherwise, so only those are read. Both passes are tasks (`selection.Run`: on Ray, or here), a batch of
inputs each: the driver holds a size and a digest per input. Of the inputs with one content, the first in input
order is the original; every later one is its copy, whatever the names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from pipelines.selection import Run
from pipelines.storage import LocationError, filesystem

BATCH_INPUTS = 64  # inputs per task: a stat is quick, a task's start is not
READ_BYTES = 8 << 20


def sizes(batch: int, sources: Sequence[str]) -> tuple[int, list[int | None]]:
    """Task: each input's size in bytes; None for one that cannot be looked at (the split stage says why)."""
    found: list[int | None] = []
    for source in sources:
        try:
            fs, path = filesystem(source)
            found.append(int(fs.size(path)))
        except (OSError, LocationError, ValueError):
            found.append(None)
    return batch, found


def digests(batch: int, sources: Sequence[str]) -> tuple[int, list[str | None]]:
    """Task: the sha256 of each input's whole content, read a piece at a time; None for one that cannot be read."""
    found: list[str | None] = []
    for source in sources:
        digest = hashlib.sha256()
        try:
            fs, path = filesystem(source)
            with fs.open(path, "rb") as file:
                while piece := file.read(READ_BYTES):
                    digest.update(piece)
            found.append(digest.hexdigest())
        except (OSError, LocationError, ValueError):
            found.append(None)
    return batch, found


def find_copies(sources: Sequence[str], run: Run) -> dict[str, str]:
    """Every input that is the same file as an earlier one: copy -> the first input with its content."""
    input_sizes = _in_batches(sizes, list(sources), run)
    by_size: dict[int, list[str]] = {}
    for source, size in zip(sources, input_sizes, strict=True):
        if size is not None:
            by_size.setdefault(size, []).append(source)
    colliding = [source for group in by_size.values() if len(group) > 1 for source in group]
    rank = {source: position for position, source in enumerate(sources)}
    colliding.sort(key=rank.__getitem__)
    first: dict[tuple[int, str], str] = {}
    copies: dict[str, str] = {}
    for source, digest in zip(colliding, _in_batches(digests, colliding, run), strict=True):
        if digest is None:
            continue
        original = first.setdefault((input_sizes[rank[source]], digest), source)
        if original != source:
            copies[source] = original
    return copies


def _in_batches(task, sources: list[str], run: Run) -> list:
    """`task` over `sources` in batches of BATCH_INPUTS, as tasks; the results in input order."""
    batches = [sources[start : start + BATCH_INPUTS] for start in range(0, len(sources), BATCH_INPUTS)]
    results = run(task, list(enumerate(batches)))
    return [value for _, values in sorted(results, key=lambda result: result[0]) for value in values]
