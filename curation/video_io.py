"""Opening and decoding source videos with PyAV, with one clear message for each way a file can be bad."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

log = logging.getLogger(__name__)


class VideoError(Exception):
    """A source that cannot be used, with a message a user can act on (the caller adds the path)."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a source's video stream, before decoding it."""

    path: Path
    width: int  # as displayed, i.e. after rotation metadata is applied
    height: int
    fps: float  # average frame rate
    time_base: Fraction
    codec: str
    rotation: int  # display-matrix rotation (0/90/180/270); written clips keep it, pixels are not turned
    duration: float | None  # seconds, when the container knows


@dataclass(frozen=True)
class DecodedFrame:
    index: int  # presentation order, from 0
    pts: int  # in VideoInfo.time_base units
    key_frame: bool
    image: np.ndarray  # BGR, scaled for analysis (not display-rotated: analysis does not care)


def probe(path: str | Path) -> VideoInfo:
    """Open `path` and describe its first video stream; VideoError if it cannot be a source."""
    path = Path(path)
    if not path.exists():
        raise VideoError("no such file")
    if path.is_dir():
        raise VideoError("is a folder, not a video file")
    if path.stat().st_size == 0:
        raise VideoError("empty file (0 bytes)")
    with open_video(path) as container:
        stream = _video_stream(container)
        context = stream.codec_context
        width, height = context.width, context.height
        if not width or not height:
            raise VideoError("video stream has no frame size (damaged header)")
        rotation = _rotation(container, stream)
        if rotation in (90, 270):
            width, height = height, width
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            raise VideoError("video stream has no frame rate")
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        return VideoInfo(
            path=path,
            width=width,
            height=height,
            fps=float(rate),
            time_base=stream.time_base,
            codec=context.name,
            rotation=rotation,
            duration=duration,
        )


def open_video(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.InvalidDataError:
        with open(path, "rb") as file:
            header = file.read(12)
        if header[4:8] == b"ftyp":  # an MP4/MOV whose index cannot be read: usually a cut-off download
            raise VideoError("damaged or truncated MP4/MOV file (its index cannot be read)") from None
        raise VideoError("not a video file (FFmpeg cannot recognise its format)") from None
    except av.error.FFmpegError as error:
        raise VideoError(f"cannot be opened: {_ffmpeg_reason(error)}") from None


def decode_scaled(path: Path, width: int) -> Iterator[DecodedFrame]:
    """Decode every frame once, scaled by FFmpeg's scaler to `width` px wide (aspect kept, even height).

    Raises TruncatedVideo after the last good frame if the stream breaks off, so callers can keep what
    was decoded and say so.
    """
    with open_video(path) as container:
        stream = _video_stream(container)
        stream.thread_type = "AUTO"  # frame + slice threads: decoding is the cost that bounds splitting
        coded_w, coded_h = stream.codec_context.width, stream.codec_context.height
        scaled_w = min(width, coded_w)
        scaled_h = max(2, round(coded_h * scaled_w / coded_w / 2) * 2)
        index = 0
        try:
            for frame in container.decode(stream):
                if frame.pts is None:  # some raw streams: fall back to the frame's position
                    pts = index
                else:
                    pts = frame.pts
                yield DecodedFrame(index, pts, bool(frame.key_frame), _scaled_bgr(frame, scaled_w, scaled_h))
                index += 1
        except av.error.FFmpegError as error:
            if index == 0:
                raise VideoError(f"no frame can be decoded: {_ffmpeg_reason(error)}") from None
            raise TruncatedVideo(index, _ffmpeg_reason(error)) from None
    if index == 0:
        raise VideoError("video stream holds no decodable frame")


def _scaled_bgr(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
    """The frame as a small BGR image, area-averaged (no aliasing, so small changes stay visible).

    For 8-bit 4:2:0 frames (nearly every H.264/HEVC/VP9/AV1 source) the planes are scaled with OpenCV and
    converted after scaling: several times cheaper than FFmpeg's area scaler, which costs as much as
    decoding a 720p frame. Other pixel formats go through FFmpeg.
    """
    if frame.format.name in _I420_FORMATS and width % 2 == 0 and height % 2 == 0:
        sizes = ((width, height), (width // 2, height // 2), (width // 2, height // 2))
        scaled = [_shrink(_plane(plane), size) for plane, size in zip(frame.planes, sizes, strict=True)]
        i420 = np.concatenate([plane.ravel() for plane in scaled]).reshape(height * 3 // 2, width)
        return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)
    return frame.reformat(width=width, height=height, format="bgr24", interpolation="AREA").to_ndarray()


_I420_FORMATS = ("yuv420p", "yuvj420p")


def _shrink(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Average `image` down to `size` (width, height), cheaply and without aliasing.

    OpenCV's area filter costs 2-3 ms a frame at non-integer factors (1080p or 4K to 256 px), more than
    decoding. Halving with bilinear steps (each an exact 2x2 mean), then one bilinear step to twice the
    size and a 2x2 area step, costs 0.1-0.5 ms and stays within 2 grey levels of the area filter even on
    pixel noise.
    """
    width, height = size
    while image.shape[1] >= 4 * width and image.shape[0] >= 4 * height:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_LINEAR)
    if image.shape[1] >= 2 * width and image.shape[0] >= 2 * height:
        image = cv2.resize(image, (2 * width, 2 * height), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _plane(plane: av.video.plane.VideoPlane) -> np.ndarray:
    """A view of one plane's pixels, without the padding at the end of each line."""
    rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, : plane.width]


class TruncatedVideo(Exception):
    """Decoding broke off after `frames_decoded` good frames."""

    def __init__(self, frames_decoded: int, reason: str) -> None:
        super().__init__(f"decoding stopped after frame {frames_decoded}: {reason}")
        self.frames_decoded = frames_decoded
        self.reason = reason


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = sorted({stream.type for stream in container.streams})
        held = f" ({', '.join(kinds)} only)" if kinds else ""
        raise VideoError(f"no video stream{held}")
    return container.streams.video[0]


def _rotation(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    """Display rotation in degrees (0/90/180/270), read from the first frame's display matrix."""
    try:
        frame = next(container.decode(stream), None)
    except av.error.FFmpegError as error:
        raise VideoError(f"no frame can be decoded: {_ffmpeg_reason(error)}") from None
    if frame is None:
        raise VideoError("video stream holds no decodable frame")
    return int(round(frame.rotation / 90.0)) % 4 * 90


def _ffmpeg_reason(error: av.error.FFmpegError) -> str:
    return error.strerror or str(error)
