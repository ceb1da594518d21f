"""From approximate cut positions to exact shot boundaries, with gradual transitions measured and trimmed.

PySceneDetect's detectors say *that* the shot changed near some frame; for a dissolve or a fade they put
one cut somewhere inside it, so both neighbouring clips keep transition frames. `BoundaryRefiner` looks at
cheap per-frame signals around each candidate and returns the span of frames that belong to neither shot:

- `change`: mean absolute difference of consecutive thumbnails (what content detectors see);
- `residual`: the same after compensating global motion by phase correlation, so a camera pan is quiet;
- `local`: the largest change of any cell of a coarse grid, so the moving edge of a wipe stands out;
- `luma`: mean brightness, for fades through black.

A frame is part of the transition while it is dark, while brightness ramps (a fade), or while either
difference stands clearly above the level of the shots on each side. A single sharp spike is a hard cut.
A span whose frames change mostly by a global shift (a pan, however its brightness changes) is no
transition. A detector that knows a transition's frames (TransNetV2's many-hot head) passes them with
`add_span`: a candidate's span is widened to every such span it touches, within the same reach. Finally the
last frame before and the first frame after the span are compared with motion compensation: if they show the
same shot (a flash, a fast pan), the candidate is dropped, whatever found it.

A candidate may come unconfirmed (`add_candidate(frame, confirmed=False)`): a cheap detector's, when a
learned one also saw those frames and found nothing. On real footage the cheap detectors fire on every burst
of motion in a close-up; the learned one does not, but it misses wipes. So an unconfirmed candidate makes a
boundary only where the refiner sees what the learned detector is known to miss, a wipe (each frame of the
span is part shot before, part shot after, with a crisp edge between), or a hard cut plain without it (one
frame's lone spike between two sides far apart).

Signals are kept for a sliding window only, so memory does not grow with the length of the video.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class TransitionSettings:
    """Thresholds of the refiner; all differences are in 8-bit grey levels of small thumbnails."""

    thumb_width: int = 64
    grid: tuple[int, int] = (8, 6)  # cells across and down for the `local` signal
    max_transition_seconds: float = 1.0  # longest transition measured; also how far a candidate may be off
    baseline_seconds: float = 0.5  # shot level is the median over this long, beyond the transition window
    rise_ratio: float = 1.5  # a frame is in a transition if a difference exceeds ratio * shot level...
    rise_floor: float = 2.0  # ...and shot level + floor
    cut_spike_ratio: float = 2.0  # a change this many times its neighbours' is a hard cut
    black_level: float = 12.0  # frames darker than this (mean) are part of a fade
    luma_ramp: float = 0.03  # brightness changing by more than 3% per frame is a fade ramp
    same_shot_difference: float = 8.0  # two sides closer than this (motion compensated) are one shot
    margin_frames: int = 1  # extra frames trimmed on each side of a gradual transition
    flash_seconds: float = 0.25  # a change that reverts within this long is a flash, not a cut
    unexplained_share: float = 0.5  # plain change counts where motion compensation removes less than half
    # An unconfirmed candidate's gradual span is a wipe when each changed grid cell of its frames matches one
    # side (the shot before or after) within this share of the two sides' difference, in the median.
    wipe_mismatch: float = 0.25
    # ...and its edge moves across the picture: no frame turns more than this share of those cells to the side
    # after at once (a burst of motion before a hard cut turns them all at the cut).
    wipe_max_step: float = 0.4
    span_slack_frames: int = 2  # how far the refiner's measurement may run past a detector's span
    pan_share: float = 0.25  # a span whose median frame keeps less than this of its change once aligned is a pan
    # An unconfirmed candidate is still a hard cut where it is unmistakable: one frame's change this many times
    # its neighbours', and the two sides this far apart once motion compensated (a multiple of the above).
    unconfirmed_cut_ratio: float = 4.0
    unconfirmed_cut_sides: float = 2.0


@dataclass(frozen=True)
class Boundary:
    """Frames [start, end) between two shots that belong to neither; empty (start == end) for a hard cut."""

    start: int
    end: int
    kind: str  # "cut", "fade" or "gradual" (dissolve, wipe, ...)


@dataclass
class _Signals:
    index: int
    grey: np.ndarray  # float32 thumbnail
    luma: float
    change: float  # against the previous frame
    residual: float  # against the previous frame, after global motion compensation
    local: float  # the largest change of one grid cell against the previous frame


def reach_frames(fps: float, settings: TransitionSettings) -> int:
    """How far from its candidate a transition is measured, in frames: `max_transition_seconds`."""
    return max(2, round(settings.max_transition_seconds * fps))


class BoundaryRefiner:
    """Feed every frame with `push` and candidate cuts with `add_candidate`; `finish` gives the boundaries.

    `detector_lag_frames`: how late a detector may report a candidate and still have it measured.
    `candidate_delay_frames`: how late a detector that scores windows of frames (TransNetV2) reports one;
    candidates then settle that much later, so that they still settle in frame order.
    """

    def __init__(
        self,
        fps: float,
        settings: TransitionSettings | None = None,
        detector_lag_frames: int = 0,
        candidate_delay_frames: int = 0,
    ):
        self.settings = settings or TransitionSettings()
        self.reach = reach_frames(fps, self.settings)
        self.baseline = max(3, round(self.settings.baseline_seconds * fps))
        horizon = self.reach + self.baseline
        # A candidate is settled once `horizon` (+ delay) frames after it are seen; detectors may report it late.
        self.window: deque[_Signals] = deque(maxlen=2 * horizon + detector_lag_frames + candidate_delay_frames + 2)
        self.horizon = horizon
        self.delay = candidate_delay_frames
        self.flash_frames = max(1, round(self.settings.flash_seconds * fps))
        self.candidates: list[int] = []
        self.unconfirmed: set[int] = set()  # candidates no detector but a cheap one reported
        self.spans: list[tuple[int, int]] = []  # [start, end) a detector says are transition frames
        self.boundaries: list[Boundary] = []
        self.dark_runs: list[Boundary] = []
        self.dark_since: int | None = None

    def push(self, index: int, image_bgr: np.ndarray) -> None:
        """Add the signals of frame `index` and settle the candidates that are now far enough behind."""
        width = self.settings.thumb_width
        height = max(2, round(image_bgr.shape[0] * width / image_bgr.shape[1]))
        thumb = cv2.resize(image_bgr, (width, height), interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(thumb, cv2.COLOR_BGR2GRAY).astype(np.float32)
        change = residual = local = 0.0
        if self.window:
            previous = self.window[-1]
            change = float(np.abs(grey - previous.grey).mean())
            residual = min(change, _aligned_difference(previous.grey, grey))  # no shift is an alignment too
            cells = cv2.resize(np.abs(grey - previous.grey), self.settings.grid, interpolation=cv2.INTER_AREA)
            local = float(cells.max())
        signals = _Signals(index, grey, float(grey.mean()), change, residual, local)
        self._track_darkness(signals)
        self.window.append(signals)
        self._settle(until=index - self.horizon - self.delay)

    def _track_darkness(self, signals: _Signals) -> None:
        """Dark runs are transition frames however long they last; their edges are candidates for fades."""
        dark = self._dark(signals)
        if dark and self.dark_since is None:
            self.dark_since = signals.index
            self.add_candidate(signals.index)
        elif not dark and self.dark_since is not None:
            self.dark_runs.append(Boundary(self.dark_since, signals.index, "fade"))
            self.dark_since = None
            self.add_candidate(signals.index)

    def add_candidate(self, frame: int, confirmed: bool = True) -> None:
        """A detector's cut near `frame`; `confirmed=False`: a cheap detector's that a learned one did not
        confirm (kept only as a wipe)."""
        if not confirmed:
            if frame in self.candidates:
                return
            self.unconfirmed.add(frame)
        else:
            self.unconfirmed.discard(frame)
        self.candidates.append(frame)

    def add_span(self, start: int, end: int) -> None:
        """Frames [start, end) are a transition, says a detector: a candidate that touches them trims them all.

        Only a candidate makes a boundary: a span alone does not, and the same-shot check still applies."""
        if start < end:
            self.spans.append((start, end))

    def finish(self) -> list[Boundary]:
        """Settle the remaining candidates; return every boundary, in order, overlapping ones merged."""
        self._settle(until=None)
        if self.dark_since is not None:
            self.dark_runs.append(Boundary(self.dark_since, self.window[-1].index + 1, "fade"))
        merged: list[Boundary] = []
        for boundary in sorted(self.boundaries + self.dark_runs, key=lambda b: (b.start, b.end)):
            if merged and boundary.start <= merged[-1].end + self.settings.margin_frames:  # nothing usable between
                merged[-1] = _merge(merged[-1], boundary)
            else:
                merged.append(boundary)
        return merged

    def _settle(self, until: int | None) -> None:
        ready = sorted(c for c in self.candidates if until is None or c <= until)
        if not ready:
            return
        self.candidates = [c for c in self.candidates if until is not None and c > until]
        confirmed = {c: c not in self.unconfirmed for c in ready}
        self.unconfirmed.difference_update(ready)
        if self.spans and self.window:  # spans wholly behind the window can touch no candidate any more
            self.spans = [span for span in self.spans if span[1] >= self.window[0].index]
        for candidate in dict.fromkeys(ready):
            boundary = self._measure(candidate, confirmed[candidate])
            if boundary is None:
                continue
            if self.boundaries and boundary.start <= self.boundaries[-1].end:
                self.boundaries[-1] = _merge(self.boundaries[-1], boundary)
            else:
                self.boundaries.append(boundary)

    def _measure(self, candidate: int, confirmed: bool = True) -> Boundary | None:
        frames = {signals.index: signals for signals in self.window}
        if candidate not in frames:  # out of the window: the detector reported it too late to measure
            return None
        # Never look back across the previous boundary: the shot before it says nothing about this one.
        first = max(self.window[0].index, self.boundaries[-1].end if self.boundaries else 0)
        last = self.window[-1].index
        if candidate < first:
            return None  # inside the previous boundary: already measured
        lo, hi = max(first, candidate - self.reach), min(last, candidate + self.reach)

        # Seed: the strongest change near the candidate (a content detector may be a frame or two off).
        seed = max(range(max(lo, candidate - 2), min(hi, candidate + 2) + 1), key=lambda i: frames[i].change)
        before = [frames[i] for i in range(max(first, lo - self.baseline), lo) if i in frames]
        after = [frames[i] for i in range(hi + 1, min(last, hi + self.baseline) + 1) if i in frames]
        # A shot too short to measure on one side borrows the level of the other side.
        limits = self._limits(before or after), self._limits(after or before)

        s = self.settings
        neighbours = max(frames[i].change if i in frames else 0.0 for i in (seed - 1, seed + 1))
        if (
            frames[seed].change >= s.cut_spike_ratio * neighbours
            and frames[seed].change > limits[0][0]
            and not self._dark(frames.get(seed - 1))
            and not self._dark(frames[seed])
        ):
            start = end = seed
        else:
            start, end = seed, seed + 1  # frames [start, end) are in the transition...
            while start - 1 >= lo and self._in_transition(frames, start - 1, limits[0]):
                start -= 1
            while end <= hi and self._in_transition(frames, end, limits[1]):
                end += 1
            # ...where frame `end` is the first whose change from its predecessor is back to shot level.
            end -= 1
            if end < start:
                end = start
        start, end = self._widen(start, end, lo, hi)
        if self._camera_motion(frames, start, end):
            return None

        # A cut must separate two different shots. Compare frames just outside the span, a few on each
        # side, so that a flash (bright frames, then the same shot again) or a pan is not taken for one.
        look = self.flash_frames
        before_frames = [frames[i] for i in range(start - 1, start - 2 - look, -1) if i in frames]
        after_frames = [frames[i] for i in range(end, end + 1 + look) if i in frames]
        sides = np.inf  # how far apart the two sides are, at their closest
        for a in before_frames:
            for b in after_frames:
                sides = min(sides, _aligned_difference(a.grey, b.grey))
                if sides < s.same_shot_difference:
                    return None
        # A hard cut stays at its seed (a learned span always widens to two frames or more).
        unmistakable = start == end and self._unmistakable_cut(frames[seed].change, neighbours, sides)
        if not confirmed and not unmistakable:
            if not _is_wipe([frames[i].grey for i in range(start - 1, end + 1) if i in frames], s):
                return None
        dark = any(self._dark(frames.get(i)) for i in range(start, end))
        if start == end:
            return Boundary(start, end, "cut")
        margin = s.margin_frames
        return Boundary(max(0, start - margin), end + margin, "fade" if dark else "gradual")

    def _unmistakable_cut(self, change: float, neighbours: float, sides: float) -> bool:
        """Whether a hard cut is plain without a learned detector's word: its frame's `change` is
        `unconfirmed_cut_ratio` times its `neighbours`' (the larger), and the two sides differ by
        `unconfirmed_cut_sides` x `same_shot_difference` or more. TransNetV2 scores most hard cuts near 1, but
        one that it misses is still a cut; the cheap detectors' bursts of motion in a close-up are neither
        lone spikes nor that far apart once aligned."""
        s = self.settings
        return (
            change >= s.unconfirmed_cut_ratio * neighbours and sides >= s.unconfirmed_cut_sides * s.same_shot_difference
        )

    def _camera_motion(self, frames: dict[int, _Signals], start: int, end: int) -> bool:
        """Whether the span's frames change mostly by a global shift (a pan, its brightness changing or not):
        in the median frame, what motion compensation leaves is under `pan_share` of the change."""
        ratios = [frames[i].residual / frames[i].change for i in range(start, end) if i in frames and frames[i].change]
        return bool(ratios) and float(np.median(ratios)) < self.settings.pan_share

    def _widen(self, start: int, end: int, lo: int, hi: int) -> tuple[int, int]:
        """[start, end) made the union of the detector spans it touches (and those they touch), within frames
        lo..hi, with at most `span_slack_frames` of the refiner's own measurement on each side: in moving shots
        its signals run on past a transition's end, where the learned spans are right to a frame or two."""
        learned = None
        grown = True
        while grown:
            grown = False
            for a, b in self.spans:
                a, b = max(a, lo), min(b, hi + 1)
                if a < b and a <= end and start <= b and (learned is None or a < learned[0] or b > learned[1]):
                    learned = (a, b) if learned is None else (min(learned[0], a), max(learned[1], b))
                    start, end, grown = min(start, a), max(end, b), True
        if learned is None:
            return start, end
        slack = self.settings.span_slack_frames
        return max(start, learned[0] - slack), min(end, learned[1] + slack)

    def _limits(self, shot: list[_Signals]) -> tuple[float, float, float]:
        """The `change`, `residual` and `local` a transition frame must exceed, from one shot's frames."""
        s = self.settings
        if not shot:
            return s.rise_floor, s.rise_floor, s.rise_floor
        levels = (float(np.median([getattr(f, name) for f in shot])) for name in ("change", "residual", "local"))
        return tuple(max(level * s.rise_ratio, level + s.rise_floor) for level in levels)

    def _in_transition(self, frames: dict[int, _Signals], i: int, limits: tuple[float, float, float]) -> bool:
        if i not in frames:
            return False
        here = frames[i]
        if self._dark(here):
            return True
        previous = frames.get(i - 1)
        if previous is not None and previous.luma > 0:
            ramp = abs(here.luma - previous.luma) / max(previous.luma, here.luma)
            if ramp > self.settings.luma_ramp:
                return True
        if here.residual > limits[1]:
            return True
        # Plain change also rises with camera motion: count it only where global motion explains little
        # of it (a dissolve or a wipe over moving shots).
        unexplained = here.residual >= self.settings.unexplained_share * here.change
        return unexplained and (here.change > limits[0] or here.local > limits[2])

    def _dark(self, signals: _Signals | None) -> bool:
        return signals is not None and signals.luma < self.settings.black_level


