"""The splitter against generated videos whose cuts, transitions and shots are known frame by frame."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from curation.config import SplitConfig
from curation.footage import keyframes, real_montage_a
from curation.split.detection import scan_video
from curation.split.runner import split_video
from curation.synthetic import Shot, SyntheticVideo, Transition, make_video, sample_timeline

# Every kind of shot and transition the issue names: hard cuts, a dissolve, a fade through black, a wipe,
# a fast pan and a flash that are not cuts, a static shot, a shot shorter than the minimum, a long shot.
TIMELINES = {
    "sample": sample_timeline(),
    "mixed": [
        Shot("static", 3.0),
        Transition("cut"),
        Shot("pan", 4.0, speed=9.0),
        Transition("dissolve", 1.0),
        Shot("moving", 3.0, speed=2.0, flash_at=1.5),
        Transition("fade", 0.8),
        Shot("text", 2.5),
        Transition("cut"),
        Shot("moving", 3.0, speed=4.0),
    ],
}


@pytest.fixture(scope="module", params=sorted(TIMELINES))
def video(request, tmp_path_factory) -> SyntheticVideo:
    folder = tmp_path_factory.mktemp(request.param)
    return make_video(folder / f"{request.param}.mp4", TIMELINES[request.param], seed=len(request.param))


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_every_hard_cut_found_within_one_frame(video):
    boundaries = scan_video(video.path, SplitConfig()).boundaries
    for cut in video.hard_cuts:
        assert any(b.kind == "cut" and abs(b.start - cut) <= 1 for b in boundaries), (cut, boundaries)


def test_no_false_cut_inside_a_shot(video):
    """Every boundary lies on a true transition: pans, flashes and moving objects cut nothing."""
    truth = video.transitions
    boundaries = scan_video(video.path, SplitConfig()).boundaries
    for boundary in boundaries:
        assert any(boundary.start <= t.end + 1 and t.start - 1 <= max(boundary.end, boundary.start) for t in truth), (
            boundary,
            truth,
        )
    assert len(boundaries) == len(truth)


def test_gradual_transitions_are_covered_whole(video):
    boundaries = scan_video(video.path, SplitConfig()).boundaries
    for transition in video.transitions:
        if transition.kind == "cut":
            continue
        assert any(b.start <= transition.start and transition.end <= b.end for b in boundaries), (
            transition,
            boundaries,
        )


@pytest.mark.parametrize("cut", ["copy", "reencode", "smart"])
def test_clips_hold_one_shot_and_their_recorded_frames(video, cut, tmp_path):
    config = SplitConfig(cut=cut)
    result = split_video(video.path, tmp_path / "clips", tmp_path, config)
    assert result.clips
    source_frames = decode(video.path)
    for clip in result.clips:
        shots = {video.shot_at(frame) for frame in range(clip.start_frame, clip.end_frame)}
        assert len(shots) == 1 and None not in shots, (clip, video.shots)  # one shot, no transition frame
        frames = decode(tmp_path / clip.path)
        assert len(frames) == clip.num_frames == clip.end_frame - clip.start_frame
        assert clip.num_frames >= config.min_seconds * video.fps
        # The record's range is what was written: the clip's frames are the source's frames there.
        tolerance = 0.0 if clip.written_by == "copy" else 6.0
        for offset in (0, clip.num_frames // 2, clip.num_frames - 1):
            expected = source_frames[clip.start_frame + offset].astype(float)
            assert np.abs(frames[offset].astype(float) - expected).mean() <= tolerance


def test_wipe_between_moving_shots_is_trimmed(tmp_path):
    timeline = [Shot("moving", 3.0, speed=3.0), Transition("wipe", 0.5), Shot("moving", 3.0, speed=1.5)]
    video = make_video(tmp_path / "wipe.mp4", timeline)
    boundaries = scan_video(video.path, SplitConfig()).boundaries
    wipe = video.transitions[0]
    assert any(b.start <= wipe.start and wipe.end <= b.end for b in boundaries), boundaries


def test_length_policy_drops_short_and_chunks_long(tmp_path):
    timeline = [
        Shot("moving", 1.0),
        Transition("cut"),
        Shot("moving", 25.0, speed=1.0),
        Transition("cut"),
        Shot("static", 3.0),
    ]
    video = make_video(tmp_path / "long.mp4", timeline, keyframe_seconds=1.0)
    config = SplitConfig(min_seconds=2.0, max_seconds=10.0, reencode=True)
    result = split_video(video.path, tmp_path / "clips", tmp_path, config)
    lengths = [clip.num_frames for clip in result.clips]
    long_shot = video.shots[1]
    assert lengths[:3] == [200, 200, 200] and long_shot.end - long_shot.start == 600  # 25 s -> 3 equal chunks
    assert [c.transition_before for c in result.clips[:3]] == ["cut", "chunk", "chunk"]
    assert lengths[3] == 72  # the static shot
    assert result.counts["scenes_too_short"] == 1  # the 1 s shot
    assert all(clip.start_frame >= long_shot.start for clip in result.clips)


def test_stream_copy_starts_on_a_keyframe_inside_the_scene(tmp_path):
    timeline = [Shot("moving", 3.0), Transition("cut"), Shot("moving", 5.0, speed=3.0)]
    video = make_video(tmp_path / "gop.mp4", timeline, keyframe_seconds=2.0)
    result = split_video(video.path, tmp_path / "clips", tmp_path, SplitConfig(cut="copy"))
    second = result.clips[-1]
    assert second.start_frame == 96  # first keyframe (every 48 frames) after the cut at 72
    assert second.written_by == "copy"


def test_smart_cut_starts_at_the_scene_and_copies_from_the_keyframe(tmp_path):
    """No keyframe at the cut (72; keyframes every 48 frames): frames 72-95 are re-encoded, 96 on copied."""
    timeline = [Shot("moving", 3.0), Transition("cut"), Shot("moving", 5.0, speed=3.0)]
    video = make_video(tmp_path / "gop.mp4", timeline, keyframe_seconds=2.0)
    result = split_video(video.path, tmp_path / "clips", tmp_path, SplitConfig())  # cut: smart, the default
    first, second = result.clips
    assert (first.start_frame, first.written_by) == (0, "copy")  # starts on a keyframe: nothing to re-encode
    assert (second.start_frame, second.scene_start_frame, second.written_by) == (72, 72, "smart")
    source = decode(video.path)
    frames = decode(tmp_path / second.path)
    assert len(frames) == second.num_frames >= 5 * video.fps - 2  # at most the B-frame tail is left out
    for offset, frame in enumerate(frames):
        difference = np.abs(frame.astype(float) - source[72 + offset].astype(float))
        if 72 + offset < 96:
            assert difference.mean() <= 6.0  # re-encoded at crf 18
        else:
            assert difference.max() == 0  # copied packets decode to the source's very frames


def test_keys_are_stable_across_reruns(tmp_path):
    video = make_video(tmp_path / "stable.mp4", sample_timeline())
    first = split_video(video.path, tmp_path / "a", tmp_path, SplitConfig())
    second = split_video(video.path, tmp_path / "b", tmp_path, SplitConfig())
    assert [c.key for c in first.clips] == [c.key for c in second.clips]
    assert len({c.key for c in first.clips}) == len(first.clips)
    assert all("." not in c.key and "/" not in c.key for c in first.clips)


def test_two_inputs_with_the_same_file_get_different_keys(tmp_path):
    """Keys name the input, not only its bytes: a/clip.mp4 and b/clip.mp4 holding one file share no key."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    video = make_video(tmp_path / "a" / "clip.mp4", sample_timeline())
    copy = shutil.copy(video.path, tmp_path / "b" / "clip.mp4")
    first = split_video(video.path, tmp_path / "ca", tmp_path, SplitConfig(), str(video.path))
    second = split_video(copy, tmp_path / "cb", tmp_path, SplitConfig(), str(copy))
    assert [(c.start_frame, c.end_frame) for c in first.clips] == [(c.start_frame, c.end_frame) for c in second.clips]
    assert not {c.key for c in first.clips} & {c.key for c in second.clips}
    assert all(c.key.startswith("clip-") for c in first.clips + second.clips)


def test_smart_cut_on_real_footage_copies_exactly_and_re_encodes_only_heads(tmp_path):
    """A montage of real shots with x264's own keyframes (at hard cuts, not after dissolves, fades or wipes)."""
    source = real_montage_a(tmp_path / "real_a.mp4").path
    result = split_video(source, tmp_path / "clips", tmp_path, SplitConfig())
    kinds = {clip.written_by for clip in result.clips}
    # Clips after a dissolve, fade or wipe start between keyframes: their frames up to the next keyframe (all of
    # them when the clip ends first) are re-encoded; clips after a hard cut start on a keyframe and are copied.
    assert kinds & {"smart", "reencode"} and "copy" in kinds
    frames = decode(source)
    keys = set(keyframes(source))
    for clip in result.clips:
        first_key = min((index for index in keys if index >= clip.start_frame), default=len(frames))
        written = decode(tmp_path / clip.path)
        assert len(written) == clip.num_frames
        for offset, frame in enumerate(written):
            difference = np.abs(frame.astype(float) - frames[clip.start_frame + offset].astype(float))
            if clip.start_frame + offset < first_key:
                assert difference.mean() <= 6.0  # re-encoded head
            else:
                assert difference.max() == 0  # copied from the keyframe on
