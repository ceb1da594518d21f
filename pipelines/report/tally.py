"""The report's pass over clips.parquet: one task per part counts what the page shows, and the driver merges the
counts. What a task returns does not grow with the run: counts, histogram bins, each contact sheet's first
`report.thumbnails_per_sheet` clips by key, the first as many copies (`dedup`) by the clip they copy, and the
clips of the sources whose timelines are drawn; a last pass finds the clips those copies copy.

Each part is judged column by column (numpy over its scores and stored reasons); only the few rows that can
reach a contact sheet or a timeline become Python dicts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.config import ReportConfig
from curation.filtering import Rule
from curation.record import DECODE_FAILED, DUPLICATE, SCORES, Column
from pipelines.report.what_if import Filters
from pipelines.selection import Piece, Read, Run

KEPT_SHEET, NEWLY_KEPT, NEWLY_REJECTED, UNKNOWN = "kept", "newly-kept", "newly-rejected", "unknown"
# The columns the pass reads: a card's (key, scores, caption, thumbnail source, reasons) and a timeline's.
COLUMNS = [
    Column.KEY.value,
    Column.SOURCE.value,
    Column.START_FRAME.value,
    Column.END_FRAME.value,
    Column.NUM_FRAMES.value,
    Column.PATH.value,
    Column.CAPTION.value,
    *(score.value for score in SCORES),
    Column.REJECT_REASONS.value,
]


@dataclass
class Sheet:
    """A contact sheet: how many clips it holds and the first of them by key (each a row of `COLUMNS` with the
    reasons the card shows)."""

    count: int = 0
    first: list[dict] = field(default_factory=list)


@dataclass
class Tally:
    """What the page shows of the run's clips, merged over the parts."""

    clips: int = 0
    kept: int = 0  # by the run's filter
    early: dict[str, int] = field(default_factory=dict)  # stopping rule -> clips it cut short (`Filters.stopping`)
    after_kept: int = 0  # with the overrides
    after_unknown: int = 0  # ... would pass every rule they have a score for, but were cut short
    sheets: dict[str, Sheet] = field(default_factory=dict)  # KEPT_SHEET, each reason name, NEWLY_KEPT, ...
    # score -> (kept, rejected) counts per bin over `Filters.ranges`
    histograms: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)
    # per `Filters.alternatives`, per try: (kept, unknown, dropped by the tried threshold alone)
    tries: list[list[tuple[int, int, int]]] = field(default_factory=list)
    # source -> its clips: (start frame, end frame, key, kept, first reason or "")
    timelines: dict[str, list[tuple[int, int, str, bool, str]]] = field(default_factory=dict)
    # The first copies (`dedup`) by the clip they copy, then by key: rows as the sheets' cards
    copies: list[dict] = field(default_factory=list)
    originals: dict[str, dict] = field(default_factory=dict)  # the clips those copies copy, by key


def count(
    filters: Filters,
    settings: ReportConfig,
    drawn_sources: Sequence[str],
    read: Read,
    parts: Sequence[Piece],
    run: Run,
) -> Tally:
    """The tally of every part (tasks of `run`), merged; `drawn_sources`: those whose timelines are drawn."""
    total = Tally()
    for part in run(count_part, [(read, part, filters, settings, tuple(drawn_sources)) for part in parts]):
        total = merge(total, part, settings.thumbnails_per_sheet)
    originals = frozenset(copy_order(row)[0] for row in total.copies)
    if originals:
        for found in run(rows_of, [(read, part, originals, filters) for part in parts]):
            total.originals.update({row[Column.KEY.value]: row for row in found})
    return total


def histogram_range(filters: Filters, score: str) -> tuple[float, float]:
    """A score's histogram's edges: its values' range, widened to the thresholds drawn on it."""
    low, high, _ = filters.ranges[score]
    drawn = [r.threshold for r in (*filters.before, *(filters.after or ())) if r.score == score]
    drawn = [threshold for threshold in drawn if threshold is not None]
    low, high = min([low, *drawn]), max([high, *drawn])
    if high <= low:
        high = low + 1.0
    return low, high


