from pathlib import Path

import av
import numpy as np
import pytest

from curation.config import CurationConfig
from curation.frame_sampling import key_indices, sampled_indices, uniform_frame_indices
from curation.stages import frame_plan
from curation.video_io import VideoError, decode_frames, scaled_size, write_frames

FPS = 24.0
SIZE = (128, 96)
NUM_FRAMES = 30


def level(index: int) -> int:
    """Frame k of the numbered video is flat grey at this level, so a decoded frame says which it is."""
    return 8 + 8 * index


@pytest.fixture(scope="module")
def numbered(tmp_path_factory) -> Path:
    """30 flat frames, each a different grey, with a white square in the top-left corner (for rotation)."""
    path = tmp_path_factory.mktemp("frames") / "numbered.mp4"

    def frames():
        for index in range(NUM_FRAMES):
            image = np.full((SIZE[1], SIZE[0], 3), level(index), np.uint8)
            image[:16, :16] = 255
            yield image

    write_frames(path, frames(), FPS, *SIZE, keyframe_seconds=0.5)
    return path


@pytest.mark.parametrize(
    ("num_frames", "expected"), [(1, [0]), (2, [0, 1]), (3, [0, 1, 2]), (10, [0, 4, 9]), (11, [0, 5, 10])]
)
def test_key_indices(num_frames, expected):
    assert key_indices(num_frames) == expected


@pytest.mark.parametrize(
    ("num_frames", "fps", "sample_fps", "expected"),
    [
        (48, 24.0, 2.0, [0, 12, 24, 36]),
        (49, 24.0, 2.0, [0, 12, 24, 36, 48]),
        (61, 30.0, 2.0, [0, 15, 30, 45, 60]),
        (46, 29.97, 2.0, [0, 15, 30, 45]),  # step 14.985: each instant's nearest frame
        (4, 24.0, 48.0, [0, 1, 2, 3]),  # above the clip's rate: every frame
        (5, 24.0, 2.0, [0, 4]),  # shorter than one step: still one flow step
        (1, 24.0, 2.0, [0]),
    ],
)
def test_sampled_indices(num_frames, fps, sample_fps, expected):
    assert sampled_indices(num_frames, fps, sample_fps) == expected


@pytest.mark.parametrize(
    "bad", [lambda: key_indices(0), lambda: uniform_frame_indices(5, 0), lambda: sampled_indices(5, 0, 2)]
)
def test_bad_index_requests_raise(bad):
    with pytest.raises(ValueError):
        bad()


@pytest.mark.parametrize(
    ("size", "max_side", "expected"),
    [
        ((1920, 1080), 640, (640, 360)),
        ((1080, 1920), 640, (360, 640)),
        ((128, 96), 640, (128, 96)),
        ((128, 96), None, (128, 96)),
    ],
)
def test_scaled_size(size, max_side, expected):
    assert scaled_size(*size, max_side) == expected


def test_decodes_exactly_the_wanted_frames(numbered):
    wanted = [0, 7, 8, 29, 7]
    frames = decode_frames(numbered, wanted)
    assert sorted(frames) == [0, 7, 8, 29]
    for index, image in frames.items():
        assert image.dtype == np.uint8 and image.shape == (SIZE[1], SIZE[0], 3)
        assert abs(float(image[32:, 32:].mean()) - level(index)) < 4  # that frame, not a neighbour (8 apart)


def test_downscales_to_max_side(numbered):
    frames = decode_frames(numbered, [3], max_side=64)
    assert frames[3].shape == (48, 64, 3)
    assert abs(float(frames[3][16:, 16:].mean()) - level(3)) < 4


def test_display_rotation_is_applied(numbered, tmp_path):
    rotated = tmp_path / "rotated.mp4"
    with av.open(str(numbered)) as source, av.open(str(rotated), "w") as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        stream.set_display_rotation(90)  # counterclockwise, as FFmpeg's display matrix reads
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    upright = decode_frames(numbered, [5])[5]
    turned = decode_frames(rotated, [5])[5]
    assert turned.shape == (SIZE[0], SIZE[1], 3)
    np.testing.assert_array_equal(turned, np.rot90(upright))
    assert turned[-8:, :8].min() == 255  # the top-left square is now bottom-left


def test_asking_past_the_end_is_an_error(numbered):
    with pytest.raises(VideoError, match="clip has 30 frames, frame 30 was asked for"):
        decode_frames(numbered, [0, NUM_FRAMES])


def test_nothing_wanted_decodes_nothing(numbered):
    assert decode_frames(numbered, []) == {}


def test_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video")
    with pytest.raises(VideoError):
        decode_frames(path, [0])


def test_plan_merges_the_enabled_stages():
    config = CurationConfig()
    config.caption.enabled = False
    plan = frame_plan(49, 24.0, config)
    assert plan.indices == {
        "motion": [0, 12, 24, 36, 48],
        "dedup": [0, 24, 48],  # perceptual hashes: 1 a second from the start
        "ocr": [0, 24, 48],
        "aesthetics": [0, 24, 48],
    }
    assert plan.all_indices == [0, 12, 24, 36, 48]
    assert plan.max_side == max(config.motion.max_side, config.ocr.max_side, config.clip.max_side)
    config.dedup.perceptual.max_frames = 2
    assert frame_plan(49, 24.0, config).indices["dedup"] == [0, 24]  # the first ones
    config.ocr.enabled = config.clip.enabled = config.dedup.enabled = False
    only_motion = frame_plan(49, 24.0, config)
    assert list(only_motion.indices) == ["motion"] and only_motion.max_side == config.motion.max_side
    config.motion.enabled = False
    assert frame_plan(49, 24.0, config) == type(plan)({}, None)


def test_plan_adds_the_captioners_frames():
    config = CurationConfig()
    config.motion.enabled = config.ocr.enabled = config.clip.enabled = config.dedup.perceptual.enabled = False
    plan = frame_plan(49, 24.0, config)
    assert plan.indices == {"coca": [24], "vblip": [0, 6, 13, 20, 27, 34, 41, 48]}
    assert plan.max_side == max(config.caption.coca.max_side, config.caption.vblip.max_side)
    config.caption.coca.enabled = False
    assert list(frame_plan(49, 24.0, config).indices) == ["vblip"]
