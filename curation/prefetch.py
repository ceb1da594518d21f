"""Run an iterator in a background thread, so producing the next item overlaps with using this one.

Decoding and scaling (FFmpeg, OpenCV) release the GIL, so while the detectors look at frame n, frame n+1
is being decoded on another core. The queue is bounded: memory stays at `depth` items.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(items: Iterable[T], depth: int = 16) -> Iterator[T]:
    """Yield what `items` yields, produced ahead in a thread; its exceptions are raised here, in order."""
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put(item):
                    return
        except BaseException as error:  # handed to the consumer, which raises it
            put(_Failure(error))
            return
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:  # a generator: run its `finally`/`with` blocks in this thread, now
                close()
        put(_DONE)

    worker = threading.Thread(target=produce, name="prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()  # the consumer stopped early or failed: let the producer finish and close its file
        worker.join()