def count_part(
    read: Read, part: Piece, filters: Filters, settings: ReportConfig, drawn_sources: tuple[str, ...]
) -> Tally:
    """Task: the tally of one part of clips.parquet."""
    table, _ = read(part, COLUMNS)
    rows = Judged(table.combine_chunks(), filters)
    tally = Tally(clips=table.num_rows)
    before = rows.passed(filters.before)
    tally.kept = int(before.sum())
    skipped = rows.cut_short != ""
    for name in np.unique(rows.cut_short[skipped]):
        tally.early[str(name)] = int((rows.cut_short == name).sum())
    # Contact sheets: (name, clips, the rules whose reasons the cards show).
    limit = settings.thumbnails_per_sheet
    sheets = [(KEPT_SHEET, before, filters.before), (DECODE_FAILED, rows.decode, filters.before)]
    sheets.append((DUPLICATE, rows.duplicate, filters.before))
    sheets += [(rule.name, rows.rejects(rule), filters.before) for rule in filters.before]
    if filters.after is not None:
        after = rows.passed(filters.after)
        tally.after_kept = int((after & ~skipped).sum())
        tally.after_unknown = int((after & skipped).sum())
        sheets += [
            (NEWLY_KEPT, after & ~skipped & ~before, filters.after),
            (NEWLY_REJECTED, before & ~(after & ~skipped), filters.after),
            (UNKNOWN, after & skipped, filters.before),
        ]
    for name, chosen, rules in sheets:
        tally.sheets[name] = Sheet(int(chosen.sum()), rows.cards(chosen, rules, limit))
    # Histograms of the finite scores, kept and rejected by the run.
    for score in filters.ranges:
        low, high = histogram_range(filters, score)
        step = (high - low) / settings.histogram_bins
        values = rows.values[score]
        finite = np.isfinite(values)
        index = np.minimum(settings.histogram_bins - 1, ((values[finite] - low) / step).astype(np.int64))
        kept = np.bincount(index[before[finite]], minlength=settings.histogram_bins)
        rejected = np.bincount(index[~before[finite]], minlength=settings.histogram_bins)
        tally.histograms[score] = (kept.tolist(), rejected.tolist())
    # The what-if tables: each rule of the shown config at each setting, the others as configured.
    shown = [rows.rejects(rule) for rule in filters.shown]
    for table_of_tries in filters.alternatives:
        others = rows.decode | rows.duplicate
        for position, rejected in enumerate(shown):
            if position != table_of_tries.position:
                others |= rejected
        counted = []
        for tried in table_of_tries.tries:
            alone = rows.rejects(tried.rule) if tried.rule else np.zeros(len(others), bool)
            passed = ~others & ~alone
            dropped = alone & np.isfinite(rows.values[table_of_tries.rule.score])
            counted.append((int((passed & ~skipped).sum()), int((passed & skipped).sum()), int(dropped.sum())))
        tally.tries.append(counted)
    tally.timelines = rows.timelines(drawn_sources, before, filters.before)
    tally.copies = rows.cards(rows.duplicate, filters.before, limit, by_original=True)
    return tally


