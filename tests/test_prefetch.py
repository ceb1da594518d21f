import threading

import pytest

from curation.prefetch import prefetch


def test_yields_everything_in_order():
    assert list(prefetch(range(100), depth=3)) == list(range(100))


def test_producer_error_is_raised_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise ValueError("broken at 3")

    seen = []
    with pytest.raises(ValueError, match="broken at 3"):
        for item in prefetch(items()):
            seen.append(item)
    assert seen == [1, 2]


def test_stopping_early_closes_the_producer_in_its_thread():
    closed = threading.Event()

    def items():
        try:
            yield from range(10_000)
        finally:
            closed.set()

    for item in prefetch(items(), depth=2):
        if item == 5:
            break
    assert closed.is_set()  # joined before the consumer goes on: the file a generator holds is closed
    assert not any(thread.name == "prefetch" for thread in threading.enumerate())
