"""The output phase of `svd curate`: relative thresholds, the filter, the shards and clips.parquet, by tasks.

After the stages, every finished input has its rows in OUT/.work/ (`journal.py`). The inputs are cut into
groups of consecutive inputs holding about `output.group_clips` clip rows (`plan_groups`). Each pass is one
task per group, on Ray (or in a loop in this process), and the driver keeps only what the tasks return:
counts per digit, a shard count per group, counts. It never holds the rows or the clips.

1. Relative thresholds (`calibrated_rules`): "drop the bottom 25% of motion" needs the score's exact order
   statistic over the whole run, found by rounds of tasks over the groups' score columns (`selection.py`).
   Then the copies among the clips the filter keeps (`dedup.py`, one task, `dedup.perceptual`): each group's
   verdicts, which the passes below apply as they filter.
2. Shard plan (`count_group_shards`): each task filters its rows with the calibrated rules and counts the
   shards its kept clips fill; the driver numbers the shards from the counts.
3. Write (`write_group`): each task writes its shards (shard-NNNNNN.tar, numbered from its first), its part
   of clips.parquet (clips.parquet/part-NNNNNN.parquet) and of thumbnails.parquet (the JPEGs the split tasks
   saved, for the report's contact sheets), and returns its counts.

Every file depends only on the inputs (in order), their rows and the config, so a resumed run ends
byte-identical to an uninterrupted one; each is written under a temporary name and moved into place.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.config import CurationConfig
from curation.filtering import Rule, filter_rules, judge
from curation.record import ROW_SCHEMA, Column, rows_table, shard_record
from pipelines import selection
from pipelines.dedup import VERDICTS_FOLDER, find_duplicates, read_verdicts
from pipelines.journal import THUMBNAIL, RunJournal
from pipelines.layout import CLIPS_TABLE, SHARDS_FOLDER, THUMBNAILS_TABLE
from pipelines.selection import Run
from pipelines.shards import ShardWriter, clear_shards, count_shards, sample_json, sample_size
from pipelines.storage import Folder

PART_PATTERN = "part-{index:06d}.parquet"
THUMBNAILS_SCHEMA = pa.schema([(Column.KEY.value, pa.string()), (THUMBNAIL, pa.binary())])
# Rows per row group of thumbnails.parquet: the report reads only the groups that hold the clips it shows.
THUMBNAIL_ROW_GROUP = 256


@dataclass(frozen=True)
class Group:
    """Consecutive inputs whose rows one task reads; `ranks` are the inputs' positions in the run."""

    index: int
    sources: tuple[str, ...]
    ranks: tuple[int, ...]


@dataclass(frozen=True)
class GroupOutcome:
    """What a group's write task reports: its counts (kept, rejected, by reason, frames) and shard names."""

    index: int
    counts: dict[str, int]
    frames_by_reason: dict[str, int]
    shards: list[str]
    node: str = ""  # the Ray node whose task wrote them (set by `pipelines.curate.run_on_ray`)


def plan_groups(clips_per_input: list[tuple[str, int]], group_clips: int) -> list[Group]:
    """Cut the inputs, in run order, into groups of at least `group_clips` clip rows (the last may hold fewer).
    Inputs without clips join no group."""
    groups: list[Group] = []
    sources: list[str] = []
    ranks: list[int] = []
    held = 0
    for rank, (source, clips) in enumerate(clips_per_input):
        if clips == 0:
            continue
        sources.append(source)
        ranks.append(rank)
        held += clips
        if held >= group_clips:
            groups.append(Group(len(groups), tuple(sources), tuple(ranks)))
            sources, ranks, held = [], [], 0
    if sources:
        groups.append(Group(len(groups), tuple(sources), tuple(ranks)))
    return groups


def group_table(output_dir: str, group: Group, columns: list[str] | None = None) -> tuple[pa.Table, np.ndarray]:
    """The group's rows (`columns` of them, default all, thumbnails included) in run order, and the run position
    of each row's input."""
    journal = RunJournal(Folder(output_dir))
    table, position = journal.rows([journal.load(source) for source in group.sources], columns)
    return table, np.array(group.ranks, np.int64)[position]


# -- 2. and 3. shards and clips.parquet --------------------------------------------------------------------------


