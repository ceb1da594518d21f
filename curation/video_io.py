"""Video I/O with PyAV: opening and decoding sources (one clear message for each way a file can be bad),
decoding the frames a clip's stages need, and writing frames as H.264."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
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


def decode_frames(path: str | Path, indices: Iterable[int], max_side: int | None = None) -> dict[int, np.ndarray]:
    """Decode the clip once and return the wanted frames as RGB uint8, as displayed (rotation applied).

    Indices count the clip file's frames in presentation order from 0, like `decode_scaled`. Decoding stops
    after the last index wanted, and only the wanted frames are converted. Frames whose long side exceeds
    `max_side` are scaled down by FFmpeg (area averaging, aspect kept). Raises VideoError when the clip has
    fewer frames than an index asks for: a score is never computed from a stand-in frame.
    """
    wanted = sorted(set(indices))
    if not wanted:
        return {}
    if wanted[0] < 0:
        raise ValueError(f"frame indices must be >= 0, got {wanted[0]}")
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be positive, got {max_side}")
    path = Path(path)
    frames: dict[int, np.ndarray] = {}
    next_wanted = 0
    with open_video(path) as container:
        if not container.streams.video:
            raise VideoError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = -1
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index != wanted[next_wanted]:
                    continue
                width, height = scaled_size(frame.width, frame.height, max_side)
                frames[index] = displayed(
                    frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="AREA"), frame.rotation
                )
                next_wanted += 1
                if next_wanted == len(wanted):
                    return frames
        except av.error.FFmpegError as error:
            raise VideoError(f"decoding stopped after frame {index + 1}: {error.strerror or error}") from None
    raise VideoError(f"clip has {index + 1} frames, frame {wanted[next_wanted]} was asked for")


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) with the long side at most `max_side`, aspect kept; never upscaled."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def displayed(image: np.ndarray, rotation: float) -> np.ndarray:
    """A decoded image turned as the stream's display matrix says (`av.VideoFrame.rotation`, degrees)."""
    # FFmpeg's display matrix angle is counterclockwise, like np.rot90 with positive k.
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def write_frames(
    path: Path,
    frames: Iterable[np.ndarray],
    fps: float,
    width: int,
    height: int,
    codec: str = "libx264",
    keyframe_seconds: float = 2.0,
    pix_fmt: str = "yuv420p",
) -> int:
    """Encode RGB frames (streamed, so a long video never sits in memory); keyframes every `keyframe_seconds`
    and nowhere else. Returns the number of frames written."""
    gop = max(1, round(keyframe_seconds * fps))
    count = 0
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if codec == "libx264":
            stream.options = {
                "crf": "18",
                "preset": "veryfast",
                "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0",
            }
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            count += 1
        container.mux(stream.encode())
    return count


def write_mp4(frames: np.ndarray, path: Path, fps: float) -> Path:
    """(F, H, W, 3) uint8 frames as H.264 in yuv420p, which needs even sizes: an odd one is cropped by a pixel."""
    height, width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    if (height, width) != frames.shape[1:3]:
        log.warning("%s: odd frame size %dx%d cropped to %dx%d for H.264", path, *frames.shape[2:0:-1], width, height)
    write_frames(path, np.ascontiguousarray(frames[:, :height, :width]), fps, width, height)
    return path
