"""The curation stages as Ray Data wants them: functions and callable classes over rows.

Every row has the same columns, whatever happened to its clip, so Ray's blocks always share one schema:
  source           the input video
  clips_in_source  how many clip rows this input has (0: a row that only says why there is none)
  clip             the clip's record, scores and filter state, as JSON text ("" when there is no clip)
  error            why the input failed ("" when it did not)
  counts           split counts, as JSON text (on the first row of an input only)
  frames           the frames later stages need, as .npz bytes (b"" once the last one used them)
  embeddings       the clip's CLIP frame embeddings, as .npz bytes, from the CLIP stage to the caption match
  node             the Ray node that split the input (kept in the run's journal, not in the outputs)
The work itself is done by `curation/` (split_video, motion_score, TextDetector, OpenClipScorer, the
captioners, filtering): these
wrappers only move data between rows and those functions, and apply the early filters.

Model modules (open_clip, transformers, easyocr) are imported in the actor that uses them, not here: every
Ray worker imports this module, and a split or motion worker would spend seconds importing models it never
runs (measured in BENCHMARKS.md, "Curation job").
"""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import ray

from curation.captions.text import Caption, ClipCaptions
from curation.config import CurationConfig
from curation.filtering import ClipScores, filter_rules, reject_reasons, rules_for, scores_checked_after
from curation.frame_sampling import FramePlan, middle_frame_index, plan_frames, uniform_frame_indices
from curation.scores.motion import motion_bucket_id, motion_score
from curation.split.runner import split_video
from curation.video_io import VideoError, decode_frames
from pipelines.storage import Folder, local_source, without_credentials

log = logging.getLogger(__name__)

CLIPS_FOLDER = "clips"  # in OUT: the clip files, named KEY.mp4


def split_stage(row: dict, output_dir: str, config: CurationConfig) -> list[dict]:
    """One source in, one row per clip out (or one row saying why there is none)."""
    source, output = row["source"], Folder(output_dir)
    try:
        # Remote sources are copied here first; a remote OUT gets the clip files once all are written.
        with local_source(source) as local, output.staged(CLIPS_FOLDER) as clips_dir:
            result = split_video(local, clips_dir, clips_dir.parent, config.split)
    except VideoError as error:
        log.warning("%s: %s", without_credentials(source), error)
        return [stage_row(source, 0, error=str(error))]
    except OSError as error:  # a source that cannot be read, or an OUT that cannot be written
        log.warning("%s: %s", without_credentials(source), error)
        return [stage_row(source, 0, error=f"{type(error).__name__}: {error}")]
    except Exception as error:  # a bug or an input FFmpeg chokes on in a new way: this input fails, the job goes on
        log.exception("%s: splitting failed", without_credentials(source))
        return [stage_row(source, 0, error=f"splitting failed: {type(error).__name__}: {error}")]
    # Every score and caption column exists from the start (None: not computed), so a stage switched off
    # leaves it empty.
    empty = {**ClipScores().to_dict(), **ClipCaptions().to_record(config.caption, "")}
    clips = [
        {**clip.to_dict(), "source": without_credentials(source), **empty, "kept": True, "reject_reasons": []}
        for clip in result.clips
    ]
    if not clips:
        return [stage_row(source, 0, counts=result.counts)]
    return [
        stage_row(source, len(clips), clip=clip, counts=result.counts if index == 0 else {})
        for index, clip in enumerate(clips)
    ]


def motion_stage(row: dict, output_dir: str, config: CurationConfig) -> dict:
    """Decode the clip once for every later stage; compute motion; pack the other stages' frames."""
    clip = _clip(row)
    if clip is None or not clip["kept"]:
        return row
    plan = frame_plan(clip["num_frames"], clip["fps"], config)
    if not plan.indices:
        return row
    try:
        with Folder(output_dir).local_file(clip["path"]) as path:
            frames = decode_frames(path, plan.all_indices, plan.max_side)
    except (VideoError, OSError) as error:  # the clip file we wrote cannot be read back: reject it, say why
        clip["kept"] = False
        clip["reject_reasons"].append({"filter": "decode", "value": None, "threshold": None, "error": str(error)})
        return {**row, "clip": json.dumps(clip, ensure_ascii=False)}
    if config.motion.enabled:
        score = motion_score([frames[i] for i in plan.indices["motion"]], config.motion)
        clip.update(motion_score=score, motion_bucket_id=motion_bucket_id(score, config.motion))
        _filter_early(clip, "motion", config)
    later = {
        f"{stage}_{n}": frames[index]
        for stage, indices in plan.indices.items()
        if stage != "motion"
        for n, index in enumerate(indices)
    }
    return {**row, "clip": json.dumps(clip, ensure_ascii=False), "frames": _pack(later) if later else b""}


