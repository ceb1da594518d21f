"""The output phase's tasks (`pipelines/outputs.py`) against the whole-run computations they replace."""

from __future__ import annotations

import functools
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.config import CurationConfig, FilterConfig
from curation.filtering import calibrate, filter_rules, relative_threshold
from curation.record import Column
from pipelines import outputs, selection
from pipelines.journal import InputResult, RunJournal, write_fragment
from pipelines.layout import THUMBNAILS_TABLE
from pipelines.outputs import calibrated_rules, plan_groups
from pipelines.selection import run_here
from pipelines.shards import ShardWriter, count_shards, sample_json, sample_size
from pipelines.storage import Folder

SCORED = (Column.MOTION_SCORE, Column.TEXT_AREA_RATIO, Column.AESTHETIC_SCORE)


def scores_of_inputs(seed: int, inputs: int) -> list[list[dict]]:
    """Rows of `inputs` inputs with scores as a run has them: ties, negatives, NaN, missing (None), one empty input."""
    rng = np.random.default_rng(seed)
    runs = []
    for n in range(inputs):
        count = 0 if n == 1 else int(rng.integers(1, 4000))
        rows = []
        for index in range(count):
            motion = float(rng.choice([rng.normal(2, 3), 0.5, -0.0, 0.0]))  # ties and both zeros
            text = float(rng.random()) if rng.random() > 0.05 else None
            aesthetic = float(rng.normal(5, 1)) if rng.random() > 0.01 else float("nan")
            rows.append(
                {
                    Column.KEY.value: f"in{n}_{index}",
                    Column.CLIP_INDEX.value: index,
                    Column.MOTION_SCORE.value: motion,
                    Column.TEXT_AREA_RATIO.value: text,
                    Column.AESTHETIC_SCORE.value: aesthetic,
                    Column.REJECT_REASONS.value: [],
                }
            )
        runs.append(rows)
    return runs


def journal_of(tmp_path, runs: list[list[dict]]) -> tuple[Folder, list[tuple[str, int]]]:
    """The runs filed as the stages file them: fragments of 700 rows in arrival order (rows of several inputs in
    one, an input over several, its rows out of clip order), then an entry per input."""
    output = Folder(str(tmp_path / "out"))
    sources = [f"/videos/{n}.mp4" for n in range(len(runs))]
    arrived = [
        {**row, Column.SOURCE.value: source} for source, rows in zip(sources, runs, strict=True) for row in rows[::-1]
    ]
    fragments: dict[str, set[str]] = {source: set() for source in sources}
    for start in range(0, len(arrived), 700):
        chunk = arrived[start : start + 700]
        name = write_fragment(output, chunk)
        for row in chunk:
            fragments[row[Column.SOURCE.value]].add(name)
    journal = RunJournal(output)
    for source, rows in zip(sources, runs, strict=True):
        journal.record(InputResult(source, clips=len(rows), fragments=sorted(fragments[source])))
    return output, [(source, len(rows)) for source, rows in zip(sources, runs, strict=True)]


def test_an_input_reads_back_its_rows_in_clip_order(tmp_path):
    runs = scores_of_inputs(0, 3)
    output, inputs = journal_of(tmp_path, runs)
    journal = RunJournal(output)
    for (source, _), rows in zip(inputs, runs, strict=True):
        table, position = journal.rows([journal.load(source)], [Column.KEY.value, Column.MOTION_SCORE.value])
        assert table.column_names == [Column.KEY.value, Column.MOTION_SCORE.value]
        assert table.column(Column.KEY.value).to_pylist() == [row[Column.KEY] for row in rows]
        assert position.tolist() == [0] * len(rows)
    # Several inputs at once, asked for out of run order: in the order asked, each in clip order.
    asked = [journal.load(inputs[2][0]), journal.load(inputs[0][0])]
    table, position = journal.rows(asked, [Column.KEY.value])
    assert table.column(Column.KEY.value).to_pylist() == [row[Column.KEY] for row in runs[2] + runs[0]]
    assert position.tolist() == [0] * len(runs[2]) + [1] * len(runs[0])


