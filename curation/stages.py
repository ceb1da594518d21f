"""The stage graph of `svd curate`, declared once: each stage's name, when it runs, the frames it reads, the
columns it fills and the resources it asks for.

The Ray job (`pipelines/curate.py`) builds its dataset from `STAGES`, the early filter checks a stage's
scores right after it (`curation/filtering.py`), the report knows what an early rejection skipped, and the
benchmarks run the same list in a plain loop. Adding a stage means adding it here, its columns to
`curation/record.py` and its worker to `pipelines/workers.py`.

Stages with a `pool` are actor pools that load a model once; the others are Ray tasks. The motion task
decodes each clip once for every stage that reads frames (`frame_plan`), so a stage's `frames` are decoded
even when motion itself is off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from curation.config import ActorPoolConfig, CurationConfig
from curation.frame_sampling import key_indices, middle_frame_index, sampled_indices, uniform_frame_indices
from curation.record import Column, Stage

FrameIndices = Callable[[int, float, CurationConfig], list[int]]  # (num_frames, fps, config) -> indices


@dataclass(frozen=True)
class StageSpec:
    name: Stage
    enabled: Callable[[CurationConfig], bool]
    frames: FrameIndices | None = None  # the frames of the clip it reads, None: none
    max_side: Callable[[CurationConfig], int] | None = None  # the long side it wants them decoded at
    pool: Callable[[CurationConfig], ActorPoolConfig] | None = None  # an actor pool's resources; None: a task
    task_cpus: Callable[[CurationConfig], float] | None = None  # a task's CPUs

    @property
    def columns(self) -> tuple[Column, ...]:
        return Column.of(self.name)


STAGES: tuple[StageSpec, ...] = (
    StageSpec(Stage.SPLIT, enabled=lambda config: True, task_cpus=lambda config: config.ray.split_cpus),
    StageSpec(
        Stage.MOTION,
        enabled=lambda config: config.motion.enabled,
        frames=lambda n, fps, config: sampled_indices(n, fps, config.motion.sample_fps),
        max_side=lambda config: config.motion.max_side,
        task_cpus=lambda config: config.ray.motion_cpus,
    ),
    StageSpec(
        Stage.OCR,
        enabled=lambda config: config.ocr.enabled,
        frames=lambda n, fps, config: key_indices(n),
        max_side=lambda config: config.ocr.max_side,
        pool=lambda config: config.ray.ocr,
    ),
    StageSpec(
        Stage.AESTHETICS,
        enabled=lambda config: config.clip.enabled,
        frames=lambda n, fps, config: key_indices(n),
        max_side=lambda config: config.clip.max_side,
        pool=lambda config: config.ray.clip,
    ),
    StageSpec(
        Stage.COCA,
        enabled=lambda config: config.caption.enabled and config.caption.coca.enabled,
        frames=lambda n, fps, config: [middle_frame_index(n)],
        max_side=lambda config: config.caption.coca.max_side,
        pool=lambda config: config.ray.coca,
    ),
    StageSpec(
        Stage.VBLIP,
        enabled=lambda config: config.caption.enabled and config.caption.vblip.enabled,
        frames=lambda n, fps, config: uniform_frame_indices(n, config.caption.vblip.num_frames),
        max_side=lambda config: config.caption.vblip.max_side,
        pool=lambda config: config.ray.vblip,
    ),
    StageSpec(Stage.CAPTION, enabled=lambda config: config.caption.enabled, pool=lambda config: config.ray.llm),
    StageSpec(
        Stage.CAPTION_MATCH,
        enabled=lambda config: config.clip.enabled and config.caption.enabled,
        pool=lambda config: config.ray.clip,
    ),
)
BY_NAME = {stage.name: stage for stage in STAGES}


def enabled_stages(config: CurationConfig) -> list[StageSpec]:
    """The stages this config runs, in pipeline order."""
    return [stage for stage in STAGES if stage.enabled(config)]


@dataclass(frozen=True)
class FramePlan:
    """Which frames each stage reads, and the size they are decoded at (None: the coded size)."""

    indices: dict[Stage, list[int]]
    max_side: int | None

    @property
    def all_indices(self) -> list[int]:
        return sorted({index for wanted in self.indices.values() for index in wanted})


def frame_plan(num_frames: int, fps: float, config: CurationConfig) -> FramePlan:
    """The frames every enabled stage reads, decoded once at the largest size any of them asks for."""
    reading = [stage for stage in enabled_stages(config) if stage.frames is not None]
    indices = {stage.name: stage.frames(num_frames, fps, config) for stage in reading}
    sides = [stage.max_side(config) for stage in reading]
    return FramePlan(indices, max(sides) if sides else None)


def reads_frames(config: CurationConfig) -> bool:
    """Whether any enabled stage reads frames, i.e. whether the motion task has to decode."""
    return any(stage.frames is not None for stage in enabled_stages(config))


def cpus_needed(config: CurationConfig) -> float:
    """CPUs held at once: every actor of every enabled pool, plus one task of each task stage."""
    total = 0.0
    for stage in enabled_stages(config):
        if stage.pool is not None:
            pool = stage.pool(config)
            total += pool.num_cpus * pool.concurrency
    # The split and motion tasks are counted even when motion is off: its task still decodes (or passes rows on).
    return total + sum(stage.task_cpus(config) for stage in STAGES if stage.task_cpus is not None)


def later_work(config: CurationConfig) -> dict[Stage, bool]:
    """For each stage, whether an enabled stage comes after it: what a clip rejected there never went through."""
    names = [stage.name for stage in STAGES]
    return {name: any(stage.enabled(config) for stage in STAGES[index + 1 :]) for index, name in enumerate(names)}
