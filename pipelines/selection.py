"""Exact order statistics of a run's score columns, by rounds of tasks over its pieces: a radix select.

"Drop the bottom 25% of motion" needs the score's exact order statistic over the whole run, and the report asks
for more of them (its other thresholds, each score's range). The run is read in pieces (the output phase's
groups, the report's parts of clips.parquet), one task each; `read(piece, columns)` gives a piece's table and,
per row, the run position of its input (`Piece.ranks`). The driver keeps only what the tasks return.

Each wanted statistic is found on its score's order-preserving 64-bit key: a round's tasks count the next 16
bits of the keys that carry the prefix found so far, and once the chosen bin holds at most `COLLECT_VALUES`
keys, the tasks send those keys themselves. Exact (the value `filtering.relative_threshold` finds over all
rows), in at most four rounds, usually two; statistics that share a round's question are asked once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.filtering import Keep, Rule

DIGIT_BITS = 16
COLLECT_VALUES = 1 << 16  # a bin this small is sent as its keys, not counted again
_SIGN = np.uint64(1 << 63)

# `run(function, argument tuples)` runs `function(*arguments)` once per tuple, as tasks, and yields the results
# in any order: on Ray (`pipelines.curate.run_on_ray`) or in a loop (`run_here`).
Run = Callable[[Callable, list[tuple]], Iterator]


class Piece(Protocol):
    """What one task reads: `index` names it, `ranks` are the run positions of the inputs it holds, in order."""

    index: int
    ranks: tuple[int, ...]


# read(piece, columns) -> (the piece's rows with those columns, the run position of each row's input)
Read = Callable[[Piece, list[str]], tuple[pa.Table, np.ndarray]]
# Where a score's calibration sample ends: (rank, n) = every value of the inputs before rank, the first n of that
# input, none after; None: every value (`filter.calibration_clips`).
Sample = tuple[int, int] | None


def run_here(function: Callable, arguments: list[tuple]) -> Iterator:
    """`Run` in this process, one task after another."""
    for task_arguments in arguments:
        yield function(*task_arguments)


@dataclass(frozen=True)
class OrderStatistic:
    """`filtering.relative_threshold(values, fraction, keep)` over one score's finite values in `sample`."""

    score: str
    fraction: float
    keep: Keep
    sample: Sample = None


@dataclass(frozen=True)
class Found:
    """An order statistic's value (None: the score has no value) and how many values it was taken over."""

    value: float | None
    pool: int


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
    """One question of a round: the keys of `score` in `sample` whose top `known` bits are `prefix`; counted by
    their next digit, or sent (`collect`)."""

    score: str
    sample: Sample
    prefix: int
    known: int
    collect: bool


def score_keys(values: pa.ChunkedArray, ranks: np.ndarray, sample: Sample) -> np.ndarray:
    """The keys of the finite values of one score in `sample`; `ranks`: the run position of each row's input."""
    scored = ~values.is_null().to_numpy(zero_copy_only=False)
    if sample is not None:
        last, count = sample
        at_last = scored & (ranks == last)
        scored &= (ranks < last) | (at_last & (np.cumsum(at_last) <= count))
    numbers = pc.fill_null(values, np.nan).to_numpy(zero_copy_only=False).astype(np.float64)[scored]
    return float_keys(numbers[np.isfinite(numbers)])


def answer_queries(read: Read, piece: Piece, queries: list[KeyQuery]) -> list[np.ndarray]:
    """Task: each query's digit counts (or keys, `collect`) over the piece's rows, in the order asked. Counts come
    sparse, as the digits seen and their counts (2 rows): an answer is never larger than the piece's keys, however
    many statistics a round asks for."""
    table, ranks = read(piece, sorted({query.score for query in queries}))
    answers = []
    for query in queries:
        keys = score_keys(table[query.score], ranks, query.sample)
        if query.known:
            keys = keys[(keys >> np.uint64(64 - query.known)) == np.uint64(query.prefix)]
        if query.collect:
            answers.append(np.sort(keys))
        else:
            digits = (keys >> np.uint64(64 - query.known - DIGIT_BITS)) & np.uint64((1 << DIGIT_BITS) - 1)
            answers.append(np.stack(np.unique(digits.astype(np.int64), return_counts=True)))
    return answers


def scored_counts(read: Read, piece: Piece, scores: list[str]) -> tuple[Piece, dict[str, list[int]]]:
    """Task: per input of the piece, how many rows have each score (not None): where a sample ends."""
    table, ranks = read(piece, scores)
    position = np.searchsorted(np.array(piece.ranks), ranks)
    counts = {}
    for score in scores:
        scored = ~table[score].is_null().to_numpy(zero_copy_only=False)
        counts[score] = np.bincount(position[scored], minlength=len(piece.ranks)).tolist()
    return piece, counts