def judged_rows(output_dir: str, group: Group, rules: list[Rule], columns: list[str] | None = None) -> list[dict]:
    """The group's rows (`columns` of them, default all, thumbnails included), in run order, with every rule
    applied, and a kept clip that is a copy of another (`dedup.py`'s verdicts) rejected as its duplicate."""
    rows = group_table(output_dir, group, columns)[0].to_pylist()
    copies = read_verdicts(Folder(output_dir), group.index)
    for row in rows:
        judge(row, rules)
        if row[Column.KEPT] and row[Column.KEY] in copies:
            row[Column.KEPT] = False
            row[Column.REJECT_REASONS].append(copies[row[Column.KEY]])
    return rows


def count_group_shards(output_dir: str, group: Group, rules: list[Rule], config: CurationConfig) -> tuple[int, int]:
    """Task: how many shards the group's kept clips fill (their files' sizes, as the writer counts them)."""
    output = Folder(output_dir)
    sizes = [
        sample_size(output.size(row[Column.PATH]), sample_json(shard_record(row)), row.get(Column.CAPTION) or "")
        for row in judged_rows(output_dir, group, rules, ROW_SCHEMA.names)
        if row[Column.KEPT]
    ]
    return group.index, count_shards(sizes, config.output.shard_max_samples, config.output.shard_max_bytes)


def write_group(
    output_dir: str, group: Group, rules: list[Rule], config: CurationConfig, first_shard: int, shards: int
) -> GroupOutcome:
    """Task: the group's shards (numbered from `first_shard`) and its part of clips.parquet; its counts."""
    output = Folder(output_dir)
    writer = ShardWriter(
        output, SHARDS_FOLDER, config.output.shard_max_samples, config.output.shard_max_bytes, first_shard
    )
    rows, thumbnails = [], {Column.KEY.value: [], THUMBNAIL: []}
    counts = {"kept": 0, "rejected": 0, "frames_in_kept_clips": 0}
    frames_by_reason: dict[str, int] = {}
    for row in judged_rows(output_dir, group, rules):
        jpeg = row.pop(THUMBNAIL, None)
        if jpeg:
            thumbnails[Column.KEY.value].append(row[Column.KEY])
            thumbnails[THUMBNAIL].append(jpeg)
        rows.append(row)
        if row[Column.KEPT]:
            video = output.read_bytes(row[Column.PATH])
            writer.write(row[Column.KEY], video, shard_record(row), row.get(Column.CAPTION) or "")
            counts["kept"] += 1
            counts["frames_in_kept_clips"] += row[Column.NUM_FRAMES]
            continue
        counts["rejected"] += 1
        for reason in row[Column.REJECT_REASONS]:
            name = f"rejected_by_{reason['filter']}"
            counts[name] = counts.get(name, 0) + 1
        first = row[Column.REJECT_REASONS][0]["filter"]
        frames_by_reason[first] = frames_by_reason.get(first, 0) + row[Column.NUM_FRAMES]
    written = writer.close()
    if len(written) != shards:
        raise RuntimeError(
            f"output group {group.index} filled {len(written)} shards where {shards} were planned: "
            f"clip files under {output.url()} changed during the run"
        )
    write_part(output, CLIPS_TABLE, group.index, rows_table(rows))
    thumbnails_table = pa.table(thumbnails, schema=THUMBNAILS_SCHEMA)
    write_part(output, THUMBNAILS_TABLE, group.index, thumbnails_table, THUMBNAIL_ROW_GROUP)
    return GroupOutcome(group.index, counts, frames_by_reason, written)


def write_part(output: Folder, table_name: str, index: int, table: pa.Table, row_group: int | None = None) -> None:
    """One part of a table of OUT (a folder of Parquet files, one per group, read in name order), in row groups of
    `row_group` rows (default: Parquet's)."""
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer, row_group_size=row_group)
    output.write_bytes(f"{table_name}/{PART_PATTERN.format(index=index)}", buffer.getvalue().to_pybytes())


def remove_clip_files(output_dir: str, group: Group, keep: str) -> tuple[int, int]:
    """Task, once the run is complete: remove the group's clip files that `output.clip_files` (`keep`) does not
    keep; a kept clip lives on in its shard. Returns (group index, files removed)."""
    if keep == "all":
        return group.index, 0
    output = Folder(output_dir)
    part = f"{CLIPS_TABLE}/{PART_PATTERN.format(index=group.index)}"
    columns = [Column.PATH.value, Column.KEPT.value]
    table = pq.read_table(pa.BufferReader(output.read_bytes(part)), columns=columns)
    removed = 0
    for path, kept in zip(table[Column.PATH.value].to_pylist(), table[Column.KEPT.value].to_pylist(), strict=True):
        if kept or keep == "none":
            output.remove(path)
            removed += 1
    return group.index, removed


