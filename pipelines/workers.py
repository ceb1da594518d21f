"""The curation stages as Ray Data runs them: functions over rows and callable classes over batches.

Nothing here calls Ray: a worker is a plain function or class (Ray's batch-inference pattern), so the
benchmarks and tests run them in a plain loop, and `pipelines/curate.py` hands them to Ray Data.
Which stage runs when, on which frames and with which resources is `curation/stages.py`; each worker
names its stage (`WORKERS`).

Every row has the same fields, whatever happened to its clip, so Ray's blocks always share one schema:
  source           the input video
  clips_in_source  how many clip rows this input has (0: a row that only says why there is none)
  clip             the clip's record (`curation/record.py`), as JSON text ("" when there is no clip)
  error            why the input failed ("" when it did not)
  counts           split counts, as JSON text (on the first row of an input only)
  fates            where every frame of the input went (`curation/split/fates.py`), as JSON text (first row only)
  frames           the frames later stages need, as .npz bytes (b"" once the last one used them)
  embeddings       the clip's CLIP frame embeddings, as .npz bytes, from the aesthetics stage to the caption match
  thumbnail        the clip's middle frame as a small JPEG, made by the split task for the report (b"": none)
  node             the Ray node that split the input (set by the job; kept in the run's journal)
The work itself is done by `curation/` (split_video, motion_score, TextDetector, OpenClipScorer, the
captioners, filtering): these workers only move data between rows and those functions, and apply the early
filters.

Model modules (open_clip, transformers, easyocr) are imported in the worker that uses them, not here: every
Ray worker imports this module, and a split or motion worker would spend seconds importing models it never
runs (measured in BENCHMARKS.md, "Curation job").
"""

from __future__ import annotations

import importlib
import io
import json
import logging
from dataclasses import replace
from pathlib import Path

import av
import numpy as np

from curation.captions.text import ClipCaptions
from curation.config import CurationConfig
from curation.dedup import perceptual
from curation.filtering import filter_rules, reject_reasons, rules_for, scores_checked_after
from curation.record import (
    CAPTION_STATUS,
    CAPTION_TEXT,
    ClipRecord,
    Column,
    Stage,
    decode_failure,
    embedding_text,
    new_row,
)
from curation.scores.motion import motion_bucket_id, motion_score
from curation.split.runner import split_video
from curation.stages import frame_plan
from curation.thumbnail import middle_frame_jpeg
from curation.tiny_models import resolve_tiny
from curation.video_io import VideoError, decode_frames
from pipelines.journal import write_fragment
from pipelines.layout import CLIPS_FOLDER
from pipelines.storage import Folder, local_source, without_credentials

log = logging.getLogger(__name__)

# The fields of a filed row (`file_rows`), what comes back to the driver: the clip itself stays in its fragment.
RESULT_FIELDS = ("source", "clips_in_source", "fragment", "error", "counts", "fates", "node")


def split_stage(row: dict, output_dir: str, config: CurationConfig) -> list[dict]:
    """One source in, one row per clip out (or one row saying why there is none)."""
    source, output = row["source"], Folder(output_dir)
    try:
        # Remote sources are copied here first; a remote OUT gets the clip files once all are written.
        with local_source(source) as local, output.staged(CLIPS_FOLDER) as clips_dir:
            result = split_video(local, clips_dir, clips_dir.parent, config.split, without_credentials(source))
            width = config.report.thumbnail_width
            thumbnails = [_thumbnail(clips_dir.parent / clip.path, clip, width) for clip in result.clips]
    except VideoError as error:
        log.warning("%s: %s", without_credentials(source), error)
        return [stage_row(source, 0, error=str(error))]
    except OSError as error:  # a source that cannot be read, or an OUT that cannot be written
        log.warning("%s: %s", without_credentials(source), error)
        return [stage_row(source, 0, error=f"{type(error).__name__}: {error}")]
    except Exception as error:  # a bug or an input FFmpeg chokes on in a new way: this input fails, the job goes on
        log.exception("%s: splitting failed", without_credentials(source))
        return [stage_row(source, 0, error=f"splitting failed: {type(error).__name__}: {error}")]
    clips = [new_row(clip, source=without_credentials(source)) for clip in result.clips]
    if not clips:
        return [stage_row(source, 0, counts=result.counts, fates=result.fates)]
    rows = [
        stage_row(source, len(clips), clip=clip, counts=result.counts, fates=result.fates)
        if index == 0
        else stage_row(source, len(clips), clip=clip)
        for index, clip in enumerate(clips)
    ]
    for row, thumbnail in zip(rows, thumbnails, strict=True):
        row["thumbnail"] = thumbnail
    return rows