@pytest.mark.parametrize("collect_values", [selection.COLLECT_VALUES, 0], ids=["default", "every-digit"])
@pytest.mark.parametrize("calibration_clips", [None, 5000])
def test_relative_thresholds_equal_those_over_all_rows(tmp_path, monkeypatch, collect_values, calibration_clips):
    monkeypatch.setattr(selection, "COLLECT_VALUES", collect_values)  # 0: the radix select runs all four rounds
    runs = scores_of_inputs(0, 7)
    output, inputs = journal_of(tmp_path, runs)
    config = FilterConfig(
        drop_bottom_motion=0.25,
        drop_top_text_area=0.1,
        drop_bottom_aesthetic=0.5,
        max_text_area=None,
        drop_bottom_clip_score=None,
        calibration_clips=calibration_clips,
    )
    every = [row for rows in runs for row in rows]  # the whole run in input order, as apply_filter sees it
    scores = {}
    for column in SCORED:
        values = [row[column] for row in every if row[column] is not None]
        scores[column] = values[:calibration_clips]
    expected = calibrate(filter_rules(config), scores)
    groups = plan_groups(inputs, group_clips=3000)
    assert len(groups) >= 3  # the passes really merge several tasks' answers
    found = calibrated_rules(output.location, CurationConfig(filter=config), groups, run_here)
    assert [(rule.name, rule.threshold, rule.pool) for rule in found] == [
        (rule.name, rule.threshold, rule.pool) for rule in expected
    ]
    assert all(rule.threshold is not None for rule in found)


@pytest.mark.parametrize("collect_values", [selection.COLLECT_VALUES, 0], ids=["default", "every-digit"])
def test_many_order_statistics_at_once_equal_relative_threshold(tmp_path, monkeypatch, collect_values):
    """The report asks for many statistics of one score together (other shares, both ends of its range, over all
    values and over a sample): each is what `relative_threshold` finds over the same values."""
    monkeypatch.setattr(selection, "COLLECT_VALUES", collect_values)
    runs = scores_of_inputs(2, 5)
    output, inputs = journal_of(tmp_path, runs)
    groups = plan_groups(inputs, group_clips=2500)
    read = functools.partial(outputs.group_table, output.location)
    score = Column.MOTION_SCORE.value
    every = [row[score] for rows in runs for row in rows]
    counts = selection.find_scored_counts(read, groups, run_here, [score])
    sample = selection.sample_end(counts[score], 1234)
    assert sample is not None
    wanted = [
        selection.OrderStatistic(score, fraction, keep, where)
        for fraction in (0.0, 0.1, 0.25, 0.5, 0.999)
        for keep in ("min", "max")
        for where in (None, sample)
    ]
    found = selection.find_order_statistics(wanted, read, groups, run_here)
    for stat in wanted:
        values = every[:1234] if stat.sample else every
        finite = [value for value in values if math.isfinite(value)]
        assert found[stat] == selection.Found(relative_threshold(finite, stat.fraction, stat.keep), len(finite))
    assert found[wanted[0]].value == min(every) and found[wanted[2]].value == max(every)


def test_groups_are_consecutive_inputs_of_at_least_group_clips_and_skip_empty_ones():
    inputs = [("a", 3), ("b", 0), ("c", 2), ("d", 5), ("e", 1)]
    groups = plan_groups(inputs, group_clips=4)
    assert [(group.index, group.sources, group.ranks) for group in groups] == [
        (0, ("a", "c"), (0, 2)),
        (1, ("d",), (3,)),
        (2, ("e",), (4,)),
    ]
    assert plan_groups([("a", 0)], 4) == []


def test_the_shard_count_is_what_the_writer_fills(tmp_path):
    rng = np.random.default_rng(1)
    sizes = [int(size) for size in rng.integers(1, 40_000, 200)]
    writer = ShardWriter(Folder(str(tmp_path)), "shards", max_samples=17, max_bytes=300_000, first_index=5)
    for n, size in enumerate(sizes):
        writer.write(f"k{n}", b"v" * size, {"n": n}, "")
    written = writer.close()
    expected = count_shards([sample_size(size, sample_json({"n": n}), "") for n, size in enumerate(sizes)], 17, 300_000)
    assert len(written) == expected > 200 // 17
    assert written[0] == "shard-000005.tar"


def test_thumbnails_are_read_by_row_group_for_the_clips_asked_for(tmp_path):
    output = Folder(str(tmp_path / "out"))
    for index in range(2):
        keys = [f"p{index}_{n:02d}" for n in range(20)]
        table = pa.table({"key": keys, "thumbnail": [key.encode() for key in keys]}, schema=outputs.THUMBNAILS_SCHEMA)
        outputs.write_part(output, THUMBNAILS_TABLE, index, table, row_group=3)
    assert pq.ParquetFile(tmp_path / "out" / THUMBNAILS_TABLE / "part-000001.parquet").num_row_groups == 7
    asked = {"p0_00", "p0_05", "p0_19", "p1_07", "p1_08", "nowhere"}
    assert outputs.read_thumbnails(output, asked) == {key: key.encode() for key in asked - {"nowhere"}}
    assert outputs.read_thumbnails(output, set()) == {}
