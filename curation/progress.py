"""Progress for long work: a tqdm bar on a terminal, plain log lines everywhere else (CI, files, Ray)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

Item = TypeVar("Item")
log = logging.getLogger("svd.progress")

LOG_EVERY_SECONDS = 30.0


def track(items: Iterable[Item], total: int | None = None, description: str = "", unit: str = "it") -> Iterator[Item]:
    """Yield `items`, reporting progress in the form that suits where the output goes."""
    interactive = sys.stderr.isatty() and log.isEnabledFor(logging.INFO)
    if interactive:
        yield from tqdm(items, total=total, desc=description, unit=unit, dynamic_ncols=True)
        return
    started = last_report = time.monotonic()
    count = 0
    for count, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last_report >= LOG_EVERY_SECONDS:
            last_report = now
            of_total = f"/{total}" if total is not None else ""
            log.info("%s: %d%s %s (%.0f s)", description, count, of_total, unit, now - started)
    log.info("%s: done, %d %s in %.1f s", description, count, unit, time.monotonic() - started)
