"""One decode of a source, shared by every detector of the cut-detection cascade.

The SVD paper runs PySceneDetect as a cascade of three detectors at different frame rates and thresholds.
Run the usual way, each detector decodes the video again at full size. Here the video is decoded once,
scaled by FFmpeg to `detect_width`, and each frame goes to every detector whose rate wants it and to the
`BoundaryRefiner`, which turns the detectors' cuts into exact boundaries. Memory is a window of small
frames plus 8 bytes of timestamp per frame (3.5 MB for two hours at 60 fps).

A `kind: transnetv2` detector gets the same frames, area-resized to its 48x27 RGB input, in windows of
100 (`curation/split/transnet.py`). Each candidate of its single-frame head goes to the refiner like any
detector's cut, and the span its many-hot head marks goes with it (`add_span`), so the refiner trims the
whole gradual transition. Its candidates come a few batches of windows late; the refiner settles every
candidate that much later. In mode `candidates` (the default on a CPU, where the network scores an order
of magnitude fewer frames a second than PyAV decodes) only the windows around candidates of the cheap
detectors are scored: copies of the cascade's content and adaptive detectors at lowered thresholds, plus
the cascade's own cuts, ask for them.
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
from curation.split.transitions import Boundary, BoundaryRefiner, TransitionSettings, reach_frames
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
    model_frames: int = 0  # frames a transnetv2 detector scored (of num_frames; per detector, summed)

    @property
    def num_frames(self) -> int:
        return len(self.pts)


def scan_video(path: str | Path, config: SplitConfig) -> SceneScan:
    """Decode `path` once and run the whole cascade on it. Raises VideoError for unusable files."""
    info = probe(path)
    scene_specs = [spec for spec in config.detectors if spec.kind != "transnetv2"]
    cascade = [(_make_detector(spec, info.fps), _frame_step(spec, info.fps), spec.kind) for spec in scene_specs]
    lag = max(round(spec.min_scene_seconds * info.fps) for spec in config.detectors) + 8
    transitions = config.transitions
    settings = TransitionSettings(
        max_transition_seconds=transitions.max_transition_seconds,
        same_shot_difference=transitions.same_shot_difference,
        black_level=transitions.black_level,
        margin_frames=transitions.margin_frames,
    )
    models = _TransNetDetectors(config, scene_specs, info.fps, reach_frames(info.fps, settings), lag)
    refiner = BoundaryRefiner(info.fps, settings, detector_lag_frames=lag, candidate_delay_frames=models.latency)
    models.refiner = refiner
    pts: array = array("q")
    keyframes: list[int] = []
    truncated = None
    try:
        for frame in prefetch(decode_scaled(Path(path), config.detect_width)):
            pts.append(frame.pts)
            if frame.key_frame:
                keyframes.append(frame.index)
            timecode = FrameTimecode(frame.index, fps=info.fps)
            for detector, step, kind in cascade:
                if frame.index % step == 0:
                    for cut in detector.process_frame(timecode, frame.image):
                        seen = models.propose(cut.frame_num, step)
                        refiner.add_candidate(cut.frame_num, confirmed=models.confirms(kind, seen))
            models.push(frame.index, frame.image, timecode)
            refiner.push(frame.index, frame.image)
    except TruncatedVideo as error:
        truncated = str(error)
        log.warning("%s: %s; using the frames before it", path, truncated)
    end = FrameTimecode(len(pts), fps=info.fps)
    for detector, step, kind in cascade:
        for cut in detector.post_process(end):
            seen = models.propose(cut.frame_num, step)
            refiner.add_candidate(cut.frame_num, confirmed=models.confirms(kind, seen))
    models.finish()
    return SceneScan(info, pts, keyframes, refiner.finish(), truncated, models.scored_frames)


class _TransNetDetectors:
    """The cascade's `kind: transnetv2` detectors (usually none or one): the network, loaded once per process,
    fed each frame as 48x27 RGB, and, for those in mode `candidates`, the cheap detectors that ask for windows.

    A cheap candidate at frame p asks for the frames from the detector's frame step (plus 2) before p to 2
    after it: where the change it saw happened. The stream grows a request over a window's edge while the
    network's event there runs on, so a transition longer than that is still scored whole.
    """

    def __init__(self, config: SplitConfig, scene_specs: list[DetectorConfig], fps: float, reach: int, lag: int):
        self.refiner: BoundaryRefiner | None = None  # set once the refiner is made: it needs `latency` first
        self.streams = []
        self.proposers: list[tuple[object, int]] = []  # (lowered detector, frame step)
        specs = [spec for spec in config.detectors if spec.kind == "transnetv2"]
        if not specs:
            return
        from curation.split import transnet  # torch and the network only when a cascade asks for them

        self.transnet = transnet
        cheap = [spec for spec in scene_specs if spec.kind in ("content", "adaptive")] or _default_proposers()
        # Window k is decided once every request for it can have come: the last one from a candidate up to a
        # frame step (+ 2) after the window's end, reported up to `lag` frames late.
        step = max(_frame_step(spec, fps) for spec in cheap + scene_specs)
        decide_delay = max(0, _BEFORE + step + lag - transnet.CONTEXT)
        scales = []
        for spec in specs:
            model = transnet.load(spec.device, spec.precision)
            select = spec.mode == "candidates" or (spec.mode == "auto" and model.device.type != "cuda")
            events = transnet.Events(spec.threshold, spec.span_threshold, 4 * reach, self._emit)
            self.streams.append(transnet.WindowStream(model, events, select=select, decide_delay=decide_delay))
            if select:
                scales.append(spec.candidates_scale)
        if scales:
            scale = min(scales)
            for spec in cheap:
                lowered = spec.model_copy(update={"threshold": spec.threshold * scale})
                self.proposers.append((_make_detector(lowered, fps, content_scale=scale), _frame_step(spec, fps)))

    @property
    def latency(self) -> int:
        """How many frames late a candidate may reach the refiner."""
        return max((stream.latency_frames for stream in self.streams), default=0)

    @property
    def scored_frames(self) -> int:
        return sum(stream.scored_frames for stream in self.streams)

    def confirms(self, kind: str, seen: bool) -> bool:
        """Whether a candidate of a PySceneDetect detector of this kind counts as confirmed. With TransNetV2 in
        the cascade, content and adaptive candidates are not where the network saw those frames (`seen`: every
        frame, or the windows they asked for in time): what it found there is its own candidate. The
        threshold detector's dark frames stay confirmed."""
        return not self.streams or kind == "threshold" or not seen

    def propose(self, frame: int, step: int) -> bool:
        """A cheap detector's candidate: the windows around it are wanted. Whether every network sees them (a
        request after its window was decided comes too late)."""
        in_time = [stream.want(frame - step - _BEFORE, frame + _AFTER) for stream in self.streams if stream.select]
        return all(in_time)

    def push(self, index: int, image_bgr, timecode: FrameTimecode) -> None:
        if not self.streams:
            return
        for detector, step in self.proposers:
            if index % step == 0:
                for cut in detector.process_frame(timecode, image_bgr):
                    self.propose(cut.frame_num, step)
        small = self.transnet.model_input(image_bgr)
        for stream in self.streams:
            stream.push(index, small)

    def finish(self) -> None:
        for stream in self.streams:
            stream.finish()
            if stream.late_requests:
                log.debug("transnetv2: %d windows asked for after they were decided", stream.late_requests)

    def _emit(self, frame: int, span: tuple[int, int] | None) -> None:
        self.refiner.add_candidate(frame)
        if span is not None:
            self.refiner.add_span(*span)