class Judged:
    """One part's rows, column by column, with what the rules say of them."""

    def __init__(self, table: pa.Table, filters: Filters):
        self.table = table
        self.values = {
            score.value: pc.fill_null(table[score.value].cast(pa.float64()), math.nan).to_numpy(zero_copy_only=False)
            for score in SCORES
        }
        # The stored reasons: a failed decode, a copy of a kept clip (both stand whatever the thresholds) and the
        # rules that stopped a clip early matter here.
        reasons = table[Column.REJECT_REASONS.value].combine_chunks()
        owners = pc.list_parent_indices(reasons).to_numpy(zero_copy_only=False)
        names = pc.struct_field(pc.list_flatten(reasons), "filter")
        self.decode = np.zeros(table.num_rows, bool)
        self.decode[owners[_true(pc.equal(names, DECODE_FAILED))]] = True
        copies = _true(pc.equal(names, DUPLICATE))
        self.duplicate = np.zeros(table.num_rows, bool)
        self.duplicate[owners[copies]] = True
        self.original = np.full(table.num_rows, None, object)  # the key of the clip each copy copies
        if copies.any():  # a run before `dedup` stored no `of`
            of = pc.struct_field(pc.list_flatten(reasons), "of").to_numpy(zero_copy_only=False)
            self.original[owners[copies]] = of[copies]
        self.cut_short = np.full(table.num_rows, "", object)  # the rule that stopped each clip early, if one did
        stopping = _true(pc.is_in(names, value_set=pa.array(sorted(filters.stopping), pa.string())))
        firsts = np.unique(owners[stopping], return_index=True)[1]
        self.cut_short[owners[stopping][firsts]] = names.to_numpy(zero_copy_only=False)[stopping][firsts]

    def rejects(self, rule: Rule) -> np.ndarray:
        """Which rows `rule` rejects (a score never computed, NaN, or a threshold of None rejects nothing)."""
        values = self.values[rule.score.value]
        if rule.threshold is None:
            return np.zeros(len(values), bool)
        return values < rule.threshold if rule.keep == "min" else values > rule.threshold

    def passed(self, rules: Sequence[Rule]) -> np.ndarray:
        """Which rows pass every rule, were read back and are no copy of a kept clip."""
        passed = ~self.decode & ~self.duplicate
        for rule in rules:
            passed &= ~self.rejects(rule)
        return passed

    def cards(self, chosen: np.ndarray, rules: Sequence[Rule], limit: int, by_original: bool = False) -> list[dict]:
        """The first `limit` chosen rows by key (`by_original`: by the clip they copy, then by key), each with the
        reasons `rules` give it."""
        where = np.flatnonzero(chosen)
        keys = self.table[Column.KEY.value].take(where)
        if by_original:
            order = pa.table({"of": pa.array(self.original[where], pa.string()), "key": keys})
            first = where[pc.sort_indices(order, [("of", "ascending"), ("key", "ascending")]).to_numpy()[:limit]]
        else:
            first = where[pc.sort_indices(keys).to_numpy()[:limit]]
        return [self._with_reasons(row, rules) for row in self.table.take(first).to_pylist()]

    def timelines(self, sources: tuple[str, ...], kept: np.ndarray, rules: Sequence[Rule]) -> dict[str, list[tuple]]:
        """The clips of `sources`: where each lies in its source, whether the run kept it and why not."""
        where = np.flatnonzero(
            _true(pc.is_in(self.table[Column.SOURCE.value], value_set=pa.array(sources, pa.string())))
        )
        found: dict[str, list[tuple]] = {}
        for index, row in zip(where, self.table.take(where).to_pylist(), strict=True):
            reasons = self._with_reasons(row, rules)[Column.REJECT_REASONS.value]
            first = reasons[0]["filter"] if reasons else ""
            clip = (row[Column.START_FRAME], row[Column.END_FRAME], row[Column.KEY], bool(kept[index]), first)
            found.setdefault(row[Column.SOURCE], []).append(clip)
        return found

    @staticmethod
    def _with_reasons(row: dict, rules: Sequence[Rule]) -> dict:
        """The row with the reasons `rules` give it: a failed decode (as stored), then every rule it fails, then its
        being a copy (as stored)."""
        stored = row[Column.REJECT_REASONS.value] or []
        reasons = [reason for reason in stored if reason["filter"] == DECODE_FAILED]
        for rule in rules:
            value = row.get(rule.score.value)
            if value is not None and rule.threshold is not None and rule.rejects(value):
                reasons.append({"filter": rule.name, "value": float(value), "threshold": rule.threshold})
        reasons += [reason for reason in stored if reason["filter"] == DUPLICATE]
        return {**row, Column.REJECT_REASONS.value: reasons}


def copy_order(row: dict) -> tuple[str, str]:
    """Copies by the clip they copy, then by key."""
    of = next(reason["of"] for reason in row[Column.REJECT_REASONS.value] if reason["filter"] == DUPLICATE)
    return of, row[Column.KEY.value]


def rows_of(read: Read, part: Piece, keys: frozenset[str], filters: Filters) -> list[dict]:
    """Task: the rows of `keys` in one part (the clips the shown copies copy), as cards under the run's rules."""
    table, _ = read(part, COLUMNS)
    table = table.combine_chunks()
    rows = Judged(table, filters)
    chosen = _true(pc.is_in(table[Column.KEY.value], value_set=pa.array(sorted(keys), pa.string())))
    return rows.cards(chosen, filters.before, len(keys))


def _true(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An Arrow boolean result as a numpy mask, null as False."""
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False).astype(bool)


def merge(total: Tally, part: Tally, limit: int) -> Tally:
    """Two tallies as one (sheets keep their first `limit` clips by key); `total` is updated and returned."""
    total.clips += part.clips
    total.kept += part.kept
    total.after_kept += part.after_kept
    total.after_unknown += part.after_unknown
    for name, clips in part.early.items():
        total.early[name] = total.early.get(name, 0) + clips
    for name, sheet in part.sheets.items():
        merged = total.sheets.setdefault(name, Sheet())
        merged.count += sheet.count
        merged.first = sorted(merged.first + sheet.first, key=lambda row: row[Column.KEY])[:limit]
    for score, (kept, rejected) in part.histograms.items():
        if score not in total.histograms:
            total.histograms[score] = (kept, rejected)
            continue
        old_kept, old_rejected = total.histograms[score]
        total.histograms[score] = (
            [a + b for a, b in zip(old_kept, kept, strict=True)],
            [a + b for a, b in zip(old_rejected, rejected, strict=True)],
        )
    if not total.tries:
        total.tries = part.tries
    else:
        total.tries = [
            [tuple(a + b for a, b in zip(x, y, strict=True)) for x, y in zip(old, new, strict=True)]
            for old, new in zip(total.tries, part.tries, strict=True)
        ]
    for source, clips in part.timelines.items():
        total.timelines.setdefault(source, []).extend(clips)
    total.copies = sorted(total.copies + part.copies, key=copy_order)[:limit]
    return total
