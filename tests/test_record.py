"""The clip record and the stage graph: one declaration, and a real run's rows and shards follow it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from tiny_curation import CPU_STAGES, TINY

from curation.config import CurationConfig
from curation.config_io import load_config
from curation.record import ClipRecord, Column, Stage, new_row, shard_record
from curation.stages import STAGES, cpus_needed, enabled_stages, later_work
from curation.synthetic import Shot, Transition, make_video
from pipelines.curate import run_curation
from pipelines.workers import WORKERS


def a_clip(**fields) -> ClipRecord:
    values = {field.name: f"{field.name}-value" for field in dataclasses.fields(ClipRecord)}
    return ClipRecord(**{**values, **fields})


def test_a_new_row_has_every_column_in_order_and_nothing_computed():
    row = new_row(a_clip(), source="s.mp4")
    assert list(row) == [column.value for column in Column]
    assert row[Column.SOURCE] == "s.mp4" and row[Column.KEY] == "key-value"
    later = [column for column in Column if column.stage not in (Stage.SPLIT, Stage.FILTER)]
    assert later and all(row[column] is None for column in later)
    assert row[Column.KEPT] is True and row[Column.REJECT_REASONS] == []
    with pytest.raises(ValueError, match="split columns"):
        new_row(a_clip(), colour="red")


def test_the_split_record_is_the_split_columns():
    assert [field.name for field in dataclasses.fields(ClipRecord)] == list(Column.of(Stage.SPLIT))


def test_the_shard_record_leaves_out_the_path_and_the_filter_state():
    record = shard_record(new_row(a_clip()))
    assert set(record) == {column.value for column in Column} - {
        "path",
        "kept",
        "reject_reasons",
        "perceptual_hash",
        "clip_embedding",
    }


def test_every_stage_has_a_worker_and_every_column_a_stage():
    assert [stage.name for stage in STAGES] == [stage for stage in Stage if stage != Stage.FILTER]
    # The perceptual hashes are made in the motion task: a stage without a worker of its own.
    assert set(WORKERS) == {stage.name for stage in STAGES if stage.pool or stage.task_cpus}
    assert {column.stage for column in Column} == set(Stage)


def test_the_graph_follows_the_config():
    config = CurationConfig()
    assert [stage.name for stage in enabled_stages(config)] == [stage.name for stage in STAGES]
    # ocr, clip (aesthetics and the caption match share its pool), coca, vblip, llm: 6 actors, 1 CPU each,
    # plus one split and one motion task.
    assert cpus_needed(config) == 8
    config.caption.enabled = False
    assert [stage.name for stage in enabled_stages(config)] == ["split", "motion", "dedup", "ocr", "aesthetics"]
    assert cpus_needed(config) == 4  # the perceptual hashes hold no CPU of their own: the motion task makes them
    skipped = later_work(config)
    assert skipped[Stage.MOTION] and skipped[Stage.OCR] and not skipped[Stage.AESTHETICS]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("record")
    timeline = [Shot("moving", 2.5, speed=2.0), Transition("cut"), Shot("pan", 2.5, speed=3.0)]
    return make_video(folder / "two shots.mp4", timeline, seed=3, keyframe_seconds=0.5).path


def test_a_real_run_follows_the_record_and_the_plain_loop_matches_ray(source, tmp_path):
    config = load_config(CurationConfig, TINY, [*CPU_STAGES, "filter.drop_bottom_motion=null"])
    here = run_curation([source], tmp_path / "here", config, use_ray=False)
    on_ray = run_curation([source], tmp_path / "ray", config)
    assert here.clips == on_ray.clips == 2

    rows = pq.read_table(tmp_path / "here" / "clips.parquet").to_pylist()
    assert rows == pq.read_table(tmp_path / "ray" / "clips.parquet").to_pylist()
    for row in rows:
        assert list(row) == [column.value for column in Column]
        for column in Column:
            assert row[column] is None or isinstance(row[column], column.kind), (column, row[column])
        # tiny.yaml without its model stages runs split, motion and OCR: their columns are filled, the model stages' stay empty.
        filled = {column.stage for column in Column if row[column] not in (None, "")}
        assert {Stage.SPLIT, Stage.MOTION, Stage.OCR, Stage.FILTER} <= filled
        assert not filled & {Stage.AESTHETICS, Stage.COCA, Stage.VBLIP, Stage.CAPTION_MATCH}

    by_key = {row[Column.KEY]: row for row in rows}
    for name in ("here", "ray"):
        shards = sorted(str(path) for path in (tmp_path / name / "shards").glob("*.tar"))
        samples = list(wds.WebDataset(shards, shardshuffle=False, empty_check=False))
        assert sorted(sample["__key__"] for sample in samples) == sorted(by_key)
        for sample in samples:
            assert json.loads(sample["json"]) == shard_record(by_key[sample["__key__"]])
    assert [path.read_bytes() for path in sorted((tmp_path / "here" / "shards").glob("*.tar"))] == [
        path.read_bytes() for path in sorted((tmp_path / "ray" / "shards").glob("*.tar"))
    ]
    # Without Ray, summary.json's `stages` has each stage worker's own count: a row per clip.
    stages = json.loads((tmp_path / "here" / "summary.json").read_text())["stages"]
    rows = {name: stage["rows_out"] for name, stage in stages.items()}
    assert rows == {"split": 2, "motion": 2, "ocr": 2, "file_rows": 2}
    assert {"preflight", "stages", "outputs", "shards", "report"} <= set(here.seconds)
    assert {"ray_start", "stages", "ray_stop"} <= set(on_ray.seconds)
