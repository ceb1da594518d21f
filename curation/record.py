"""The clip record: every column of a clip's row, which stage fills it, and what its shard JSON holds.

One row per clip flows through the job, is a row of `clips.parquet` and, projected by `shard_record`, the
`KEY.json` of a shard. This module is the one place a column is named: stages, the filter, the report, the
shard writer and the trainer's reader all take the names from `Column`, so adding a column means editing
this file (and the stage that fills it).

A `Column` is a `str` (its name), so `row[Column.MOTION_SCORE]` works on rows read back from JSON or
Parquet; it also carries the Python type of its values (None aside), the stage that fills it and whether it
goes into the shard. Declaration order is the row's column order.
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass
from enum import StrEnum

import numpy as np
import pyarrow as pa


class Stage(StrEnum):
    """The stages that fill a clip's columns, in pipeline order (`curation/stages.py` declares each)."""

    SPLIT = "split"  # the clip itself: where it is in its source and how it was written
    MOTION = "motion"  # Farneback flow; its task also decodes every later stage's frames
    DEDUP = "dedup"  # perceptual hashes of the clip's frames, made in the motion task; copies found over the run
    OCR = "ocr"  # CRAFT text area
    AESTHETICS = "aesthetics"  # the CLIP model's image embeddings and the aesthetic MLP on them
    COCA = "coca"  # caption of the middle frame
    VBLIP = "vblip"  # caption of the whole clip
    CAPTION = "caption"  # the LLM merge, then the caption the clip ships with
    CAPTION_MATCH = "caption_match"  # the CLIP model's similarity of the frames and the shipped caption
    FILTER = "filter"  # kept or not, and why


class Column(StrEnum):
    """A column of the clip record: its name, the type of its values (or None), its stage, in the shard or not."""

    def __new__(cls, name: str, kind: type, stage: Stage, in_shard: bool = True):
        column = str.__new__(cls, name)
        column._value_ = name
        column.kind = kind
        column.stage = stage
        column.in_shard = in_shard
        return column

    KEY = "key", str, Stage.SPLIT  # unique in every output; also the shard sample's name
    SOURCE = "source", str, Stage.SPLIT  # the input video (credentials removed)
    CLIP_INDEX = "clip_index", int, Stage.SPLIT
    START_FRAME = "start_frame", int, Stage.SPLIT  # source frames [start_frame, end_frame): the frames written
    END_FRAME = "end_frame", int, Stage.SPLIT
    START_TIME = "start_time", float, Stage.SPLIT  # seconds on the source's timeline
    END_TIME = "end_time", float, Stage.SPLIT
    FPS = "fps", float, Stage.SPLIT
    NUM_FRAMES = "num_frames", int, Stage.SPLIT
    WIDTH = "width", int, Stage.SPLIT  # as displayed
    HEIGHT = "height", int, Stage.SPLIT
    CODEC = "codec", str, Stage.SPLIT  # of the written clip
    ROTATION = "rotation", int, Stage.SPLIT  # display rotation kept from the source
    TRANSITION_BEFORE = "transition_before", str, Stage.SPLIT  # what bounds the clip: start, cut, fade, gradual, chunk
    TRANSITION_AFTER = "transition_after", str, Stage.SPLIT  # ...: end, cut, fade, gradual, chunk
    SCENE_START_FRAME = "scene_start_frame", int, Stage.SPLIT  # the clean shot the clip came from
    SCENE_END_FRAME = "scene_end_frame", int, Stage.SPLIT
    WRITTEN_BY = (
        "written_by",
        str,
        Stage.SPLIT,
    )  # copy (from a keyframe), smart (head re-encoded, rest copied), reencode
    PATH = "path", str, Stage.SPLIT, False  # of the clip file, relative to OUT (the shard holds the bytes)
    NOTE = "note", str, Stage.SPLIT  # e.g. that the source was truncated and only its readable part was used
    MOTION_SCORE = "motion_score", float, Stage.MOTION
    MOTION_BUCKET_ID = "motion_bucket_id", int, Stage.MOTION  # SVD's micro-conditioning, from motion_score
    PERCEPTUAL_HASH = "perceptual_hash", str, Stage.DEDUP, False  # 16 hex digits a sampled frame, space-separated
    TEXT_AREA_RATIO = "text_area_ratio", float, Stage.OCR
    AESTHETIC_SCORE = "aesthetic_score", float, Stage.AESTHETICS
    # dedup.semantic: the normalised mean of the frames' CLIP embeddings, float16, base64 (`embedding_text`)
    CLIP_EMBEDDING = "clip_embedding", str, Stage.AESTHETICS, False
    CLIP_SCORE = "clip_score", float, Stage.CAPTION_MATCH
    CAPTION_COCA = "caption_coca", str, Stage.COCA
    CAPTION_COCA_STATUS = "caption_coca_status", str, Stage.COCA  # ok, empty, no_input (captions.text)
    CAPTION_VBLIP = "caption_vblip", str, Stage.VBLIP
    CAPTION_VBLIP_STATUS = "caption_vblip_status", str, Stage.VBLIP
    CAPTION_LLM = "caption_llm", str, Stage.CAPTION
    CAPTION_LLM_STATUS = "caption_llm_status", str, Stage.CAPTION
    CAPTION = "caption", str, Stage.CAPTION  # the one the clip ships with, in its .txt
    CAPTION_SOURCE = "caption_source", str, Stage.CAPTION  # which captioner it came from
    KEPT = "kept", bool, Stage.FILTER, False
    REJECT_REASONS = "reject_reasons", list, Stage.FILTER, False  # one dict per failed filter

    @classmethod
    def of(cls, stage: Stage) -> tuple[Column, ...]:
        """The columns `stage` fills, in row order."""
        return tuple(column for column in cls if column.stage == stage)