def _thumbnail(path: Path, clip: ClipRecord, width: int) -> bytes:
    """The clip's thumbnail for the report, made while its file is at hand (b"", with a warning, if it gives none)."""
    try:
        return middle_frame_jpeg(path, clip.num_frames, width)
    except (av.error.FFmpegError, OSError, ValueError) as error:
        log.warning("%s: no thumbnail: %s", clip.key, error)
        return b""


def motion_stage(row: dict, output_dir: str, config: CurationConfig) -> dict:
    """Decode the clip once for every later stage; compute motion and the perceptual hashes; pack the other
    stages' frames."""
    clip = _clip(row)
    if clip is None or not clip[Column.KEPT]:
        return row
    plan = frame_plan(clip[Column.NUM_FRAMES], clip[Column.FPS], config)
    if not plan.indices:
        return row
    try:
        with Folder(output_dir).local_file(clip[Column.PATH]) as path:
            frames = decode_frames(path, plan.all_indices, plan.max_side)
    except (VideoError, OSError) as error:  # the clip file we wrote cannot be read back: reject it, say why
        clip[Column.KEPT] = False
        clip[Column.REJECT_REASONS].append(decode_failure(str(error)))
        return {**row, "clip": _dump(clip)}
    if Stage.MOTION in plan.indices:
        score = motion_score([frames[i] for i in plan.indices[Stage.MOTION]], config.motion)
        clip.update({Column.MOTION_SCORE: score, Column.MOTION_BUCKET_ID: motion_bucket_id(score, config.motion)})
        _filter_early(clip, Stage.MOTION, config)
    if Stage.DEDUP in plan.indices and clip[Column.KEPT]:
        signature = perceptual.clip_signature([frames[i] for i in plan.indices[Stage.DEDUP]])
        clip[Column.PERCEPTUAL_HASH] = perceptual.to_text(signature)
    later = {
        f"{stage}_{n}": frames[index]
        for stage, indices in plan.indices.items()
        if stage not in (Stage.MOTION, Stage.DEDUP)
        for n, index in enumerate(indices)
    }
    return {**row, "clip": _dump(clip), "frames": _pack(later) if later else b""}


class OcrStage:
    """Actor: CRAFT loaded once; text_area_ratio for a batch of clips."""

    stage = Stage.OCR

    def __init__(self, config: CurationConfig):
        from curation.scores.ocr import TextDetector  # see "Model modules" above

        self.config = config
        self.detector = TextDetector(config.ocr)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        clips, frames = _open_batch(batch)
        todo = _waiting(clips, frames, self.stage)
        ratios = self.detector([_frames_of(frames[i], self.stage) for i in todo]) if todo else []
        _set_score(clips, todo, Column.TEXT_AREA_RATIO, ratios, self.stage, self.config)
        return _close_batch(batch, clips)


class OpenClipStage:
    """Actor base: the CLIP model (open_clip, with the aesthetic MLP) loaded once."""

    def __init__(self, config: CurationConfig):
        from curation.scores.openclip import OpenClipScorer  # see "Model modules" above

        self.config = config
        self.scorer = OpenClipScorer(resolve_tiny(config).clip)


