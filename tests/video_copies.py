"""Copies of a video as a copier makes them: its frames changed (re-encoded, rescaled, cropped, boxed,
recoloured), then encoded with libx264 (its default GOP) and decoded again."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image

FPS = 25


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def encoded(path: Path, frames: list[np.ndarray], crf: int = 23) -> list[np.ndarray]:
    """`frames` through libx264 at `crf` and back."""
    height, width = (side - side % 2 for side in frames[0].shape[:2])
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in frames:
            picture = np.ascontiguousarray(frame[:height, :width])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode())
    return decode(path)


def resized(frame: np.ndarray, scale: float) -> np.ndarray:
    image = Image.fromarray(frame)
    return np.asarray(image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR))


def cropped(frame: np.ndarray, share: float) -> np.ndarray:
    rows, columns = round(frame.shape[0] * share / 2), round(frame.shape[1] * share / 2)
    return frame[rows : frame.shape[0] - rows, columns : frame.shape[1] - columns]


COPIES = {
    "re-encoded at crf 40": (lambda frame: frame, 40),
    "half size": (lambda frame: resized(frame, 0.5), 23),
    "cropped by 5%": (lambda frame: cropped(frame, 0.05), 23),
    "letterboxed": (lambda frame: np.pad(frame, ((frame.shape[1] // 4,) * 2, (0, 0), (0, 0))), 23),
    "pillarboxed": (lambda frame: np.pad(frame, ((0, 0), (frame.shape[1] // 6,) * 2, (0, 0))), 23),
    "brighter": (lambda frame: np.clip(frame * 1.3 + 20, 0, 255).astype(np.uint8), 23),
    "lower contrast": (lambda frame: np.clip((frame - 128.0) * 0.7 + 128, 0, 255).astype(np.uint8), 23),
}