def frame_plan(num_frames: int, fps: float, config: CurationConfig) -> FramePlan:
    """The score stages' frames (`plan_frames`) plus the captioners': CoCa's middle frame, VideoBLIP's N."""
    plan = plan_frames(num_frames, fps, config)
    indices, sides = dict(plan.indices), [plan.max_side] if plan.max_side else []
    caption = config.caption
    if caption.enabled and caption.coca.enabled:
        indices["coca"] = [middle_frame_index(num_frames)]
        sides.append(caption.coca.max_side)
    if caption.enabled and caption.vblip.enabled:
        indices["vblip"] = uniform_frame_indices(num_frames, caption.vblip.num_frames)
        sides.append(caption.vblip.max_side)
    return FramePlan(indices, max(sides) if sides else None)


class OcrStage:
    """Actor: CRAFT loaded once; text_area_ratio for a batch of clips."""

    def __init__(self, config: CurationConfig):
        from curation.scores.ocr import TextDetector  # see "Model modules" above

        self.config = config
        self.detector = TextDetector(config.ocr)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        clips, frames = _open_batch(batch)
        todo = _waiting(clips, frames, "ocr")
        if todo:
            for i, ratio in zip(todo, self.detector([_frames_of(frames[i], "ocr") for i in todo]), strict=True):
                clips[i]["text_area_ratio"] = ratio
                _filter_early(clips[i], "ocr", self.config)
        return _close_batch(batch, clips)


class ClipImageStage:
    """Actor: open_clip (and the aesthetic MLP) loaded once; aesthetic score and frame embeddings."""

    def __init__(self, config: CurationConfig):
        from curation.scores.openclip import OpenClipScorer  # see "Model modules" above

        self.config = config
        self.scorer = OpenClipScorer(config.clip)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        clips, frames = _open_batch(batch)
        embeddings = list(batch["embeddings"])
        todo = _waiting(clips, frames, "clip")
        if todo:
            results = self.scorer.image_scores([_frames_of(frames[i], "clip") for i in todo])
            for i, result in zip(todo, results, strict=True):
                clips[i]["aesthetic_score"] = result.aesthetic_score
                embeddings[i] = _pack({"embeddings": result.embeddings})  # until the caption exists
                _filter_early(clips[i], "clip", self.config)
        batch["embeddings"] = np.array(embeddings, dtype=object)
        return _close_batch(batch, clips)


class CocaStage:
    """Actor: CoCa loaded once; a caption of each clip's middle frame."""

    def __init__(self, config: CurationConfig):
        from curation.captions.coca import CocaCaptioner  # see "Model modules" above

        self.captioner = CocaCaptioner.load(config.caption.coca)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        clips, frames = _open_batch(batch)
        todo = _waiting(clips, frames, "coca")
        if todo:
            captions = self.captioner([_frames_of(frames[i], "coca")[0] for i in todo])
            for i, caption in zip(todo, captions, strict=True):
                clips[i].update(caption_coca=caption.text, caption_coca_status=caption.status)
        return _close_batch(batch, clips)


class VBlipStage:
    """Actor: VideoBLIP loaded once; a caption of each clip from its uniformly sampled frames."""

    def __init__(self, config: CurationConfig):
        from curation.captions.vblip import VBlipCaptioner  # see "Model modules" above

        self.captioner = VBlipCaptioner.load(config.caption.vblip)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        clips, frames = _open_batch(batch)
        todo = _waiting(clips, frames, "vblip")
        if todo:
            captions = self.captioner([_frames_of(frames[i], "vblip") for i in todo])
            for i, caption in zip(todo, captions, strict=True):
                clips[i].update(caption_vblip=caption.text, caption_vblip_status=caption.status)
        return _close_batch(batch, clips)


