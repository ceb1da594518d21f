"""Progress for long work: a tqdm bar on a terminal, plain log lines everywhere else (CI, files, Ray)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

Item = TypeVar("Item")
log = logging.getLogger("svd.progress")

# How often a line is logged, and how often `details` are asked for (on a terminal too: they may cost a pass
# over a whole job's stats, `pipelines/stage_stats.py`).
LOG_EVERY_SECONDS = 30.0


def track(
    items: Iterable[Item],
    total: int | None = None,
    description: str = "",
    unit: str = "it",
    count: Callable[[Item], int] | None = None,
    count_unit: str = "",
    details: Callable[[], str] | None = None,
) -> Iterator[Item]:
    """Yield `items`, reporting progress in the form that suits where the output goes: on a terminal a tqdm
    bar, else a log line every LOG_EVERY_SECONDS (as items come) and one at the end.

    `count(item)`: how many smaller things an item brings (the clips of a video), shown as a total and a rate
    since the start, `12/40 videos, 310 clips (5.2 clips/s)`; `details()`: more to show after them (each stage's
    throughput), asked for at most every LOG_EVERY_SECONDS and once at the end.
    """
    started = time.monotonic()
    done = counted = 0
    shown, shown_at = "", -LOG_EVERY_SECONDS

    def status(now: float, fresh: bool = False) -> str:
        nonlocal shown, shown_at
        if details is not None and (fresh or now - shown_at >= LOG_EVERY_SECONDS):
            shown, shown_at = details(), now
        rate = counted / (now - started) if now > started else 0.0
        counts = f"{counted} {count_unit} ({rate:.1f} {count_unit}/s)" if count is not None else ""
        return "; ".join(part for part in (counts, shown) if part)

    if sys.stderr.isatty() and log.isEnabledFor(logging.INFO):
        with tqdm(total=total, desc=description, unit=unit, dynamic_ncols=True) as bar:
            for item in items:
                yield item
                counted += count(item) if count is not None else 0
                bar.set_postfix_str(status(time.monotonic()), refresh=False)
                bar.update()
            bar.set_postfix_str(status(time.monotonic(), fresh=True))
        return
    last_report = started
    for done, item in enumerate(items, start=1):
        yield item
        counted += count(item) if count is not None else 0
        now = time.monotonic()
        if now - last_report >= LOG_EVERY_SECONDS:
            last_report = now
            of_total = f"/{total}" if total is not None else ""
            log.info("%s: %d%s %s%s (%.0f s)", description, done, of_total, unit, _after(status(now)), now - started)
    now = time.monotonic()
    log.info("%s: done, %d %s in %.1f s%s", description, done, unit, now - started, _after(status(now, fresh=True)))


def _after(status: str) -> str:
    return f", {status}" if status else ""