# A cheap detector's cut may be a frame or two off the network's (which marks the frame before a hard cut).
_BEFORE, _AFTER = 2, 2


def _default_proposers() -> list[DetectorConfig]:
    """For a cascade with no content or adaptive detector: the paper's two (see config._paper_cascade)."""
    return [
        DetectorConfig(kind="adaptive", fps=None, threshold=3.0),
        DetectorConfig(kind="content", fps=4.0, threshold=27.0),
    ]


def _make_detector(spec: DetectorConfig, fps: float, content_scale: float = 1.0):
    """A PySceneDetect detector; `content_scale` lowers the adaptive detector's minimum content value too."""
    min_scene_len = max(1, round(spec.min_scene_seconds * fps))
    if spec.kind == "content":
        # SUPPRESS, not PySceneDetect's default MERGE: during a long pan the score stays high, and MERGE would
        # fold a transition that follows it into one early cut; the refiner rejects the pan's candidates.
        return ContentDetector(
            threshold=spec.threshold, min_scene_len=min_scene_len, filter_mode=FlashFilter.Mode.SUPPRESS
        )
    if spec.kind == "adaptive":
        return AdaptiveDetector(
            adaptive_threshold=spec.threshold, min_scene_len=min_scene_len, min_content_val=15.0 * content_scale
        )
    return ThresholdDetector(threshold=spec.threshold, min_scene_len=min_scene_len, add_final_scene=True)


def _frame_step(spec: DetectorConfig, fps: float) -> int:
    """A detector at `spec.fps` sees every n-th frame of a source at `fps`."""
    return 1 if spec.fps is None else max(1, round(fps / spec.fps))