def _is_wipe(greys: list[np.ndarray], settings: TransitionSettings) -> bool:
    """Whether `greys` (the frame before a span, its frames, the frame after) are a wipe: over the grid cells
    where the two sides differ (at least half of them), each span frame matches one side or the other, not a
    blend of both (a dissolve) nor neither (motion within a shot), and the cells go over to the side after a
    few at a time, as the edge between the two sweeps across (not all at once, as at a hard cut)."""
    if len(greys) < 5:
        return False

    def cells(difference: np.ndarray) -> np.ndarray:
        return cv2.resize(difference, settings.grid, interpolation=cv2.INTER_AREA)

    before, after = greys[0], greys[-1]
    sides = cells(np.abs(before - after))
    differ = sides > max(settings.same_shot_difference, 0.5 * float(np.median(sides)))
    if differ.mean() < 0.5:
        return False
    mismatch, shown_after = [], [0.0]  # per frame: how far from either side; the share of cells on the side after
    for grey in greys[1:-1]:
        from_before, from_after = cells(np.abs(grey - before))[differ], cells(np.abs(grey - after))[differ]
        mismatch.append(np.median(np.minimum(from_before, from_after) / sides[differ]))
        shown_after.append(float((from_after < from_before).mean()))
    steps = np.diff(shown_after + [1.0])
    return float(np.mean(mismatch)) < settings.wipe_mismatch and float(steps.max()) <= settings.wipe_max_step


def _aligned_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two grey thumbnails after undoing their global shift."""
    (dx, dy), _ = cv2.phaseCorrelate(a, b)
    height, width = a.shape
    if abs(dx) > width / 2 or abs(dy) > height / 2:
        dx = dy = 0.0
    shift = np.float32([[1, 0, -dx], [0, 1, -dy]])
    aligned = cv2.warpAffine(b, shift, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    border_x, border_y = int(abs(dx)) + 1, int(abs(dy)) + 1
    inner = (slice(border_y, height - border_y), slice(border_x, width - border_x))
    if aligned[inner].size == 0:
        return float(np.abs(aligned - a).mean())
    return float(np.abs(aligned[inner] - a[inner]).mean())


def _merge(a: Boundary, b: Boundary) -> Boundary:
    kinds = {a.kind, b.kind}
    kind = "fade" if "fade" in kinds else "gradual" if "gradual" in kinds else "cut"
    return Boundary(min(a.start, b.start), max(a.end, b.end), kind)
