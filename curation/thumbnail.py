"""A clip's thumbnail: its middle frame, as displayed, as a small JPEG. Saved while splitting (the report's
contact sheets show it, so they need no clip file)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import av
from PIL import Image

from curation.video_io import displayed

JPEG_QUALITY = 80


def middle_frame_jpeg(video: str | Path | BinaryIO, num_frames: int | None, width: int) -> bytes:
    """A JPEG of a clip's middle frame (`video`: a path or a binary file), as displayed (rotation applied), at most
    `width` px wide.

    The decoder seeks to the keyframe before the middle and decodes from there (one GOP, not half the clip);
    where that finds nothing (no frame rate, a clip shorter than its record) it decodes from the start.
    """
    middle = (max(num_frames or 1, 1) - 1) // 2
    with av.open(video if isinstance(video, io.IOBase) else str(video), mode="r") as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frame = _seek_to(container, stream, middle) or _decode_to(container, stream, middle)
        if frame is None:
            raise ValueError("no frame could be decoded")
        sideways = round(frame.rotation / 90) % 2
        scale = min(1.0, width / (frame.height if sideways else frame.width))
        size = {"width": max(1, round(frame.width * scale)), "height": max(1, round(frame.height * scale))}
        image = displayed(frame.to_ndarray(**size, format="rgb24", interpolation="AREA"), frame.rotation)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _seek_to(container, stream, index: int) -> av.VideoFrame | None:
    """Frame `index` (counting at the stream's average rate from its first timestamp), found by seeking."""
    rate, start = stream.average_rate, stream.start_time or 0
    if not rate or not stream.time_base or index == 0:
        return None
    target = start + int(index / rate / stream.time_base)
    container.seek(target, stream=stream, backward=True, any_frame=False)
    half_frame = 0.5 / rate / stream.time_base
    for frame in container.decode(stream):
        if frame.pts is not None and frame.pts >= target - half_frame:
            return frame
    return None


def _decode_to(container, stream, index: int) -> av.VideoFrame | None:
    """Frame `index` decoded from the start, or the last frame of a clip shorter than that."""
    container.seek(0, stream=stream, backward=True)
    frame = None
    for count, decoded in enumerate(container.decode(stream)):
        frame = decoded
        if count >= index:
            break
    return frame