def find_scored_counts(read: Read, pieces: Sequence[Piece], run: Run, scores: list[str]) -> dict[str, dict[int, int]]:
    """Score -> run position of an input -> how many of its rows have the score, from one pass of tasks."""
    by_rank: dict[str, dict[int, int]] = {score: {} for score in scores}
    for piece, counts in run(scored_counts, [(read, piece, scores) for piece in pieces]):
        for score in scores:
            by_rank[score].update(zip(piece.ranks, counts[score], strict=True))
    return by_rank


def sample_end(scored_by_rank: dict[int, int], limit: int | None) -> Sample:
    """Where a score's first `limit` values end (see `Sample`); None when the run has no more than `limit`."""
    if limit is None:
        return None
    left = limit
    for rank in sorted(scored_by_rank):
        if scored_by_rank[rank] >= left:
            return rank, left
        left -= scored_by_rank[rank]
    return None


def find_order_statistics(
    wanted: Iterable[OrderStatistic], read: Read, pieces: Sequence[Piece], run: Run
) -> dict[OrderStatistic, Found]:
    """Every wanted statistic, exactly, from rounds of `answer_queries` tasks over `pieces`."""
    wanted = list(dict.fromkeys(wanted))
    asking = {stat: KeyQuery(stat.score, stat.sample, 0, 0, False) for stat in wanted}
    ranks: dict[OrderStatistic, int] = {}  # where the wanted key is among the keys that carry the query's prefix
    pools: dict[OrderStatistic, int] = {}
    found: dict[OrderStatistic, Found] = {}
    while asking:
        queries = list(dict.fromkeys(asking.values()))
        merged: dict[KeyQuery, np.ndarray] = {}
        if pieces:
            for answers in run(answer_queries, [(read, piece, queries) for piece in pieces]):
                for query, answer in zip(queries, answers, strict=True):
                    if query.collect:
                        merged[query] = np.concatenate([merged.get(query, np.zeros(0, np.uint64)), answer])
                    else:
                        digits, counts = answer
                        merged.setdefault(query, np.zeros(1 << DIGIT_BITS, np.int64))[digits] += counts
        asked, asking = asking, {}
        for stat, query in asked.items():
            answer = merged.get(query, np.zeros(0 if query.collect else 1 << DIGIT_BITS, np.int64))
            if query.collect:
                found[stat] = Found(key_value(np.sort(answer)[ranks[stat]]), pools[stat])
                continue
            if query.known == 0:  # the first round counts every value: the wanted rank follows
                pools[stat] = int(answer.sum())
                if pools[stat] == 0:
                    found[stat] = Found(None, 0)
                    continue
                dropped = math.floor(stat.fraction * pools[stat])
                ranks[stat] = dropped if stat.keep == "min" else pools[stat] - 1 - dropped
            cumulative = np.cumsum(answer)
            digit = int(np.searchsorted(cumulative, ranks[stat], side="right"))
            ranks[stat] -= int(cumulative[digit - 1]) if digit else 0
            prefix, known = (query.prefix << DIGIT_BITS) | digit, query.known + DIGIT_BITS
            if known == 64:
                found[stat] = Found(key_value(prefix), pools[stat])
            else:
                asking[stat] = KeyQuery(stat.score, stat.sample, prefix, known, int(answer[digit]) <= COLLECT_VALUES)
    return found


def statistic_of(rule: Rule, samples: dict[str, Sample]) -> OrderStatistic:
    """The order statistic a relative rule's threshold is."""
    return OrderStatistic(rule.score.value, rule.fraction, rule.keep, samples.get(rule.score.value))


def with_thresholds(
    rules: Sequence[Rule], samples: dict[str, Sample], found: dict[OrderStatistic, Found]
) -> list[Rule]:
    """The rules with each relative one's threshold (and pool) set from `found`."""
    calibrated = []
    for rule in rules:
        if rule.relative:
            stat = found[statistic_of(rule, samples)]
            rule = replace(rule, threshold=stat.value, pool=stat.pool)
        calibrated.append(rule)
    return calibrated


def calibrated_rules(
    rules: Sequence[Rule], calibration_clips: int | None, read: Read, pieces: Sequence[Piece], run: Run
) -> list[Rule]:
    """The rules with each relative one's threshold set, exactly as `filtering.calibrate` sets it over all rows
    (or over the first `calibration_clips` values of its score, in run order)."""
    scores = sorted({rule.score.value for rule in rules if rule.relative})
    samples = {}
    if scores and calibration_clips is not None:
        counts = find_scored_counts(read, pieces, run, scores)
        samples = {score: sample_end(counts[score], calibration_clips) for score in scores}
    wanted = [statistic_of(rule, samples) for rule in rules if rule.relative]
    return with_thresholds(rules, samples, find_order_statistics(wanted, read, pieces, run))
