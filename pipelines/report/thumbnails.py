"""Thumbnails of clips for the contact sheets: the JPEG saved while splitting, or one made from the clip file;
or why a clip has none."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import av

from curation.record import Column
from curation.thumbnail import middle_frame_jpeg


@dataclass(frozen=True)
class Thumbnail:
    """A clip's thumbnail (`jpeg`), or `problem`: why it has none."""

    jpeg: bytes | None = None
    problem: str = ""


class Thumbnails:
    """Thumbnails of a run's clips: those saved while splitting (`saved`, key -> JPEG), else made from the clip file
    (`read_clip(path)`, for a run that saved none), each once however often it is asked for."""

    def __init__(self, read_clip: Callable[[str], bytes], width: int, saved: Mapping[str, bytes] | None = None):
        self.read_clip = read_clip
        self.width = width
        self.saved = saved or {}
        self.made: dict[str, Thumbnail] = {}

    def of(self, row: dict) -> Thumbnail:
        key = row[Column.KEY]
        if key not in self.made:
            self.made[key] = self._make(row)
        return self.made[key]

    def _make(self, row: dict) -> Thumbnail:
        if row[Column.KEY] in self.saved:
            return Thumbnail(self.saved[row[Column.KEY]])
        if not row.get(Column.PATH):
            return Thumbnail(problem="no clip file")
        try:
            data = self.read_clip(row[Column.PATH])
        except FileNotFoundError:
            return Thumbnail(problem="clip file missing")
        except OSError as error:
            return Thumbnail(problem=f"clip file unreadable: {error}")
        try:
            return Thumbnail(middle_frame_jpeg(io.BytesIO(data), row.get(Column.NUM_FRAMES), self.width))
        except av.error.FFmpegError as error:
            return Thumbnail(problem=f"clip cannot be decoded: {error.strerror or error}")
        except ValueError as error:
            return Thumbnail(problem=f"clip cannot be decoded: {error}")
