"""One decode of a source, shared by every detector of the cut-detection cascade.

The SVD paper runs PySceneDetect as a cascade of three detectors at different frame rates and thresholds.
Run the usual way, each detector decodes the video again at full size. Here the video is decoded once,
scaled by FFmpeg to `detect_width`, and each frame goes to every detector whose rate wants it and to the
`BoundaryRefiner`, which turns the detectors' cuts into exact boundaries. Memory is a window of small
frames plus 8 bytes of timestamp per frame (3.5 MB for two hours at 60 fps).
"""

from __future__ import annotations

import logging
from array import array
from dataclasses import dataclass
from pathlib import Path

from scenedetect import FrameTimecode
from scenedetect.detector import FlashFilter
from scenedetect.detectors import AdaptiveDetector, ContentDetector, ThresholdDetector

from curation.config import DetectorConfig, SplitConfig
from curation.prefetch import prefetch
from curation.split.transitions import Boundary, BoundaryRefiner, TransitionSettings
from curation.video_io import TruncatedVideo, VideoInfo, decode_scaled, probe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SceneScan:
    """What one pass over a source found: its boundaries, frame timestamps and keyframes."""

    info: VideoInfo
    pts: array  # presentation timestamp of every frame, in info.time_base units
    keyframes: list[int]  # frame indices
    boundaries: list[Boundary]
    truncated: str | None = None  # why decoding stopped early, when it did

    @property
    def num_frames(self) -> int:
        return len(self.pts)


def scan_video(path: str | Path, config: SplitConfig) -> SceneScan:
    """Decode `path` once and run the whole cascade on it. Raises VideoError for unusable files."""
    info = probe(path)
    cascade = [(_make_detector(spec, info.fps), _frame_step(spec, info.fps)) for spec in config.detectors]
    lag = max(round(spec.min_scene_seconds * info.fps) for spec in config.detectors) + 8
    transitions = config.transitions
    settings = TransitionSettings(
        max_transition_seconds=transitions.max_transition_seconds,
        same_shot_difference=transitions.same_shot_difference,
        black_level=transitions.black_level,
        margin_frames=transitions.margin_frames,
    )
    refiner = BoundaryRefiner(info.fps, settings, detector_lag_frames=lag)
    pts: array = array("q")
    keyframes: list[int] = []
    truncated = None
    try:
        for frame in prefetch(decode_scaled(Path(path), config.detect_width)):
            pts.append(frame.pts)
            if frame.key_frame:
                keyframes.append(frame.index)
            timecode = FrameTimecode(frame.index, fps=info.fps)
            for detector, step in cascade:
                if frame.index % step == 0:
                    for cut in detector.process_frame(timecode, frame.image):
                        refiner.add_candidate(cut.frame_num)
            refiner.push(frame.index, frame.image)
    except TruncatedVideo as error:
        truncated = str(error)
        log.warning("%s: %s; using the frames before it", path, truncated)
    end = FrameTimecode(len(pts), fps=info.fps)
    for detector, _ in cascade:
        for cut in detector.post_process(end):
            refiner.add_candidate(cut.frame_num)
    return SceneScan(info, pts, keyframes, refiner.finish(), truncated)


def _make_detector(spec: DetectorConfig, fps: float):
    min_scene_len = max(1, round(spec.min_scene_seconds * fps))
    if spec.kind == "content":
        # SUPPRESS, not PySceneDetect's default MERGE: during a long pan the score stays high, and MERGE would
        # fold a transition that follows it into one early cut; the refiner rejects the pan's candidates.
        return ContentDetector(
            threshold=spec.threshold, min_scene_len=min_scene_len, filter_mode=FlashFilter.Mode.SUPPRESS
        )
    if spec.kind == "adaptive":
        return AdaptiveDetector(adaptive_threshold=spec.threshold, min_scene_len=min_scene_len)
    return ThresholdDetector(threshold=spec.threshold, min_scene_len=min_scene_len, add_final_scene=True)


def _frame_step(spec: DetectorConfig, fps: float) -> int:
    """A detector at `spec.fps` sees every n-th frame of a source at `fps`."""
    return 1 if spec.fps is None else max(1, round(fps / spec.fps))
