"""The output phase of `svd curate`: relative thresholds, the filter, the shards and clips.parquet, by tasks.

After the stages, every finished input has its rows in OUT/.work/ (`journal.py`). The inputs are cut into
groups of consecutive inputs holding about `output.group_clips` clip rows (`plan_groups`). Each pass is one
task per group, on Ray (or in a loop in this process), and the driver keeps only what the tasks return:
histograms of 65536 counts, a shard count per group, counts. It never holds the rows or the clips.

1. Relative thresholds (`find_thresholds`). "Drop the bottom 25% of motion" needs the score's exact order
   statistic over the whole run. It is found by a radix select on each score's order-preserving 64-bit key:
   a round's tasks count the next 16 bits of the keys that carry the prefix found so far, and once the
   chosen bin holds at most `COLLECT_VALUES` keys, the tasks send those keys themselves. Exact (the same value
   as `filtering.relative_threshold` over all rows), in at most four rounds, usually two.
2. Shard plan (`count_group_shards`): each task filters its rows with the calibrated rules and counts the
   shards its kept clips fill; the driver numbers the shards from the counts.
3. Write (`write_group`): each task writes its shards (shard-NNNNNN.tar, numbered from its first), its part
   of clips.parquet (clips.parquet/part-NNNNNN.parquet) and of thumbnails.parquet (the JPEGs the split tasks
   saved, for the report's contact sheets), and returns its counts.

Every file depends only on the inputs (in order), their rows and the config, so a resumed run ends
byte-identical to an uninterrupted one; each is written under a temporary name and moved into place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.config import CurationConfig
from curation.filtering import Rule, filter_rules, judge
from curation.record import ROW_SCHEMA, Column, rows_table, shard_record
from pipelines.journal import THUMBNAIL, RunJournal
from pipelines.layout import CLIPS_TABLE, SHARDS_FOLDER, THUMBNAILS_TABLE
from pipelines.shards import ShardWriter, clear_shards, count_shards, sample_json, sample_size
from pipelines.storage import Folder

PART_PATTERN = "part-{index:06d}.parquet"
THUMBNAILS_SCHEMA = pa.schema([(Column.KEY.value, pa.string()), (THUMBNAIL, pa.binary())])
DIGIT_BITS = 16
COLLECT_VALUES = 1 << 16  # a bin this small is sent as its keys, not counted again
_SIGN = np.uint64(1 << 63)


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


# -- 1. relative thresholds -------------------------------------------------------------------------------------


def float_keys(values: np.ndarray) -> np.ndarray:
    """float64 values as uint64 keys in the same order (sign bit flipped for positives, all bits for negatives)."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
    return np.where(bits & _SIGN, ~bits, bits | _SIGN)


def key_value(key: int) -> float:
    """The float64 of a `float_keys` key."""
    key = np.uint64(key)
    bits = key ^ _SIGN if key & _SIGN else ~key
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])


@dataclass(frozen=True)
class KeyQuery:
    """One score's question in a round: the keys whose top `known` bits are `prefix`; counted by their next
    digit, or sent (`collect`). `sample` limits the values to the run's first ones: (rank, n) = every value of
    the inputs before rank, the first n of that input, none after (`filter.calibration_clips`)."""

    prefix: int
    known: int
    collect: bool
    sample: tuple[int, int] | None = None


def score_keys(values: pa.ChunkedArray, ranks: np.ndarray, sample: tuple[int, int] | None) -> np.ndarray:
    """The keys of the finite values of one score, rows of the inputs of run positions `ranks`, within the
    calibration sample."""
    scored = ~values.is_null().to_numpy(zero_copy_only=False)
    if sample is not None:
        last, count = sample
        at_last = scored & (ranks == last)
        scored &= (ranks < last) | (at_last & (np.cumsum(at_last) <= count))
    numbers = pc.fill_null(values, np.nan).to_numpy(zero_copy_only=False).astype(np.float64)[scored]
    return float_keys(numbers[np.isfinite(numbers)])


