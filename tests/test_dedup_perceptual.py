"""Perceptual hashes (`curation/dedup/perceptual.py`) on real footage: copies that must match, shots that must not.

Each copy is made as a copier would: the real frames changed, then encoded with libx264 (its default GOP) and
decoded again; the signatures are taken at 1 frame a second from each clip's start, as the job samples them.
"""

from __future__ import annotations

import numpy as np
import pytest
from video_copies import COPIES, FPS, decode, encoded

from curation.dedup.perceptual import clip_signature, frame_hash, from_text, similarity, to_text, without_bars
from curation.footage import source_path
from curation.frame_sampling import sampled_indices

MATCH = 0.5  # the share of matching frames that makes two clips copies


def signature(frames: list[np.ndarray]) -> list[int]:
    return clip_signature([frames[index] for index in sampled_indices(len(frames), FPS, 1.0)])


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


def test_a_still_does_not_match_a_moving_shot_that_passes_through_its_picture(footage):
    """One frame of the shot, frozen for as long as the shot: every frame of the still looks like one frame of
    the shot, but not in step with the shot's others."""
    shot = footage["bikes"][76:137]  # the taxi and the van drive by
    still = [shot[FPS]] * len(shot)
    assert similarity(signature(still), signature(shot)) < MATCH
    assert similarity(signature(still), signature(still[: 2 * FPS])) == 1.0
