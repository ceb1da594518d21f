"""Generated videos with known ground truth: shots, cuts, gradual transitions, motion and text.

Tests use them to check the splitter, the scores and the whole job against facts we constructed; the
README's demo (`svd sample-video`) uses one to try `svd curate` with no download. Every shot has its own
seeded texture and colours, so two shots never look alike, and frames are made one at a time, so a
long video costs no memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from curation.video_io import write_frames

ShotKind = Literal["moving", "static", "pan", "text"]
TransitionKind = Literal["cut", "dissolve", "fade", "wipe"]


@dataclass(frozen=True)
class Shot:
    """One continuous shot. `speed` is in pixels per frame (objects for `moving`, camera for `pan`)."""

    kind: ShotKind
    seconds: float
    speed: float = 2.0
    text: str = "SALE 50%"
    flash_at: float | None = None  # seconds into the shot: 2 bright frames that are not a cut


@dataclass(frozen=True)
class Transition:
    """How one shot gives way to the next; `seconds` is the length of a gradual transition."""

    kind: TransitionKind = "cut"
    seconds: float = 0.5


@dataclass(frozen=True)
class Span:
    """Frames [start, end) of a written video, with what they show (`kind`: a shot's or a transition's, or
    "flash" / "pan"); `shot`: the index of the shot a shot or an event belongs to, where it is known."""

    start: int
    end: int
    kind: str
    shot: int | None = None

    @property
    def frames(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class SyntheticVideo:
    """A written video and the truth about it, in frame numbers of the written file."""

    path: Path
    fps: float
    width: int
    height: int
    num_frames: int
    shots: list[Span] = field(default_factory=list)  # frames that belong to one shot only
    transitions: list[Span] = field(default_factory=list)  # gradual transitions and hard cuts (empty spans)

    @property
    def hard_cuts(self) -> list[int]:
        """First frame of each shot that follows a hard cut."""
        return [span.start for span in self.transitions if span.kind == "cut"]

    def shot_at(self, frame: int) -> int | None:
        """Index of the shot that frame belongs to, or None for a transition frame."""
        for index, span in enumerate(self.shots):
            if span.start <= frame < span.end:
                return index
        return None


def make_video(
    path: str | Path,
    timeline: Sequence[Shot | Transition],
    fps: float = 24.0,
    size: tuple[int, int] = (128, 96),
    keyframe_seconds: float = 2.0,
    seed: int = 0,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
) -> SyntheticVideo:
    """Render `timeline` (shots, with transitions between them; a missing transition is a hard cut).

    Odd frame sizes need a `pix_fmt` without chroma subsampling (e.g. yuv444p): 4:2:0 cannot hold them.
    """
    path = Path(path)
    width, height = size
    shots, transitions, plan = _plan(timeline, fps)
    renderers = [_ShotRenderer(shot, width, height, fps, seed + index) for index, shot in enumerate(shots)]

    def frames() -> Iterator[np.ndarray]:
        for step in plan:
            yield step.render(renderers)

    num_frames = write_frames(
        path, frames(), fps, width, height, codec=codec, keyframe_seconds=keyframe_seconds, pix_fmt=pix_fmt
    )
    return SyntheticVideo(
        path=path,
        fps=fps,
        width=width,
        height=height,
        num_frames=num_frames,
        shots=[Span(s, e, kind) for s, e, kind in _shot_spans(plan)],
        transitions=transitions,
    )


def repeat_timeline(cycle: Sequence[Shot | Transition], seconds: float) -> list[Shot | Transition]:
    """`cycle` repeated until its shots last `seconds` (the last shot cut short, at least 1 s), for long test
    inputs; it never ends on a transition."""
    timeline: list[Shot | Transition] = []
    left = seconds
    while left > 0:
        for step in cycle:
            if isinstance(step, Shot):
                if left <= 0:
                    break
                length = min(step.seconds, max(left, 1.0))
                timeline.append(Shot(step.kind, length, step.speed, step.text, step.flash_at))
                left -= length
            else:
                timeline.append(step)
    while isinstance(timeline[-1], Transition):
        timeline.pop()
    return timeline


def sample_timeline() -> list[Shot | Transition]:
    """The README's demo: several shots, motion, a static part, text, a dissolve, a fade, a wipe, a short shot."""
    return [
        Shot("moving", 4.0, speed=2.5),
        Transition("cut"),
        Shot("static", 3.0),
        Transition("dissolve", 0.5),
        Shot("text", 3.0, text="BIG SALE"),
        Transition("fade", 0.5),
        Shot("pan", 4.0, speed=6.0, flash_at=2.0),
        Transition("cut"),
        Shot("moving", 1.0, speed=3.0),
        Transition("wipe", 0.5),
        Shot("moving", 14.0, speed=1.5),
    ]


