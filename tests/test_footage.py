"""The real-footage montage builder and the clip scorer, against truth constructed by hand."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from curation import footage
from curation.footage import Flash, Pan, Shot, Transition, Window

# Every transition kind and event, at 160x90, about 9 s: cheap to build. Frame numbers worked out by hand
# below: a shot of N frames shares T frames with the transition after it, so shot i + 1 starts T frames
# before shot i ends.
TINY = [
    Shot("bikes", 137, 187, "bridge", events=(Flash(20, 2),)),  # 50 frames: montage 0-49
    Transition("dissolve", 8),  # 42-49
    Shot("carphone", 0, 40, "car"),  # 42-81
    Transition("fade_black", 9),  # 73-81
    Shot(  # a 30-frame range played 45 frames long (ping-pong), panned right at its frame 20
        "bigbuckbunny",
        40,
        70,
        "bunny",
        frames=45,
        window=Window(0, 180, 640, 360),
        events=(Pan(20, 6, to=Window(480, 180, 640, 360)),),
    ),  # 73-117
    Transition("cut"),  # at 118
    Shot("bikes", 187, 217, "legs"),  # 118-147
    Transition("cut"),  # at 148
    Shot("bikes", 76, 86, "taxi"),  # 148-157: 10 frames, so the next cut is too close for a new keyframe
    Transition("cut"),  # at 158
    Shot("carphone", 60, 61, "still", frames=20, still=True),  # 158-177
    Transition("fade_white", 10),  # 168-177
    Shot("bikes", 0, 30, "overhead"),  # 168-197
    Transition("wipe", 8),  # 190-197
    Shot("bigbuckbunny", 0, 30, "wide", window=Window(0, 0, 1280, 720)),  # 190-219
]
SHOTS = [
    ("bridge", 0, 42),
    ("car", 50, 73),
    ("bunny", 82, 118),
    ("legs", 118, 148),
    ("taxi", 148, 158),
    ("still", 158, 168),
    ("overhead", 178, 190),
    ("wide", 198, 220),
]
TRANSITIONS = [
    ("dissolve", 42, 50),
    ("fade_black", 73, 82),
    ("cut", 118, 118),
    ("cut", 148, 148),
    ("cut", 158, 158),
    ("fade_white", 168, 178),
    ("wipe", 190, 198),
]
EVENTS = [("flash", 20, 22, 0), ("pan", 93, 99, 2)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> footage.Montage:
    return footage.make_montage(tmp_path_factory.mktemp("tiny") / "tiny.mp4", TINY, size=(160, 90), fps=25.0)


@pytest.fixture(scope="module")
def frames(tiny) -> list[np.ndarray]:
    with av.open(str(tiny.path)) as container:
        return [frame.to_ndarray(format="rgb24").astype(np.float32) for frame in container.decode(video=0)]


def spans(items) -> list[tuple]:
    return [(s.kind, s.start, s.end) for s in items]


def test_every_source_is_installed():
    for name in footage.SOURCES:
        path = footage.source_path(name)
        assert path.is_file() and path.suffix == ".mp4", name


def test_a_missing_package_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(footage.SOURCES, "gone", ("no-such-footage", "no_such_footage_module", "a.mp4"))
    with pytest.raises(footage.FootageMissing) as error:
        footage.source_path("gone")
    message = str(error.value)
    assert "\n" not in message and "pip install no-such-footage" in message
    with pytest.raises(KeyError):
        footage.source_path("never_declared")


def test_truth_of_the_tiny_timeline_is_the_hand_made_one():
    truth = footage.plan_montage(TINY, size=(160, 90))
    assert truth.num_frames == 220 == sum(s.length for s in TINY if isinstance(s, Shot)) - (8 + 9 + 10 + 8)
    assert spans(truth.shots) == SHOTS
    assert spans(truth.transitions) == TRANSITIONS
    assert [(e.kind, e.start, e.end, e.shot) for e in truth.events] == EVENTS
    assert truth.cuts == [118, 148, 158]
    for index, (_, start, end) in enumerate(SHOTS):
        assert all(truth.shot_at(f) == index and truth.transition_at(f) is None for f in range(start, end))
    for index, (_, start, end) in enumerate(TRANSITIONS):
        assert all(truth.transition_at(f) == index and truth.shot_at(f) is None for f in range(start, end))
    labelled = sum(e - s for _, s, e in SHOTS) + sum(e - s for _, s, e in TRANSITIONS)
    assert labelled == truth.num_frames  # every frame is one shot's or one transition's


def test_ping_pong_plays_back_without_a_jump():
    shot = Shot("bikes", 10, 14, frames=10)
    assert [shot.source_frame(k) for k in range(10)] == [10, 11, 12, 13, 12, 11, 10, 11, 12, 13]
    assert Shot("bikes", 10, 14, still=True, frames=3).source_frame(2) == 10


def test_written_montage_has_the_planned_frames_and_keyframes_where_x264_put_them(tiny, frames):
    assert tiny.path.is_file() and tiny.num_frames == len(frames) == 220
    assert frames[0].shape == (90, 160, 3)
    assert spans(tiny.shots) == SHOTS and spans(tiny.transitions) == TRANSITIONS
    assert tiny.keyframes[0] == 0 and tiny.keyframes == sorted(set(tiny.keyframes))
    # x264's defaults (keyint 250, min-keyint 25, scenecut 40) decide: not every cut starts a keyframe.
    assert any(cut not in tiny.keyframes for cut in tiny.cuts), (tiny.cuts, tiny.keyframes)
    with av.open(str(tiny.path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert float(stream.average_rate) == 25.0
        key_frames = [i for i, frame in enumerate(container.decode(stream)) if frame.key_frame]
    assert key_frames == tiny.keyframes


def test_transitions_and_events_look_as_declared(frames):
    def mean(i):
        return float(frames[i].mean())

    assert mean(77) < 16  # the middle of the fade through black (73-81) is black
    assert mean(172) > 225  # the middle of the fade through white (168-177) is nearly white
    assert mean(20) > mean(19) + 60 and mean(21) > mean(22) + 30  # the flash washes frames 20-21 out
    assert np.abs(frames[160] - frames[166]).mean() < 1.0  # the still shot does not move
    # Ping-pong: shot frames 28 and 30 of "bunny" (montage 101 and 103) show the same source frame.
    assert np.abs(frames[101] - frames[103]).mean() < 1.0 < np.abs(frames[101] - frames[99]).mean()
    # The wipe (190-197) brings "wide" in from the left: at 193 the left edge is the new shot's, the right the old.
    left, right = np.s_[:, :40], np.s_[:, 120:]
    assert np.abs(frames[193][left] - frames[200][left]).mean() < np.abs(frames[193][left] - frames[187][left]).mean()
    assert (
        np.abs(frames[193][right] - frames[187][right]).mean() < np.abs(frames[193][right] - frames[200][right]).mean()
    )
    # The dissolve (42-49) is neither shot: its middle frame differs from both neighbours' frames.
    assert np.abs(frames[46] - frames[41]).mean() > 8 and np.abs(frames[46] - frames[50]).mean() > 8


@pytest.mark.parametrize(
    "timeline, message",
    [
        ([Transition("dissolve", 8), Shot("bikes", 0, 30)], "between two shots"),
        ([Shot("bikes", 0, 30), Transition("wipe", 8)], "ends with a transition"),
        ([Shot("bikes", 0, 30), Transition("cut", 5), Shot("bikes", 40, 70)], "a cut has 0 frames"),
        ([Shot("bikes", 0, 30), Transition("dissolve", 30), Shot("bikes", 40, 90)], "all transition"),
        ([Shot("bikes", 0, 30, events=(Flash(29, 2),))], "not inside the shot"),
        ([Shot("bikes", 0, 30, events=(Flash(5, 4),))], "1 to 3 frames"),
    ],
)
def test_bad_timelines_are_refused(timeline, message):
    with pytest.raises(ValueError, match=message):
        footage.plan_montage(timeline, size=(160, 90))


def test_bad_sizes_and_windows_are_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="even"):
        footage.plan_montage([Shot("bikes", 0, 30)], size=(161, 90))
    outside = [Shot("carphone", 0, 1, still=True, frames=3, window=Window(100, 0, 176, 99))]
    with pytest.raises(ValueError, match="outside"):
        footage.make_montage(tmp_path / "bad.mp4", outside, size=(160, 90))


def test_ready_montages_hold_what_the_issue_asks_for():
    for name, timeline, size in [
        ("real_a", footage.real_montage_a_timeline(), (480, 270)),
        ("music_video", footage.music_video_montage_timeline(), (224, 168)),
    ]:
        truth = footage.plan_montage(timeline, size=size)
        seconds = truth.num_frames / truth.fps
        assert 28 <= seconds <= 40, (name, seconds)
        gradual = [t for t in truth.transitions if t.kind != "cut"]
        assert all(8 <= t.frames <= 30 for t in gradual), name
        kinds = {t.kind for t in truth.transitions}
        assert kinds == {"cut", "dissolve", "fade_black", "fade_white", "wipe"}, (name, kinds)
        assert {e.kind for e in truth.events} == {"flash", "pan"}, name
        assert any(s.still for s in timeline if isinstance(s, Shot)), name
        assert sum(truth.seconds(s) >= 2.5 for s in truth.shots) >= 5, name
        assert any(truth.seconds(s) < 2.0 for s in truth.shots), name  # and one under min_seconds
    real_a = footage.plan_montage(footage.real_montage_a_timeline(), size=(480, 270))
    pan_then_cut = [e for e in real_a.events if e.kind == "pan" and e.end == real_a.shots[e.shot].end]
    assert pan_then_cut and pan_then_cut[0].end in real_a.cuts  # a hard cut right after a fast pan


# --- the scorer, on the tiny timeline's truth (no video needed) ---------------------------------------------


@pytest.fixture(scope="module")
def truth() -> footage.Montage:
    return footage.plan_montage(TINY, size=(160, 90))


def test_perfect_clips_score_perfectly(truth):
    score = footage.score_clips(truth, [(s.start, s.end) for s in truth.shots], long_seconds=1.0)
    assert score.clips == 8 and score.impure == []
    assert all(s.kept == s.usable for s in score.shots) and score.kept_share == 1.0 == score.kept_share_long
    assert score.split_by_event == [] and score.events_touched == [] and score.shots_split_by_event == 0


def test_clips_with_two_shots_or_a_transition_are_impure_and_keep_nothing(truth):
    score = footage.score_clips(truth, [(100, 130), (30, 45), (60, 73)])
    assert score.impure == [
        {"start": 30, "end": 45, "shots": ["bridge"], "transitions": ["dissolve"]},
        {"start": 100, "end": 130, "shots": ["bunny", "legs"], "transitions": []},  # across the hard cut at 118
    ]
    kept = {s.name: s.kept for s in score.shots}
    assert kept["bridge"] == 0 and kept["bunny"] == 0 and kept["legs"] == 0 and kept["car"] == 13


def test_kept_share_counts_long_shots_only(truth):
    # Long (>= 1.2 s = 30 frames): bridge 42, bunny 36, legs 30. Keep half of bridge, all of legs.
    score = footage.score_clips(truth, [(0, 21), (118, 148), (178, 190)], long_seconds=1.2)
    assert [s.name for s in score.shots if s.seconds >= 1.2] == ["bridge", "bunny", "legs"]
    assert (score.kept_long, score.usable_long) == (21 + 30, 42 + 36 + 30)
    assert score.kept_share_long == pytest.approx(51 / 108)
    assert score.kept_share == pytest.approx((21 + 30 + 12) / sum(e - s for _, s, e in SHOTS))


def test_a_shot_cut_in_two_at_a_flash_is_counted(truth):
    split = footage.score_clips(truth, [(0, 20), (22, 42)])  # the flash (20-21) left out, both sides kept
    assert split.split_by_event == [{"shot": "bridge", "kind": "flash", "start": 20, "end": 22}]
    assert split.shots_split_by_event == 1 and len(split.events_touched) == 1
    for clips in ([(0, 20), (20, 42)], [(0, 21), (21, 42)], [(0, 22), (22, 42)], [(10, 21), (21, 73)]):
        assert footage.score_clips(truth, clips).shots_split_by_event == 1, clips  # at, in, right after it; impure too
    whole = footage.score_clips(truth, [(0, 42)])
    assert whole.split_by_event == [] and whole.events_touched == []
    trimmed = footage.score_clips(truth, [(22, 42), (82, 96)])  # only after the flash; a clip ends in the pan
    assert trimmed.split_by_event == []
    assert [e["kind"] for e in trimmed.events_touched] == ["flash", "pan"]


def test_boundaries_inside_events_are_found_but_not_the_shots_own_cuts(truth):
    assert footage.boundaries_in_events(truth, [(118, 118), (42, 50), (148, 148)]) == []
    hits = footage.boundaries_in_events(truth, [(21, 21), (90, 94)])
    assert [(h["kind"], h["boundary"]) for h in hits] == [("flash", [21, 21]), ("pan", [90, 94])]


def test_clips_outside_the_montage_are_refused(truth):
    with pytest.raises(ValueError, match="outside"):
        footage.score_clips(truth, [(200, 230)])