def read_thumbnails(output: Folder, keys: set[str]) -> dict[str, bytes]:
    """The saved thumbnails of `keys` (those it has): each part's keys are read, then only the row groups that hold
    a wanted one, a group at a time."""
    found: dict[str, bytes] = {}
    if not keys or not output.is_folder(THUMBNAILS_TABLE):
        return found
    wanted = pa.array(sorted(keys), pa.string())
    for name in output.list(THUMBNAILS_TABLE, "part-*.parquet"):
        with output.open(f"{THUMBNAILS_TABLE}/{name}") as file:
            part = pq.ParquetFile(file)
            rows = np.flatnonzero(pc.is_in(part.read(columns=[Column.KEY.value])[0], value_set=wanted).to_numpy())
            starts = np.cumsum([0] + [part.metadata.row_group(i).num_rows for i in range(part.num_row_groups)])
            for group in np.unique(np.searchsorted(starts, rows, side="right") - 1):
                chosen = part.read_row_group(int(group))
                chosen = chosen.filter(pc.is_in(chosen[Column.KEY.value], value_set=wanted))
                found.update(zip(chosen[Column.KEY.value].to_pylist(), chosen[THUMBNAIL].to_pylist(), strict=True))
    return found


def read_clips_table(output: Folder, columns: list[str] | None = None) -> pa.Table:
    """clips.parquet as one table, in run order: its parts, or the single file a run before parts wrote."""
    if not output.is_folder(CLIPS_TABLE):
        return pq.read_table(pa.BufferReader(output.read_bytes(CLIPS_TABLE)), columns=columns)
    parts = [
        pq.read_table(pa.BufferReader(output.read_bytes(f"{CLIPS_TABLE}/{name}")), columns=columns)
        for name in output.list(CLIPS_TABLE, "part-*.parquet")
    ]
    return pa.concat_tables(parts) if parts else rows_table([]).select(columns or rows_table([]).column_names)


def first_shards(groups: list[Group], shard_counts: dict[int, int]) -> list[int]:
    """Each group's first shard number: the shards of the groups before it, in order."""
    starts, total = [], 0
    for group in groups:
        starts.append(total)
        total += shard_counts[group.index]
    return starts


def calibrated_rules(output_dir: str, config: CurationConfig, groups: list[Group], run: Run) -> list[Rule]:
    """The run's rules with their relative thresholds, from passes of tasks over the groups' score columns."""
    read = functools.partial(group_table, output_dir)
    return selection.calibrated_rules(filter_rules(config.filter), config.filter.calibration_clips, read, groups, run)


def write_grouped_outputs(
    output: Folder, config: CurationConfig, groups: list[Group], run: Run
) -> tuple[list[Rule], list[GroupOutcome]]:
    """Passes 1 to 3 over the groups, with the copies found between 1 and 2 (`dedup.py`, one task): the calibrated
    rules, and each group's outcome in group order. The shards, clips.parquet and verdicts of an earlier run (or
    attempt) are removed first."""
    clear_shards(output, SHARDS_FOLDER)
    output.remove(CLIPS_TABLE)
    output.remove(THUMBNAILS_TABLE)
    output.remove(VERDICTS_FOLDER)
    location = output.location
    rules = calibrated_rules(location, config, groups, run)
    if groups and config.dedup.enabled and (config.dedup.perceptual.enabled or config.dedup.semantic.enabled):
        read = functools.partial(group_table, location)
        list(run(find_duplicates, [(location, read, groups, rules, config)]))
    shard_counts = dict(run(count_group_shards, [(location, group, rules, config) for group in groups]))
    starts = first_shards(groups, shard_counts)
    jobs = [
        (location, group, rules, config, start, shard_counts[group.index])
        for group, start in zip(groups, starts, strict=True)
    ]
    outcomes = sorted(run(write_group, jobs), key=lambda outcome: outcome.index)
    if not groups:  # a run without clips still has readable, typed tables
        write_part(output, CLIPS_TABLE, 0, rows_table([]))
        write_part(output, THUMBNAILS_TABLE, 0, THUMBNAILS_SCHEMA.empty_table())
    return rules, outcomes