@dataclass(frozen=True)
class _Step:
    """How to render one output frame: which shots, at which of their own frame numbers, mixed how."""

    shot_a: int
    frame_a: int
    shot_b: int | None = None
    frame_b: int = 0
    mix: float = 0.0  # 0 = all a, 1 = all b
    kind: str = "shot"

    def render(self, renderers: list[_ShotRenderer]) -> np.ndarray:
        a = renderers[self.shot_a].frame(self.frame_a)
        if self.shot_b is None:
            return a
        b = renderers[self.shot_b].frame(self.frame_b)
        if self.kind == "dissolve":
            return cv2.addWeighted(a, 1.0 - self.mix, b, self.mix, 0.0)
        if self.kind == "fade":  # through black: a darkens over the first half, b brightens over the second
            level = 1.0 - 2.0 * self.mix if self.mix < 0.5 else 2.0 * self.mix - 1.0
            source = a if self.mix < 0.5 else b
            return (source.astype(np.float32) * level).astype(np.uint8)
        if self.kind == "wipe":
            edge = int(round(self.mix * a.shape[1]))
            out = a.copy()
            out[:, :edge] = b[:, :edge]
            return out
        raise ValueError(f"unknown transition kind {self.kind!r}")


def _plan(timeline: Sequence[Shot | Transition], fps: float) -> tuple[list[Shot], list[Span], list[_Step]]:
    shots: list[Shot] = []
    pending: Transition | None = None
    transitions: list[Span] = []
    plan: list[_Step] = []
    for item in timeline:
        if isinstance(item, Transition):
            if not shots or pending is not None:
                raise ValueError("a transition must stand between two shots")
            pending = item
            continue
        shots.append(item)
        index = len(shots) - 1
        length = max(1, round(item.seconds * fps))
        start_in_shot = 0
        if index > 0:
            transition = pending or Transition("cut")
            if transition.kind == "cut":
                transitions.append(Span(len(plan), len(plan), "cut"))
            else:
                frames = max(2, round(transition.seconds * fps))
                start = len(plan)
                previous_end = _last_frame_of(plan, index - 1) + 1
                for k in range(frames):
                    mix = (k + 1) / (frames + 1)
                    plan.append(_Step(index - 1, previous_end + k, index, k, mix, transition.kind))
                transitions.append(Span(start, len(plan), transition.kind))
                start_in_shot = frames
        pending = None
        plan.extend(_Step(index, k) for k in range(start_in_shot, start_in_shot + length))
    if pending is not None:
        raise ValueError("the timeline ends with a transition")
    return shots, transitions, plan


def _last_frame_of(plan: list[_Step], shot: int) -> int:
    return max(step.frame_a for step in plan if step.shot_a == shot and step.shot_b is None)


def _shot_spans(plan: list[_Step]) -> Iterator[tuple[int, int, str]]:
    start = 0
    for index in range(1, len(plan) + 1):
        if index == len(plan) or (plan[index].shot_b, plan[index].shot_a) != (plan[start].shot_b, plan[start].shot_a):
            if plan[start].shot_b is None:
                yield start, index, "shot"
            start = index


class _ShotRenderer:
    """Draws frame k of one shot: a seeded texture, plus moving discs, a camera pan, or big text."""

    def __init__(self, shot: Shot, width: int, height: int, fps: float, seed: int) -> None:
        self.shot, self.width, self.height, self.fps = shot, width, height, fps
        rng = np.random.default_rng(seed)
        # A pan's canvas is long enough for the whole shot plus a transition on each side: no bounce.
        canvas_width = width + math.ceil(shot.speed * (shot.seconds + 4) * fps) if shot.kind == "pan" else width
        coarse = rng.integers(0, 256, size=(max(2, height // 16), max(2, canvas_width // 16), 3), dtype=np.uint8)
        texture = cv2.resize(coarse, (canvas_width, height), interpolation=cv2.INTER_CUBIC)
        detail = rng.integers(-40, 40, size=(height, canvas_width, 1), dtype=np.int16)
        self.texture = np.clip(texture.astype(np.int16) + detail, 0, 255).astype(np.uint8)
        self.discs = [
            (
                rng.uniform(0, width),
                rng.uniform(0, height),
                rng.uniform(0, 2 * math.pi),
                tuple(map(int, rng.integers(0, 256, 3))),
            )
            for _ in range(4)
        ]

    def frame(self, k: int) -> np.ndarray:
        shot, width, height = self.shot, self.width, self.height
        if shot.kind == "pan":
            offset = min(int(round(shot.speed * k)), self.texture.shape[1] - width)
            image = np.ascontiguousarray(self.texture[:, offset : offset + width])
        else:
            image = self.texture.copy()
        if shot.kind == "moving":
            radius = max(3, height // 8)
            for x0, y0, angle, colour in self.discs:
                x = _bounce(x0 + shot.speed * k * math.cos(angle), width)
                y = _bounce(y0 + shot.speed * k * math.sin(angle), height)
                cv2.circle(image, (int(x), int(y)), radius, colour, thickness=-1)
        if shot.kind == "text":
            scale = width / 190
            (text_w, text_h), _ = cv2.getTextSize(shot.text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
            origin = ((width - text_w) // 2, (height + text_h) // 2)
            cv2.rectangle(
                image,
                (origin[0] - 4, origin[1] - text_h - 6),
                (origin[0] + text_w + 4, origin[1] + 6),
                (255, 255, 255),
                -1,
            )
            cv2.putText(image, shot.text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 2, cv2.LINE_AA)
        if shot.flash_at is not None and 0 <= k - round(shot.flash_at * self.fps) < 2:
            image = cv2.addWeighted(image, 0.3, np.full_like(image, 255), 0.7, 0.0)
        return image


def _bounce(position: float, limit: float) -> float:
    position %= 2 * limit
    return position if position <= limit else 2 * limit - position
