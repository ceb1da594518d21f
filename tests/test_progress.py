"""Progress: log lines where the output is not a terminal, a tqdm bar where it is; items, counts, rates, details."""

from __future__ import annotations

import io
import logging
import re
import sys

from curation import progress
from curation.progress import track

VIDEOS = [{"clips": 3}, {"clips": 0}, {"clips": 2}]


def test_log_lines_give_the_items_their_counts_a_rate_and_the_details(monkeypatch, caplog):
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    monkeypatch.setattr(progress, "LOG_EVERY_SECONDS", 0.0)  # a line after every item
    caplog.set_level(logging.INFO, logger="svd.progress")
    asked = []

    def details() -> str:
        asked.append(1)
        return f"split {len(asked)} rows"

    items = track(VIDEOS, 3, "curate", "videos", lambda video: video["clips"], "clips", details)
    assert list(items) == VIDEOS
    lines = [record.getMessage() for record in caplog.records]
    rate = r"\([0-9.]+ clips/s\)"
    assert re.fullmatch(rf"curate: 1/3 videos, 3 clips {rate}; split 1 rows \(\d+ s\)", lines[0])
    assert re.fullmatch(rf"curate: 3/3 videos, 5 clips {rate}; split 3 rows \(\d+ s\)", lines[2])
    assert re.fullmatch(rf"curate: done, 3 videos in [0-9.]+ s, 5 clips {rate}; split 4 rows", lines[3])


def test_without_counts_or_details_the_lines_are_as_before(monkeypatch, caplog):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    caplog.set_level(logging.INFO, logger="svd.progress")
    assert list(track(range(4), 4, "shards", "files")) == [0, 1, 2, 3]
    assert re.fullmatch(r"shards: done, 4 files in [0-9.]+ s", caplog.records[-1].getMessage())


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_bar_shows_the_counts_and_the_details(monkeypatch, caplog):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    caplog.set_level(logging.INFO, logger="svd.progress")
    items = track(VIDEOS, 3, "curate", "videos", lambda video: video["clips"], "clips", lambda: "split 5 rows")
    assert list(items) == VIDEOS
    assert not caplog.records  # the bar, not log lines
    final = terminal.getvalue().split("\r")[-1]
    assert re.search(r"curate: .*3/3 .*5 clips \([0-9.]+ clips/s\); split 5 rows", final), final