class AestheticsStage(OpenClipStage):
    """Actor: aesthetic score and frame embeddings of each clip (and, for `dedup.semantic`, their mean)."""

    stage = Stage.AESTHETICS

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        clips, frames = _open_batch(batch)
        todo = _waiting(clips, frames, self.stage)
        results = self.scorer.image_scores([_frames_of(frames[i], self.stage) for i in todo]) if todo else []
        embeddings = list(batch["embeddings"])
        semantic = self.config.dedup.enabled and self.config.dedup.semantic.enabled
        for i, result in zip(todo, results, strict=True):
            embeddings[i] = _pack({"embeddings": result.embeddings})  # until the caption exists
            if semantic:
                mean = result.embeddings.mean(axis=0)
                clips[i][Column.CLIP_EMBEDDING] = embedding_text(mean / max(float(np.linalg.norm(mean)), 1e-12))
        batch["embeddings"] = np.array(embeddings, dtype=object)
        scores = [result.aesthetic_score for result in results]
        _set_score(clips, todo, Column.AESTHETIC_SCORE, scores, self.stage, self.config)
        return _close_batch(batch, clips)


class CaptionerStage:
    """Actor: a captioner loaded once; one caption of each clip from the frames its stage reads.

    A subclass names its stage, which is also the captioner's config section (`caption.<stage>`) and its
    name in the record (`CAPTION_TEXT`, `CAPTION_STATUS`), and where its captioner class lives: imported
    here, in the actor (see "Model modules" above).
    """

    stage: Stage
    captioner_class: tuple[str, str]  # (module, class)
    one_frame: bool  # the captioner takes one frame per clip, not a list of them

    def __init__(self, config: CurationConfig):
        module, name = self.captioner_class
        captioner = getattr(importlib.import_module(module), name)
        self.captioner = captioner.load(getattr(resolve_tiny(config).caption, self.stage))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        clips, frames = _open_batch(batch)
        todo = _waiting(clips, frames, self.stage)
        inputs = [_frames_of(frames[i], self.stage) for i in todo]
        captions = self.captioner([clip[0] for clip in inputs] if self.one_frame else inputs) if todo else []
        for i, caption in zip(todo, captions, strict=True):
            clips[i][CAPTION_TEXT[self.stage]] = caption.text
            clips[i][CAPTION_STATUS[self.stage]] = caption.status
        return _close_batch(batch, clips)


class CocaStage(CaptionerStage):
    """Actor: CoCa on each clip's middle frame."""

    stage = Stage.COCA
    captioner_class = ("curation.captions.coca", "CocaCaptioner")
    one_frame = True


class VBlipStage(CaptionerStage):
    """Actor: VideoBLIP on each clip's uniformly sampled frames."""

    stage = Stage.VBLIP
    captioner_class = ("curation.captions.vblip", "VBlipCaptioner")
    one_frame = False


class CaptionStage:
    """Actor (or a client of an HTTP endpoint): the LLM merges the two captions; then the shipped one is picked."""

    stage = Stage.CAPTION

    def __init__(self, config: CurationConfig):
        from curation.captions.llm import load_llm  # see "Model modules" above

        self.config = config
        self.merger = load_llm(resolve_tiny(config).caption.llm) if config.caption.llm.enabled else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        clips, _ = _open_batch(batch)
        todo = _kept(clips)
        merged = {}
        if todo and self.merger is not None:
            replies = self.merger(
                [clips[i][Column.CAPTION_COCA] for i in todo], [clips[i][Column.CAPTION_VBLIP] for i in todo]
            )
            merged = dict(zip(todo, replies, strict=True))
        for i in todo:
            captions = replace(ClipCaptions.from_record(clips[i]), llm=merged.get(i))
            clips[i].update(captions.to_record(self.config.caption, clips[i][Column.KEY]))
        return _close_batch(batch, clips)


class CaptionMatchStage(OpenClipStage):
    """Actor: cosine similarity of each clip's frame embeddings and its shipped caption."""

    stage = Stage.CAPTION_MATCH

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        clips, _ = _open_batch(batch)
        todo = [i for i in _kept(clips) if batch["embeddings"][i]]
        embeddings = [_unpack(batch["embeddings"][i])["embeddings"] for i in todo]
        captions = [clips[i].get(Column.CAPTION) for i in todo]
        scores = self.scorer.clip_scores(embeddings, captions) if todo else []
        _set_score(clips, todo, Column.CLIP_SCORE, scores, self.stage, self.config)
        batch["embeddings"] = np.array([b""] * len(clips), dtype=object)
        return _close_batch(batch, clips)