def answer_queries(output_dir: str, group: Group, queries: dict[str, KeyQuery]) -> dict[str, np.ndarray]:
    """Task: each score's digit counts (or keys, `collect`) over the group's rows."""
    table, ranks = group_table(output_dir, group, list(queries))
    answers = {}
    for score, query in queries.items():
        keys = score_keys(table[score], ranks, query.sample)
        if query.known:
            keys = keys[(keys >> np.uint64(64 - query.known)) == np.uint64(query.prefix)]
        if query.collect:
            answers[score] = np.sort(keys)
        else:
            digits = (keys >> np.uint64(64 - query.known - DIGIT_BITS)) & np.uint64((1 << DIGIT_BITS) - 1)
            answers[score] = np.bincount(digits.astype(np.int64), minlength=1 << DIGIT_BITS)
    return answers


def scored_counts(output_dir: str, group: Group, scores: list[str]) -> tuple[int, dict[str, list[int]]]:
    """Task: per input of the group, how many rows have each score (not None): where the sample ends."""
    table, ranks = group_table(output_dir, group, scores)
    position = np.searchsorted(np.array(group.ranks), ranks)
    counts = {}
    for score in scores:
        scored = ~table[score].is_null().to_numpy(zero_copy_only=False)
        counts[score] = np.bincount(position[scored], minlength=len(group.ranks)).tolist()
    return group.index, counts


def group_table(output_dir: str, group: Group, columns: list[str] | None = None) -> tuple[pa.Table, np.ndarray]:
    """The group's rows (`columns` of them, default all, thumbnails included) in run order, and the run position
    of each row's input."""
    journal = RunJournal(Folder(output_dir))
    table, position = journal.rows([journal.load(source) for source in group.sources], columns)
    return table, np.array(group.ranks, np.int64)[position]


def calibration_samples(
    groups: list[Group], counts: Iterable[tuple[int, dict[str, list[int]]]], scores: list[str], limit: int
) -> dict[str, tuple[int, int] | None]:
    """Where each score's first `limit` values end, from `scored_counts` per group: (rank, n), or None when the
    run has no more than `limit` of them."""
    by_rank: dict[str, dict[int, int]] = {score: {} for score in scores}
    for index, group_counts in counts:
        for score in scores:
            by_rank[score].update(zip(groups[index].ranks, group_counts[score], strict=True))
    samples: dict[str, tuple[int, int] | None] = {}
    for score in scores:
        left, samples[score] = limit, None
        for rank in sorted(by_rank[score]):
            if by_rank[score][rank] >= left:
                samples[score] = (rank, left)
                break
            left -= by_rank[score][rank]
    return samples


def find_thresholds(
    rules: list[Rule],
    ask: Callable[[dict[str, KeyQuery]], Iterable[dict[str, np.ndarray]]],
    samples: dict[str, tuple[int, int] | None] | None = None,
) -> list[Rule]:
    """The rules with each relative one's threshold set, exactly as `filtering.calibrate` sets it over all rows
    (or over the sample `samples` names, see `KeyQuery`).

    `ask(queries)` runs `answer_queries` on every group and yields each group's answers, in any order.
    """
    relative = {rule.score.value: rule for rule in rules if rule.relative}  # FilterConfig: one per score
    queries = {score: KeyQuery(0, 0, False, (samples or {}).get(score)) for score in relative}
    ranks: dict[str, int] = {}  # where the wanted key is among the keys that carry the query's prefix
    totals: dict[str, int] = {}
    found: dict[str, float | None] = {}
    while queries:
        merged: dict[str, np.ndarray] = {}
        for answers in ask(queries):
            for score, answer in answers.items():
                if score not in merged:
                    merged[score] = answer
                elif queries[score].collect:
                    merged[score] = np.concatenate([merged[score], answer])
                else:
                    merged[score] = merged[score] + answer
        asked, queries = queries, {}
        for score, query in asked.items():
            answer = merged.get(score, np.zeros(1 << DIGIT_BITS, np.int64))  # no group asked: no values
            if query.collect:
                found[score] = key_value(np.sort(answer)[ranks[score]])
                continue
            if query.known == 0:  # the first round counts every value: the wanted rank follows
                totals[score] = int(answer.sum())
                if totals[score] == 0:
                    found[score] = None
                    continue
                rule = relative[score]
                dropped = math.floor(rule.fraction * totals[score])
                ranks[score] = dropped if rule.keep == "min" else totals[score] - 1 - dropped
            cumulative = np.cumsum(answer)
            digit = int(np.searchsorted(cumulative, ranks[score], side="right"))
            ranks[score] -= int(cumulative[digit - 1]) if digit else 0
            prefix, known = (query.prefix << DIGIT_BITS) | digit, query.known + DIGIT_BITS
            if known == 64:
                found[score] = key_value(prefix)
            else:
                queries[score] = KeyQuery(prefix, known, int(answer[digit]) <= COLLECT_VALUES, query.sample)
    return [
        replace(rule, threshold=found[rule.score.value], pool=totals.get(rule.score.value, 0))
        if rule.relative
        else rule
        for rule in rules
    ]