# The scores a filter can read, in pipeline order.
SCORES = (Column.MOTION_SCORE, Column.TEXT_AREA_RATIO, Column.AESTHETIC_SCORE, Column.CLIP_SCORE)
# Each captioner's caption and status columns (`captions.text.Source` names the captioners).
CAPTION_TEXT = {"coca": Column.CAPTION_COCA, "vblip": Column.CAPTION_VBLIP, "llm": Column.CAPTION_LLM}
CAPTION_STATUS = {
    "coca": Column.CAPTION_COCA_STATUS,
    "vblip": Column.CAPTION_VBLIP_STATUS,
    "llm": Column.CAPTION_LLM_STATUS,
}
# The reject reason of a clip whose file could not be read back, and of a copy of a kept clip (`dedup`); every
# other reason names a filter rule.
DECODE_FAILED = "decode"
DUPLICATE = "duplicate"

# A reject reason as Parquet stores it: a filter rule's (`filtering.Reason`), `decode_failure`'s with its error, or
# `duplicate_of`'s with the clip that stays and how alike they are.
REASON_TYPE = pa.struct(
    [
        ("filter", pa.string()),
        ("value", pa.float64()),
        ("threshold", pa.float64()),
        ("error", pa.string()),
        ("of", pa.string()),
        ("similarity", pa.float64()),
    ]
)
_ARROW_TYPES = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_(), list: pa.list_(REASON_TYPE)}
# The schema of clips.parquet and of every part of it, whatever a part's rows hold (a column no row filled is
# still typed), so that the parts read as one dataset.
ROW_SCHEMA = pa.schema([pa.field(column.value, _ARROW_TYPES[column.kind]) for column in Column])


def rows_table(rows: list[dict]) -> pa.Table:
    """Clip rows as an Arrow table of `ROW_SCHEMA`."""
    return pa.Table.from_pylist(rows, schema=ROW_SCHEMA)


@dataclass(frozen=True)
class ClipRecord:
    """What splitting knows of a clip: the `Stage.SPLIT` columns, typed (`new_row` checks they match)."""

    key: str
    source: str
    clip_index: int
    start_frame: int
    end_frame: int
    start_time: float
    end_time: float
    fps: float
    num_frames: int
    width: int
    height: int
    codec: str
    rotation: int
    transition_before: str
    transition_after: str
    scene_start_frame: int
    scene_end_frame: int
    written_by: str
    path: str
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def new_row(clip: ClipRecord, **split_columns) -> dict:
    """A clip's first row: its split columns (`split_columns` override the record's), every later column
    None (not computed: a stage switched off leaves it so), kept, and no reject reason yet."""
    split = {**clip.to_dict(), **split_columns}
    if set(split) != set(Column.of(Stage.SPLIT)):
        raise ValueError(f"split columns {sorted(split)} differ from the record's {sorted(Column.of(Stage.SPLIT))}")
    row = {column.value: split.get(column) for column in Column}
    row[Column.KEPT.value], row[Column.REJECT_REASONS.value] = True, []
    return row


def shard_record(row: dict) -> dict:
    """The clip's `KEY.json` in a shard: every column that is `in_shard` (not its path or filter state)."""
    return {column.value: row.get(column) for column in Column if column.in_shard}


def embedding_text(embedding: np.ndarray) -> str:
    """A clip embedding as its row holds it: float16, base64."""
    return base64.b64encode(np.asarray(embedding, np.float16).tobytes()).decode("ascii")


def embedding_of(text: str | None) -> np.ndarray | None:
    """The float32 embedding a row holds (None: none was computed)."""
    return None if not text else np.frombuffer(base64.b64decode(text), np.float16).astype(np.float32)


def decode_failure(error: str) -> dict:
    """The reject reason of a clip file that cannot be read back."""
    return {"filter": DECODE_FAILED, "value": None, "threshold": None, "error": error}


def duplicate_of(key: str, similarity: float) -> dict:
    """The reject reason of a copy of the kept clip `key` (`dedup`), `similarity` how alike (1.0: the same)."""
    return {"filter": DUPLICATE, "of": key, "similarity": similarity}
