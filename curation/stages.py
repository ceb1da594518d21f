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


def _motion_frames(num_frames: int, fps: float, config: CurationConfig) -> list[int]:
    return sampled_indices(num_frames, fps, config.motion.sample_fps)


def _first_middle_last(num_frames: int, fps: float, config: CurationConfig) -> list[int]:
    return key_indices(num_frames)


def _middle_frame(num_frames: int, fps: float, config: CurationConfig) -> list[int]:
    return [middle_frame_index(num_frames)]


def _perceptual_frames(num_frames: int, fps: float, config: CurationConfig) -> list[int]:
    settings = config.dedup.perceptual
    return sampled_indices(num_frames, fps, settings.sample_fps)[: settings.max_frames]


def _vblip_frames(num_frames: int, fps: float, config: CurationConfig) -> list[int]:
    return uniform_frame_indices(num_frames, config.caption.vblip.num_frames)


@dataclass(frozen=True)
class StageSpec:
    """One stage. `sections`: the config sections that must all be enabled for it to run (a dotted one, such
    as `caption.coca`, needs `caption` too); the first one's `max_side` is the size it wants its frames at.
    `pool`: its actor pool's section of `ray` (None: a Ray task with `ray.<task_cpus>` CPUs, or, with neither,
    work done inside the motion task)."""

    name: Stage
    sections: tuple[str, ...]
    frames: FrameIndices | None = None  # the frames of the clip it reads; None: none
    pool: str | None = None
    task_cpus: str | None = None

    @property
    def columns(self) -> tuple[Column, ...]:
        return Column.of(self.name)

    def enabled(self, config: CurationConfig) -> bool:
        return all(_section(config, path).enabled for section in self.sections for path in _prefixes(section))

    def max_side(self, config: CurationConfig) -> int:
        return _section(config, self.sections[0]).max_side

    def pool_config(self, config: CurationConfig) -> ActorPoolConfig:
        return getattr(config.ray, self.pool)

    def cpus(self, config: CurationConfig) -> float:
        """CPUs it holds while it runs: a task's, or every actor of its pool."""
        if self.pool is None:
            return getattr(config.ray, self.task_cpus) if self.task_cpus else 0.0
        pool = self.pool_config(config)
        return pool.num_cpus * pool.concurrency


STAGES: tuple[StageSpec, ...] = (
    StageSpec(Stage.SPLIT, (), task_cpus="split_cpus"),
    StageSpec(Stage.MOTION, ("motion",), frames=_motion_frames, task_cpus="motion_cpus"),
    StageSpec(Stage.DEDUP, ("dedup.perceptual",), frames=_perceptual_frames),  # hashed in the motion task
    StageSpec(Stage.OCR, ("ocr",), frames=_first_middle_last, pool="ocr"),
    StageSpec(Stage.AESTHETICS, ("clip",), frames=_first_middle_last, pool="clip"),
    StageSpec(Stage.COCA, ("caption.coca",), frames=_middle_frame, pool="coca"),
    StageSpec(Stage.VBLIP, ("caption.vblip",), frames=_vblip_frames, pool="vblip"),
    StageSpec(Stage.CAPTION, ("caption",), pool="llm"),  # the LLM merge runs only when caption.llm is enabled
    StageSpec(Stage.CAPTION_MATCH, ("clip", "caption"), pool="clip"),  # the aesthetics stage's model again
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
    """CPUs held at once: every actor of every enabled pool, plus one task of each task stage (counted even
    when motion is off: its task still decodes for the later stages, or passes rows on)."""
    return sum(stage.cpus(config) for stage in STAGES if stage.pool is None or stage.enabled(config))


def _section(config: CurationConfig, path: str):
    section = config
    for name in path.split("."):
        section = getattr(section, name)
    return section


def _prefixes(path: str) -> list[str]:
    """`caption.coca` -> `caption`, `caption.coca`."""
    names = path.split(".")
    return [".".join(names[: index + 1]) for index in range(len(names))]


def later_work(config: CurationConfig) -> dict[Stage, bool]:
    """For each stage, whether an enabled stage comes after it: what a clip rejected there never went through."""
    names = [stage.name for stage in STAGES]
    return {name: any(stage.enabled(config) for stage in STAGES[index + 1 :]) for index, name in enumerate(names)}