class LlmStage:
    """Actor (or a client of an HTTP endpoint): merges the two captions; then picks the shipped one."""

    def __init__(self, config: CurationConfig):
        from curation.captions.llm import load_llm  # see "Model modules" above

        self.config = config
        self.merger = load_llm(config.caption.llm) if config.caption.llm.enabled else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        clips, _ = _open_batch(batch)
        todo = [i for i, clip in enumerate(clips) if clip is not None and clip["kept"]]
        merged = {}
        if todo and self.merger is not None:
            replies = self.merger([clips[i]["caption_coca"] for i in todo], [clips[i]["caption_vblip"] for i in todo])
            merged = dict(zip(todo, replies, strict=True))
        for i in todo:
            captions = ClipCaptions(_caption(clips[i], "coca"), _caption(clips[i], "vblip"), merged.get(i))
            clips[i].update(captions.to_record(self.config.caption, clips[i]["key"]))
        return _close_batch(batch, clips)


class ClipTextStage:
    """Actor: the same open_clip model; cosine similarity of each clip's frames and its shipped caption."""

    def __init__(self, config: CurationConfig):
        from curation.scores.openclip import OpenClipScorer  # see "Model modules" above

        self.config = config
        self.scorer = OpenClipScorer(config.clip)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        clips, _ = _open_batch(batch)
        todo = [i for i, clip in enumerate(clips) if clip is not None and clip["kept"] and batch["embeddings"][i]]
        if todo:
            embeddings = [_unpack(batch["embeddings"][i])["embeddings"] for i in todo]
            scores = self.scorer.clip_scores(embeddings, [clips[i].get("caption") for i in todo])
            for i, score in zip(todo, scores, strict=True):
                clips[i]["clip_score"] = score
                _filter_early(clips[i], "clip_score", self.config)
        batch["embeddings"] = np.array([b""] * len(clips), dtype=object)
        return _close_batch(batch, clips)


def stage_row(source: str, clips_in_source: int, clip: dict | None = None, error: str = "", counts=None) -> dict:
    return {
        "source": source,
        "clips_in_source": clips_in_source,
        "clip": json.dumps(clip, ensure_ascii=False) if clip else "",
        "error": error,
        "counts": json.dumps(counts or {}),
        "frames": b"",
        "embeddings": b"",
        "node": ray.get_runtime_context().get_node_id(),
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


def _open_batch(batch: dict[str, np.ndarray]) -> tuple[list[dict | None], list[bytes]]:
    return [_clip({"clip": text}) for text in batch["clip"]], list(batch["frames"])


def _close_batch(batch: dict[str, np.ndarray], clips: list[dict | None]) -> dict[str, np.ndarray]:
    batch["clip"] = np.array([json.dumps(c, ensure_ascii=False) if c else "" for c in clips], dtype=object)
    return batch


def _waiting(clips: list[dict | None], frames: list[bytes], stage: str) -> list[int]:
    """Positions of the kept clips that carry frames for `stage`."""
    return [
        i
        for i, clip in enumerate(clips)
        if clip is not None and clip["kept"] and len(frames[i]) and _has_frames(frames[i], stage)
    ]


def _has_frames(data: bytes, stage: str) -> bool:
    with np.load(io.BytesIO(data)) as archive:
        return f"{stage}_0" in archive.files


def _frames_of(data: bytes, stage: str) -> list[np.ndarray]:
    """Only `stage`'s frames: an .npz reads each array on access, so the other stages' frames stay packed."""
    with np.load(io.BytesIO(data)) as archive:
        names = [name for name in archive.files if name.rsplit("_", 1)[0] == stage]
        return [archive[name] for name in sorted(names, key=lambda name: int(name.rsplit("_", 1)[1]))]


def _caption(clip: dict, source: str) -> Caption | None:
    status = clip.get(f"caption_{source}_status")
    return Caption(clip.get(f"caption_{source}"), status) if status is not None else None


def _pack(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _unpack(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data)) as archive:
        return {name: archive[name] for name in archive.files}