# The worker of each stage, by its name in `curation.stages.STAGES`.
WORKERS = {
    Stage.SPLIT: split_stage,
    Stage.MOTION: motion_stage,
    **{
        worker.stage: worker
        for worker in (OcrStage, AestheticsStage, CocaStage, VBlipStage, CaptionStage, CaptionMatchStage)
    },
}


def file_rows(batch: dict[str, np.ndarray], output_dir: str) -> dict[str, np.ndarray]:
    """After the last stage: the batch's clip records filed as one fragment under OUT/.work/ (`journal.py`);
    each row comes back with the fragment's name in place of its record, and without frames or embeddings."""
    clips = [_clip({"clip": text}) for text in batch["clip"]]
    present = [i for i, clip in enumerate(clips) if clip is not None]
    thumbnails = [bytes(batch["thumbnail"][i]) for i in present]
    fragment = write_fragment(Folder(output_dir), [clips[i] for i in present], thumbnails) if present else ""
    filed = {name: batch[name] for name in RESULT_FIELDS if name in batch}
    filed["fragment"] = np.array([fragment if clip is not None else "" for clip in clips], dtype=object)
    return filed


def stage_row(
    source: str, clips_in_source: int, clip: dict | None = None, error: str = "", counts=None, fates=None
) -> dict:
    return {
        "source": source,
        "clips_in_source": clips_in_source,
        "clip": _dump(clip) if clip else "",
        "error": error,
        "counts": json.dumps(counts or {}),
        "fates": json.dumps(fates or []),
        "frames": b"",
        "embeddings": b"",
        "thumbnail": b"",
        "node": "",
    }


def _clip(row: dict) -> dict | None:
    return json.loads(row["clip"]) if row["clip"] else None


def _dump(clip: dict) -> str:
    return json.dumps(clip, ensure_ascii=False)


def _filter_early(clip: dict, stage: Stage, config: CurationConfig) -> None:
    """Apply the absolute rules of the scores checked after `stage`; relative ones wait for the whole run."""
    rules = rules_for(filter_rules(config.filter), scores_checked_after(stage, config.filter))
    reasons = [reason.to_dict() for reason in reject_reasons(clip, rules)]
    if reasons:
        clip[Column.KEPT] = False
        clip[Column.REJECT_REASONS] += reasons


def _set_score(clips: list[dict | None], todo: list[int], column: Column, values, stage: Stage, config) -> None:
    """Store each clip's value of `column`, then apply the early filter of `stage`."""
    for i, value in zip(todo, values, strict=True):
        clips[i][column] = value
        _filter_early(clips[i], stage, config)


def _kept(clips: list[dict | None]) -> list[int]:
    return [i for i, clip in enumerate(clips) if clip is not None and clip[Column.KEPT]]


def _open_batch(batch: dict[str, np.ndarray]) -> tuple[list[dict | None], list[bytes]]:
    return [_clip({"clip": text}) for text in batch["clip"]], list(batch["frames"])


def _close_batch(batch: dict[str, np.ndarray], clips: list[dict | None]) -> dict[str, np.ndarray]:
    batch["clip"] = np.array([_dump(c) if c else "" for c in clips], dtype=object)
    return batch


def _waiting(clips: list[dict | None], frames: list[bytes], stage: Stage) -> list[int]:
    """Positions of the kept clips that carry frames for `stage`."""
    return [i for i in _kept(clips) if len(frames[i]) and _has_frames(frames[i], stage)]


def _has_frames(data: bytes, stage: Stage) -> bool:
    with np.load(io.BytesIO(data)) as archive:
        return f"{stage}_0" in archive.files


def _frames_of(data: bytes, stage: Stage) -> list[np.ndarray]:
    """Only `stage`'s frames: an .npz reads each array on access, so the other stages' frames stay packed."""
    with np.load(io.BytesIO(data)) as archive:
        names = [name for name in archive.files if name.rsplit("_", 1)[0] == stage]
        return [archive[name] for name in sorted(names, key=lambda name: int(name.rsplit("_", 1)[1]))]


def _pack(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _unpack(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data)) as archive:
        return {name: archive[name] for name in archive.files}
