"""Perceptual hashes (`curation/dedup/perceptual.py`) on real footage: copies that must match, shots that must not.

Each copy is made as a copier would: the real frames changed, then encoded with libx264 (its default GOP) and
decoded again; the signatures are taken at 1 frame a second from each clip's start, as the job samples them.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from curation.dedup.perceptual import clip_signature, frame_hash, from_text, similarity, to_text, without_bars
from curation.footage import source_path
from curation.frame_sampling import sampled_indices

FPS = 25
MATCH = 0.5  # the share of matching frames that makes two clips copies


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


def signature(frames: list[np.ndarray]) -> list[int]:
    return clip_signature([frames[index] for index in sampled_indices(len(frames), FPS, 1.0)])


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


@pytest.fixture(scope="module")
def footage(tmp_path_factory) -> dict[str, list[np.ndarray]]:
    """Real clips as the job would have them: bikes' first 137 frames (three of its shots), carphone."""
    folder = tmp_path_factory.mktemp("footage")
    return {
        "bikes": encoded(folder / "bikes.mp4", decode(source_path("bikes"))[:137]),
        "carphone": encoded(folder / "carphone.mp4", decode(source_path("carphone"))),
    }


@pytest.mark.parametrize("name", list(COPIES))
@pytest.mark.parametrize("source", ["bikes", "carphone"])
def test_a_copy_matches_its_original(footage, tmp_path, source, name):
    change, crf = COPIES[name]
    original = footage[source]
    copy = encoded(tmp_path / "copy.mp4", [change(frame) for frame in original], crf)
    assert len(signature(original)) >= 4
    assert similarity(signature(original), signature(copy)) >= 0.8


@pytest.mark.parametrize("source", ["bikes", "carphone"])
def test_the_same_shot_trimmed_a_second_later_matches(footage, tmp_path, source):
    original = footage[source]
    trimmed = encoded(tmp_path / "trimmed.mp4", original[FPS:])
    assert similarity(signature(original), signature(trimmed)) >= 0.8


def test_distinct_shots_of_one_scene_and_other_videos_stay_apart(footage):
    """bikes' overhead shot, the man in the suit and the taxi and van: one street, three shots."""
    bikes = footage["bikes"]
    shots = {"overhead": bikes[0:30], "suit": bikes[30:76], "taxi_van": bikes[76:137], "carphone": footage["carphone"]}
    signatures = {name: signature(frames) for name, frames in shots.items()}
    for a in signatures:
        for b in signatures:
            if a != b:
                assert similarity(signatures[a], signatures[b]) < MATCH, (a, b)


def test_bars_are_cropped_and_flat_frames_have_no_hash():
    picture = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    boxed = np.pad(picture, ((20, 20), (10, 10), (0, 0)))
    assert without_bars(boxed).shape == picture.shape
    assert frame_hash(boxed) == frame_hash(picture)
    assert frame_hash(np.full((60, 80, 3), 128, np.uint8)) is None
    assert clip_signature([np.zeros((60, 80, 3), np.uint8), picture]) == [frame_hash(picture)]
    assert from_text(to_text([1, 2**64 - 1])) == [1, 2**64 - 1] and from_text(None) == []