# -- 2. and 3. shards and clips.parquet --------------------------------------------------------------------------


def judged_rows(output_dir: str, group: Group, rules: list[Rule], columns: list[str] | None = None) -> list[dict]:
    """The group's rows (`columns` of them, default all, thumbnails included), in run order, with every rule
    applied."""
    rows = group_table(output_dir, group, columns)[0].to_pylist()
    for row in rows:
        judge(row, rules)
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
    write_part(output, THUMBNAILS_TABLE, group.index, pa.table(thumbnails, schema=THUMBNAILS_SCHEMA))
    return GroupOutcome(group.index, counts, frames_by_reason, written)


def write_part(output: Folder, table_name: str, index: int, table: pa.Table) -> None:
    """One part of a table of OUT (a folder of Parquet files, one per group, read in name order)."""
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
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
    """The saved thumbnails of `keys` (those it has), reading one part of thumbnails.parquet at a time."""
    found: dict[str, bytes] = {}
    if not keys or not output.is_folder(THUMBNAILS_TABLE):
        return found
    wanted = pa.array(sorted(keys), pa.string())
    for name in output.list(THUMBNAILS_TABLE, "part-*.parquet"):
        part = pq.read_table(pa.BufferReader(output.read_bytes(f"{THUMBNAILS_TABLE}/{name}")))
        part = part.filter(pc.is_in(part[Column.KEY.value], value_set=wanted))
        found.update(zip(part[Column.KEY.value].to_pylist(), part[THUMBNAIL].to_pylist(), strict=True))
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


# `run(function, argument tuples)` runs `function(*arguments)` once per tuple, as tasks, and yields the results
# in any order: on Ray (`pipelines.curate`) or in a loop.
Run = Callable[[Callable, list[tuple]], Iterator]


def calibrated_rules(output_dir: str, config: CurationConfig, groups: list[Group], run: Run) -> list[Rule]:
    """The run's rules with their relative thresholds, from passes of tasks over the groups' score columns."""
    rules = filter_rules(config.filter)
    scores = sorted({rule.score.value for rule in rules if rule.relative})
    if not scores or not groups:
        return find_thresholds(rules, lambda queries: iter(()))
    samples = None
    limit = config.filter.calibration_clips
    if limit is not None:
        counted = run(scored_counts, [(output_dir, group, scores) for group in groups])
        samples = calibration_samples(groups, counted, scores, limit)
    return find_thresholds(
        rules, lambda queries: run(answer_queries, [(output_dir, group, queries) for group in groups]), samples
    )


def write_grouped_outputs(
    output: Folder, config: CurationConfig, groups: list[Group], run: Run
) -> tuple[list[Rule], list[GroupOutcome]]:
    """Passes 1 to 3 over the groups: the calibrated rules, and each group's outcome in group order. The shards
    and clips.parquet of an earlier run (or attempt) are removed first."""
    clear_shards(output, SHARDS_FOLDER)
    output.remove(CLIPS_TABLE)
    output.remove(THUMBNAILS_TABLE)
    location = output.location
    rules = calibrated_rules(location, config, groups, run)
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


def run_here(function: Callable, arguments: list[tuple]) -> Iterator:
    """`Run` in this process, one task after another."""
    for task_arguments in arguments:
        yield function(*task_arguments)
