from dataclasses import dataclass

import numpy as np
import pytest

from curation.config import FilterConfig, MotionConfig
from curation.filtering import filter_rules, reject_reasons
from curation.frame_sampling import sampled_indices
from curation.scores.motion import motion_bucket_id, motion_score
from curation.synthetic import Shot, make_video
from curation.video_io import decode_frames

FPS = 24.0
SIZE = (128, 96)  # short side 96: 16 px is 1/6 of it


@dataclass(frozen=True)
class Case:
    name: str
    shot: Shot


CASES = [
    Case("static", Shot("static", 3.0)),
    Case("slow pan", Shot("pan", 3.0, speed=0.25)),
    Case("pan", Shot("pan", 3.0, speed=0.5)),
    Case("moving", Shot("moving", 3.0, speed=3.0)),
]


@pytest.fixture(scope="module")
def sampled(tmp_path_factory) -> dict[str, list[np.ndarray]]:
    """Each case's frames at 2 fps, decoded the way the pipeline does."""
    folder = tmp_path_factory.mktemp("motion")
    out = {}
    for seed, case in enumerate(CASES):
        video = make_video(folder / f"{seed}.mp4", [case.shot], fps=FPS, size=SIZE, seed=seed)
        indices = sampled_indices(video.num_frames, FPS, MotionConfig().sample_fps)
        frames = decode_frames(video.path, indices, MotionConfig().max_side)
        out[case.name] = [frames[i] for i in indices]
    return out


def scores(sampled, config=None) -> dict[str, float]:
    return {name: motion_score(frames, config or MotionConfig()) for name, frames in sampled.items()}


def test_scores_order_static_slow_pan_pan(sampled):
    got = scores(sampled)
    assert got["static"] < got["slow pan"] < got["pan"], got
    assert got["static"] < 0.05  # compression noise only


def test_moving_objects_score_well_above_static(sampled):
    # Four discs on a still background: the mean over the frame is diluted by the still pixels.
    got = scores(sampled)
    assert got["moving"] > 10 * got["static"] and got["moving"] > 0.1, got


@pytest.mark.parametrize(("name", "speed"), [("slow pan", 0.25), ("pan", 0.5)])
def test_pan_score_is_the_true_displacement(sampled, name, speed):
    # The camera moves `speed` px per frame at 96 px; 12 frames per 2-fps step; frames shrunk to 16 px.
    step = FPS / MotionConfig().sample_fps
    expected = speed * step * MotionConfig().short_side / SIZE[1]
    assert scores(sampled)[name] == pytest.approx(expected, rel=0.15)


def test_score_is_in_pixels_of_the_short_side(sampled):
    small = scores(sampled)["pan"]
    large = scores(sampled, MotionConfig(short_side=32))["pan"]
    assert large == pytest.approx(2 * small, rel=0.15)


def test_static_clip_falls_under_the_motion_threshold(sampled):
    got = scores(sampled)
    rules = filter_rules(FilterConfig(min_motion=0.1, drop_bottom_motion=None))
    rejected = {name for name, value in got.items() if reject_reasons({"motion_score": value}, rules)}
    assert rejected == {"static"}
    assert motion_bucket_id(got["static"], MotionConfig()) == 0


@pytest.mark.parametrize(("score", "bucket"), [(0.0, 0), (0.01, 1), (2.0, 128), (4.0, 255), (100.0, 255)])
def test_bucket_mapping(score, bucket):
    assert motion_bucket_id(score, MotionConfig(bucket_max_motion=4.0)) == bucket


def test_bucket_scale_is_configurable():
    assert motion_bucket_id(1.0, MotionConfig(bucket_max_motion=1.0)) == 255
    assert motion_bucket_id(1.0, MotionConfig(bucket_max_motion=8.0)) == 32


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_bucket_refuses_bad_scores(bad):
    with pytest.raises(ValueError, match="motion score"):
        motion_bucket_id(bad, MotionConfig())


def test_one_frame_is_not_enough(sampled):
    with pytest.raises(ValueError, match="at least two sampled frames, got 1"):
        motion_score(sampled["static"][:1], MotionConfig())


def test_frames_must_be_rgb():
    with pytest.raises(ValueError, match="expected an RGB frame"):
        motion_score([np.zeros((16, 16), np.uint8)] * 2, MotionConfig())
