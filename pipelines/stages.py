"""The curation stages as Ray Data wants them: functions and callable classes over rows.

Every row has the same columns, whatever happened to its clip, so Ray's blocks always share one schema:
  source           the input video
  clips_in_source  how many clip rows this input has (0: a row that only says why there is none)
  clip             the clip's record, scores and filter state, as JSON text ("" when there is no clip)
  error            why the input failed ("" when it did not)
  counts           split counts, as JSON text (on the first row of an input only)
  frames           the frames later stages need, as .npz bytes (b"" once they are used)
The work itself is done by `curation/` (split_video, motion_score, TextDetector, filtering): these
wrappers only move data between rows and those functions, and apply the early filters.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np

from curation.clip_frames import decode_frames, plan_frames
from curation.config import CurationConfig
from curation.filtering import ClipScores, filter_rules, reject_reasons, rules_for, scores_checked_after
from curation.motion import motion_bucket_id, motion_score
from curation.ocr import TextDetector
from curation.split import split_video
from curation.video_io import VideoError

log = logging.getLogger(__name__)


def split_stage(row: dict, output_dir: str, config: CurationConfig) -> list[dict]:
    """One source in, one row per clip out (or one row saying why there is none)."""
    source, root = row["source"], Path(output_dir)
    try:
        result = split_video(source, root / "clips", root, config.split)
    except VideoError as error:
        log.warning("%s: %s", source, error)
        return [stage_row(source, 0, error=str(error))]
    except Exception as error:  # a bug or an input FFmpeg chokes on in a new way: this input fails, the job goes on
        log.exception("%s: splitting failed", source)
        return [stage_row(source, 0, error=f"splitting failed: {type(error).__name__}: {error}")]
    # Every score column exists from the start (None: not computed), so a stage switched off leaves it empty.
    clips = [{**clip.to_dict(), **ClipScores().to_dict(), "kept": True, "reject_reasons": []} for clip in result.clips]
    if not clips:
        return [stage_row(source, 0, counts=result.counts)]
    return [
        stage_row(source, len(clips), clip=clip, counts=result.counts if index == 0 else {})
        for index, clip in enumerate(clips)
    ]


def motion_stage(row: dict, output_dir: str, config: CurationConfig) -> dict:
    """Decode the clip once for every score; compute motion; keep the OCR frames for the OCR actors."""
    clip = _clip(row)
    if clip is None or not clip["kept"]:
        return row
    plan = plan_frames(clip["num_frames"], clip["fps"], config)
    if not plan.indices:
        return row
    try:
        frames = decode_frames(Path(output_dir) / clip["path"], plan.all_indices, plan.max_side)
    except VideoError as error:  # the clip file we wrote cannot be read back: reject it, say why
        clip["kept"] = False
        clip["reject_reasons"].append({"filter": "decode", "value": None, "threshold": None, "error": str(error)})
        return {**row, "clip": json.dumps(clip, ensure_ascii=False)}
    if config.motion.enabled:
        score = motion_score([frames[i] for i in plan.indices["motion"]], config.motion)
        clip.update(motion_score=score, motion_bucket_id=motion_bucket_id(score, config.motion))
        _filter_early(clip, "motion", config)
    later = {f"ocr_{n}": frames[i] for n, i in enumerate(plan.indices.get("ocr", []))}
    return {**row, "clip": json.dumps(clip, ensure_ascii=False), "frames": _pack(later) if later else b""}


class OcrStage:
    """Actor: CRAFT loaded once; text_area_ratio for a batch of clips."""

    def __init__(self, config: CurationConfig):
        self.config = config
        self.detector = TextDetector(config.ocr)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        clips = [_clip({"clip": text}) for text in batch["clip"]]
        todo = [i for i, clip in enumerate(clips) if clip is not None and clip["kept"] and len(batch["frames"][i])]
        if todo:
            frames = [_ocr_frames(_unpack(batch["frames"][i])) for i in todo]
            for i, ratio in zip(todo, self.detector(frames), strict=True):
                clips[i]["text_area_ratio"] = ratio
                _filter_early(clips[i], "ocr", self.config)
        batch["clip"] = np.array([json.dumps(c, ensure_ascii=False) if c else "" for c in clips], dtype=object)
        batch["frames"] = np.array([b""] * len(clips), dtype=object)  # used: do not carry them further
        return batch


def stage_row(source: str, clips_in_source: int, clip: dict | None = None, error: str = "", counts=None) -> dict:
    return {
        "source": source,
        "clips_in_source": clips_in_source,
        "clip": json.dumps(clip, ensure_ascii=False) if clip else "",
        "error": error,
        "counts": json.dumps(counts or {}),
        "frames": b"",
    }


def _clip(row: dict) -> dict | None:
    return json.loads(row["clip"]) if row["clip"] else None


def _filter_early(clip: dict, stage: str, config: CurationConfig) -> None:
    """Apply the absolute rules of the scores checked after `stage`; relative ones wait for the whole run."""
    rules = rules_for(filter_rules(config.filter), scores_checked_after(stage, config.filter))
    reasons = [reason.to_dict() for reason in reject_reasons(clip, rules)]
    if reasons:
        clip["kept"] = False
        clip["reject_reasons"] += reasons


def _ocr_frames(frames: dict[str, np.ndarray]) -> list[np.ndarray]:
    names = sorted((name for name in frames if name.startswith("ocr_")), key=lambda name: int(name[4:]))
    return [frames[name] for name in names]


def _pack(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _unpack(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data)) as archive:
        return {name: archive[name] for name in archive.files}
