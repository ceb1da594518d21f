"""The first stage of `svd curate`: one source video in, single-shot clip files and their records out."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from curation.config import SplitConfig
from curation.record import ClipRecord
from curation.split.detection import SceneScan, scan_video
from curation.split.fates import FATE_COUNTS, Span, fate_counts, frame_fates
from curation.split.plan import clip_key, content_hash, plan_clips
from curation.split.writer import write_reencoded, write_smart_cut, write_stream_copy

log = logging.getLogger(__name__)


@dataclass
class SplitResult:
    source: str
    clips: list[ClipRecord] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    fates: list[Span] = field(default_factory=list)  # where every frame went (`fates.py`)


def split_video(
    source: str | Path, clips_dir: Path, output_root: Path, config: SplitConfig, identity: str | None = None
) -> SplitResult:
    """Cut `source` into clips under `clips_dir`; record paths relative to `output_root`. `identity`: the input as
    the job names it (a URL, for a remote source copied here first; default: `source`), which makes the keys
    of two inputs differ even when their files are the same.

    Raises `curation.video_io.VideoError` for a source that cannot be used at all.
    """
    source = Path(source)
    scan = scan_video(source, config)
    plan = plan_clips(scan, config)
    source_hash = content_hash(source)
    identity = str(source) if identity is None else identity
    keys = [clip_key(source.name, identity, source_hash, clip.start, clip.end) for clip in plan.clips]
    paths = [clips_dir / f"{key}.mp4" for key in keys]
    clips_dir.mkdir(parents=True, exist_ok=True)
    if config.cut == "reencode":
        written = write_reencoded(scan, plan.clips, paths, config.crf, config.preset, config.reencode_max_side)
    elif config.cut == "smart":
        written = write_smart_cut(scan, plan.clips, paths, config.crf, config.preset)
    else:
        written = write_stream_copy(scan, plan.clips, paths)

    result = SplitResult(str(source))
    min_frames = config.min_seconds * scan.info.fps - 1e-6
    too_short_written = 0
    for clip in written:
        if clip.end - clip.start < min_frames:  # B-frame reordering left too little before the end
            clip.path.unlink()
            too_short_written += 1
            continue
        result.clips.append(_record(scan, clip, len(result.clips), source, output_root, config))
    boundaries = [(boundary.start, boundary.end) for boundary in scan.boundaries]
    written_ranges = [(clip.start_frame, clip.end_frame) for clip in result.clips]
    result.fates = frame_fates(scan.num_frames, boundaries, plan.too_short_spans, written_ranges)
    frames_by_fate = fate_counts(result.fates)
    result.counts = {
        "frames": scan.num_frames,
        "scenes": plan.scenes,
        "boundaries": len(scan.boundaries),
        "scenes_too_short": plan.too_short + too_short_written,
        "scenes_without_keyframe": plan.no_keyframe,
        "clips": len(result.clips),
        **{FATE_COUNTS[fate]: frames for fate, frames in frames_by_fate.items()},
    }
    return result


def _record(scan: SceneScan, clip, clip_index: int, source: Path, output_root: Path, config: SplitConfig):
    info, pts = scan.info, scan.pts
    origin = pts[0]
    start_time = float((pts[clip.start] - origin) * info.time_base)
    if clip.end < len(pts):
        end_time = float((pts[clip.end] - origin) * info.time_base)
    else:  # the last frame lasts one frame period
        end_time = float((pts[-1] - origin) * info.time_base) + 1.0 / info.fps
    width, height = clip.width, clip.height
    if info.rotation in (90, 270):
        width, height = height, width
    note = f"source truncated ({scan.truncated}); only its readable part was used" if scan.truncated else ""
    return ClipRecord(
        key=clip.path.stem,
        source=str(source),
        clip_index=clip_index,
        start_frame=clip.start,
        end_frame=clip.end,
        start_time=round(start_time, 6),
        end_time=round(end_time, 6),
        fps=info.fps,
        num_frames=clip.end - clip.start,
        width=width,
        height=height,
        codec=clip.codec,
        rotation=info.rotation,
        transition_before=clip.planned.before,
        transition_after=clip.planned.after,
        scene_start_frame=clip.planned.scene_start,
        scene_end_frame=clip.planned.scene_end,
        written_by=clip.written_by,
        path=str(clip.path.relative_to(output_root)),
        note=note,
    )
