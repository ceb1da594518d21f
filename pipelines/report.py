"""report.html: what a finished `svd curate` run kept and rejected, and what other thresholds would keep.

Everything comes from the run's outputs (clips.parquet, summary.json, config.yaml) and its clip files; no
score is computed again. `build_report` is a pure function of the rows, so the job can call it with what it
holds in memory; clip bytes come through `read_clip`, so an OUT that is not a local folder can pass another
reader. `write_report` is `svd report`: it reads OUT, re-applies the filter with `--set filter.*` overrides
and writes OUT/report.html (OUT/config.yaml stays the run's config).

Early filtering leaves gaps: a clip rejected right after motion, OCR or aesthetics never got its later scores or
captions. When other thresholds would let such a clip through, nothing says whether its later scores would
pass, so it is counted apart ("plus up to N"), never as kept.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import av
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from curation.config import CurationConfig, ReportConfig
from curation.config_io import ConfigError, load_config, parse_override
from curation.filtering import Rule, apply_filter, filter_rules, relative_threshold
from curation.video_io import displayed
from pipelines.storage import Folder, LocationError

REPORT_NAME = "report.html"
CONFIG_NAME = "config.yaml"
RUN_FILES = ("clips.parquet", "summary.json", CONFIG_NAME)

# The scores in pipeline order, with the names the page gives them.
SCORES = {
    "motion_score": "motion",
    "text_area_ratio": "text area",
    "aesthetic_score": "aesthetic",
    "clip_score": "CLIP score",
}
# `svd report` re-applies the filter to stored scores; any other section would need the clips scored again.
REPORT_SECTIONS = ("filter", "report")

# Page layout: sizes of the inline SVG histograms (px) and of the thumbnails' JPEG encoding.
PLOT_WIDTH, PLOT_HEIGHT, PLOT_MARGIN = 360, 120, 28
JPEG_QUALITY = 80
KEPT_COLOUR, REJECTED_COLOUR, PROPOSED_COLOUR = "#3f8f3f", "#c0503c", "#2563eb"

# Counts of summary.json in the order the stages produce them; any other count follows, by name.
COUNT_ORDER = (
    "inputs",
    "failed_inputs",
    "frames",
    "scenes",
    "boundaries",
    "scenes_too_short",
    "scenes_without_keyframe",
    "clips",
)
COUNT_END = ("rejected", "kept", "shards")


class ReportError(ValueError):
    """An OUT that holds no finished run, or an override `svd report` cannot honour (one line for the user)."""


@dataclass(frozen=True)
class Outcome:
    """What one filter config does to the stored scores of a run."""

    kept: frozenset[str]
    # Would pass every rule they have a score for, but the run rejected them early: their later scores and
    # captions were never computed, so whether they would be kept is unknown.
    unknown: frozenset[str]
    reasons: dict[str, list[dict]]  # clip key -> why it is rejected under this config
    rules: tuple[Rule, ...]  # relative thresholds calibrated


@dataclass(frozen=True)
class Comparison:
    """The run's filter against the one with `--set` overrides, on the same stored scores."""

    before: Outcome
    after: Outcome
    proposed: CurationConfig  # the run's config with the overrides
    overrides: tuple[str, ...]  # the filter.* ones

    @property
    def newly_kept(self) -> list[str]:
        return sorted(self.after.kept - self.before.kept)

    @property
    def newly_rejected(self) -> list[str]:
        return sorted(self.before.kept - self.after.kept)


@dataclass(frozen=True)
class ReportSummary:
    """What `svd report` tells the user; the `*_with_overrides` fields are None without filter overrides."""

    path: str
    clips: int
    kept: int
    overrides: tuple[str, ...] = ()
    kept_with_overrides: int | None = None
    unknown_with_overrides: int | None = None
    newly_kept: int = 0
    newly_rejected: int = 0


def write_report(
    output_dir: str | Path, config: CurationConfig | None = None, overrides: Sequence[str] = ()
) -> ReportSummary:
    """Rebuild OUT/report.html from a finished run, with `--set filter.*` overrides shown beside the run's filter.

    OUT is a path or a URL (`pipelines/storage.py`). `config` is the run's config when the caller holds it
    (default: OUT/config.yaml); the overrides apply on top of OUT/config.yaml and are never written to it.
    """
    try:
        output = Folder(str(output_dir))
    except LocationError as error:
        raise ReportError(str(error)) from None
    # 1. Check that OUT holds a finished run, and which overrides are asked for.
    if not output.exists(""):
        raise ReportError(f"{output.url()}: no such folder")
    missing = [name for name in RUN_FILES if not output.exists(name)]
    if missing:
        raise ReportError(
            f"{output.url()}: no finished svd curate run here ({', '.join(missing)} missing): "
            "run or finish svd curate first"
        )
    for override in overrides:
        keys, _ = parse_override(override)
        if keys[0] not in REPORT_SECTIONS:
            raise ConfigError(
                f"--set {override}: svd report only re-applies filter.* (and report.*) to the stored scores; "
                f"changing {keys[0]}.* needs the clips scored again with svd curate"
            )
    # 2. Read the run; the overrides apply on top of its saved config.
    with output.local_file(CONFIG_NAME) as saved:
        config = config or load_config(CurationConfig, saved)
        proposed = load_config(CurationConfig, saved, overrides) if overrides else None
    rows = read_rows(output)
    summary = _read_summary(output)
    # 3. Compare, render, write.
    comparison = compare(rows, config, proposed, overrides)
    settings = (proposed or config).report
    title = PurePosixPath(output.url()).name
    output.write_text(REPORT_NAME, _render(rows, summary, config, output.read_bytes, comparison, settings, title))
    before = comparison.before if comparison else evaluate(rows, config)
    after = comparison.after if comparison else None
    return ReportSummary(
        output.url(REPORT_NAME),
        clips=len(rows),
        kept=len(before.kept),
        overrides=comparison.overrides if comparison else (),
        kept_with_overrides=len(after.kept) if after else None,
        unknown_with_overrides=len(after.unknown) if after else None,
        newly_kept=len(comparison.newly_kept) if comparison else 0,
        newly_rejected=len(comparison.newly_rejected) if comparison else 0,
    )


def build_report(
    rows: Sequence[dict],
    summary: dict,
    config: CurationConfig,
    read_clip: Callable[[str], bytes],
    proposed: CurationConfig | None = None,
    overrides: Sequence[str] = (),
    title: str = "",
) -> str:
    """The report page (self-contained HTML) of a run: `rows` as in clips.parquet, `summary` as in summary.json,
    `config` the run's. `read_clip(row["path"])` returns a clip file's bytes (its middle frame is the thumbnail).

    `proposed` is the run's config with `overrides` applied: the page then also shows what it would keep.
    """
    comparison = compare(rows, config, proposed, overrides)
    return _render(rows, summary, config, read_clip, comparison, (proposed or config).report, title)


def compare(
    rows: Sequence[dict], config: CurationConfig, proposed: CurationConfig | None, overrides: Sequence[str] = ()
) -> Comparison | None:
    """The run's filter against `proposed`'s; None when they are the same filter (e.g. only report.* changed)."""
    if proposed is None or proposed.filter == config.filter:
        return None
    skipped = frozenset(cut_short(rows, config))
    shown = tuple(override for override in overrides if parse_override(override)[0][0] == "filter")
    return Comparison(evaluate(rows, config), evaluate(rows, proposed, skipped), proposed, shown)


def evaluate(rows: Sequence[dict], config: CurationConfig, skipped: frozenset[str] = frozenset()) -> Outcome:
    """Re-apply `config`'s filter to the stored scores. Clips in `skipped` (cut short by the run's early filter)
    that pass every rule they have a score for are `unknown`, not kept."""
    light = [
        {
            "key": row["key"],
            **{score: row.get(score) for score in SCORES},
            "reject_reasons": list(row.get("reject_reasons") or []),
        }
        for row in rows
    ]
    rules = apply_filter(light, config.filter)
    passed = {row["key"] for row in light if row["kept"]}
    return Outcome(
        kept=frozenset(passed - skipped),
        unknown=frozenset(passed & skipped),
        reasons={row["key"]: row["reject_reasons"] for row in light if row["reject_reasons"]},
        rules=tuple(rules),
    )


def cut_short(rows: Sequence[dict], config: CurationConfig) -> dict[str, str]:
    """Clips the run rejected early, before stages that then skipped them: key -> the filter that stopped it.

    With `filter.early`, absolute rules run right after their score (pipelines/stages.py), and a rejected clip
    goes through no later stage: its later scores and captions are None because they were never computed.
    """
    if not (config.filter.enabled and config.filter.early):
        return {}
    absolute = {rule.name: rule.score for rule in filter_rules(config.filter) if not rule.relative}
    later = _later_work(config)
    stopped = {}
    for row in rows:
        for reason in row.get("reject_reasons") or []:
            score = absolute.get(reason["filter"])
            if score is not None and later[score]:
                stopped[row["key"]] = reason["filter"]
                break
    return stopped


def read_rows(output: Folder) -> list[dict]:
    """The rows of clips.parquet, in the run's input order; a damaged file is one line."""
    try:
        return pq.read_table(pa.BufferReader(output.read_bytes("clips.parquet"))).to_pylist()
    except (OSError, pa.ArrowException) as error:
        raise ReportError(f"{output.url('clips.parquet')}: cannot be read as the run's clip table: {error}") from None


def thumbnail(data: bytes, num_frames: int | None, width: int) -> bytes:
    """A JPEG of the clip's middle frame, as displayed (rotation applied), at most `width` px wide."""
    middle = (max(num_frames or 1, 1) - 1) // 2
    frame = None
    with av.open(io.BytesIO(data), mode="r") as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, decoded in enumerate(container.decode(stream)):
            frame = decoded  # a clip shorter than its record says shows its last frame
            if index >= middle:
                break
        if frame is None:
            raise ValueError("no frame could be decoded")
        sideways = round(frame.rotation / 90) % 2
        scale = min(1.0, width / (frame.height if sideways else frame.width))
        size = {"width": max(1, round(frame.width * scale)), "height": max(1, round(frame.height * scale))}
        image = displayed(frame.to_ndarray(**size, format="rgb24", interpolation="AREA"), frame.rotation)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


# --- reading OUT ---------------------------------------------------------------------------------------------


def _read_summary(output: Folder) -> dict:
    where = output.url("summary.json")
    try:
        summary = json.loads(output.read_text("summary.json"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReportError(f"{where}: cannot be read: {error}") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("counts"), dict):
        raise ReportError(f"{where}: not a summary.json of svd curate (no counts)")
    return summary


def _later_work(config: CurationConfig) -> dict[str, bool]:
    """For each score, whether the run had a stage after it (that an early rejection then skipped)."""
    order = [  # pipeline order: pipelines/curate.py::model_stages
        ("motion_score", config.motion.enabled),
        ("text_area_ratio", config.ocr.enabled),
        ("aesthetic_score", config.clip.enabled),
        ("caption", config.caption.enabled),
        ("clip_score", config.clip.enabled and config.caption.enabled),
    ]
    return {name: any(enabled for _, enabled in order[index + 1 :]) for index, (name, _) in enumerate(order)}


def _reason_names(outcome: Outcome) -> list[str]:
    """Filters that rejected something, in the order of the rules (decode failures first)."""
    found = {reason["filter"] for reasons in outcome.reasons.values() for reason in reasons}
    order = ["decode", *(rule.name for rule in outcome.rules)]
    return [name for name in order if name in found] + sorted(found - set(order))


# --- page sections -------------------------------------------------------------------------------------------


def _render(
    rows: Sequence[dict],
    summary: dict,
    config: CurationConfig,
    read_clip: Callable[[str], bytes],
    comparison: Comparison | None,
    settings: ReportConfig,
    title: str,
) -> str:
    before = comparison.before if comparison else evaluate(rows, config)
    shown = comparison.proposed if comparison else config
    early = cut_short(rows, config)
    parts = [
        f"<h1>Curation report{': ' + _text(title) if title else ''}</h1>",
        _intro(rows, before, comparison, early),
        _counts_section(summary),
        _histograms_section(rows, before, comparison, settings.histogram_bins),
        _what_if_section(rows, shown, comparison, early, settings.what_if_fractions),
        "<h2>Contact sheets</h2>",
    ]
    # (anchor, heading, clip keys, the outcome whose reasons the cards show)
    sheets = [("sheet-kept", "Kept", sorted(before.kept), before)]
    for name in _reason_names(before):
        keys = sorted(key for key, reasons in before.reasons.items() if any(r["filter"] == name for r in reasons))
        sheets.append((f"sheet-rejected-{name}", f"Rejected by {name}", keys, before))
    if comparison is not None:
        after = comparison.after
        sheets += [
            ("sheet-newly-kept", "Kept only with the overrides", comparison.newly_kept, after),
            ("sheet-newly-rejected", "Rejected only with the overrides", comparison.newly_rejected, after),
            (
                "sheet-unknown",
                "Might be kept with the overrides: rejected early, later scores never computed",
                sorted(after.unknown),
                before,
            ),
        ]
    by_key = {row["key"]: row for row in rows}
    cards = _CardMaker(read_clip, settings.thumbnail_width)
    for anchor, heading, keys, outcome in sheets:
        clips = [by_key[key] for key in keys]
        parts.append(_sheet(anchor, heading, clips, outcome, cards, settings.thumbnails_per_sheet))
    return _page(title, "\n".join(parts))


def _intro(rows: Sequence[dict], before: Outcome, comparison: Comparison | None, early: dict[str, str]) -> str:
    lines = [f"<p>{len(rows)} clips, {len(before.kept)} kept, {len(rows) - len(before.kept)} rejected.</p>"]
    if comparison is not None:
        lines.append(
            f"<p class='overrides'>Also shown: the filter with {_text(_overrides_text(comparison.overrides))} "
            "(OUT/config.yaml is unchanged).</p>"
        )
    if early:
        names = ", ".join(sorted(set(early.values())))
        lines.append(
            f"<p class='caveat'>{len(early)} clips were rejected early ({_text(names)}) and never got their later "
            "scores or captions. Where other thresholds would let one through, it is counted as "
            "<em>plus up to</em>, never as kept: only running svd curate with those thresholds says whether its "
            "later scores pass.</p>"
        )
    return "\n".join(lines)


def _counts_section(summary: dict) -> str:
    counts = summary.get("counts", {})
    rejected_by = sorted(name for name in counts if name.startswith("rejected_by_"))
    names = [name for name in COUNT_ORDER if name in counts] + rejected_by
    names += sorted(set(counts) - set(names) - set(COUNT_END)) + [name for name in COUNT_END if name in counts]
    rows = "".join(f"<tr><td>{_text(name)}</td><td class='n'>{_text(counts[name])}</td></tr>" for name in names)
    return (
        "<section id='counts'><h2>Counts per stage</h2>"
        f"<table><tr><th>stage</th><th>count</th></tr>{rows}</table>"
        "<p class='note'>A clip rejected by two filters counts under both.</p></section>"
    )


def _histograms_section(rows: Sequence[dict], before: Outcome, comparison: Comparison | None, bins: int) -> str:
    plots = []
    for score, label in SCORES.items():
        scored = [(row[score], row["key"] in before.kept) for row in rows if _finite(row.get(score))]
        if not scored:
            continue
        lines = [(rule, False) for rule in before.rules if rule.score == score and rule.threshold is not None]
        if comparison is not None:  # the overrides' thresholds that differ from the run's
            run = {(rule.name, rule.threshold) for rule, _ in lines}
            lines += [
                (rule, True)
                for rule in comparison.after.rules
                if rule.score == score and rule.threshold is not None and (rule.name, rule.threshold) not in run
            ]
        plots.append(_histogram(score, label, scored, lines, bins))
    if not plots:
        return "<section id='histograms'><h2>Scores</h2><p>No score was computed in this run.</p></section>"
    legend = (
        f"<p class='note'><span style='color:{KEPT_COLOUR}'>&#9632; kept</span> "
        f"<span style='color:{REJECTED_COLOUR}'>&#9632; rejected</span> (by the run); "
        f"threshold lines: the run's solid, with the overrides <span style='color:{PROPOSED_COLOUR}'>dashed</span>.</p>"
    )
    return f"<section id='histograms'><h2>Scores</h2>{legend}<div class='plots'>{''.join(plots)}</div></section>"


def _histogram(
    score: str, label: str, scored: list[tuple[float, bool]], lines: list[tuple[Rule, bool]], bins: int
) -> str:
    values = [value for value, _ in scored]
    low = min(values + [rule.threshold for rule, _ in lines])
    high = max(values + [rule.threshold for rule, _ in lines])
    if high <= low:
        high = low + 1.0
    step = (high - low) / bins
    kept, rejected = [0] * bins, [0] * bins
    for value, is_kept in scored:
        index = min(bins - 1, int((value - low) / step))
        (kept if is_kept else rejected)[index] += 1
    tallest = max(k + r for k, r in zip(kept, rejected, strict=True))
    inner_w, inner_h = PLOT_WIDTH - 2 * PLOT_MARGIN, PLOT_HEIGHT - 2 * PLOT_MARGIN
    bar_w = inner_w / bins

    def x(value: float) -> float:
        return PLOT_MARGIN + (value - low) / (high - low) * inner_w

    shapes = []
    for index in range(bins):
        bottom = PLOT_MARGIN + inner_h
        for count, colour in ((kept[index], KEPT_COLOUR), (rejected[index], REJECTED_COLOUR)):
            if count:
                height = count / tallest * inner_h
                bottom -= height
                shapes.append(
                    f"<rect x='{PLOT_MARGIN + index * bar_w:.1f}' y='{bottom:.1f}' width='{max(bar_w - 1, 0.5):.1f}' "
                    f"height='{height:.1f}' fill='{colour}'/>"
                )
    captions = []
    for rule, proposed in lines:
        dash = " stroke-dasharray='4 3'" if proposed else ""
        colour = PROPOSED_COLOUR if proposed else "#222"
        shapes.append(
            f"<line x1='{x(rule.threshold):.1f}' x2='{x(rule.threshold):.1f}' y1='{PLOT_MARGIN - 6}' "
            f"y2='{PLOT_MARGIN + inner_h}' stroke='{colour}' stroke-width='1.5'{dash}>"
            f"<title>{_text(rule.name)} = {_number(rule.threshold)}</title></line>"
        )
        captions.append(
            f"<li{' class=proposed' if proposed else ''}>{_rule_text(rule)}{' (overrides)' if proposed else ''}</li>"
        )
    axis_y = PLOT_MARGIN + inner_h + 14
    shapes += [
        f"<line x1='{PLOT_MARGIN}' x2='{PLOT_MARGIN + inner_w}' y1='{PLOT_MARGIN + inner_h}' "
        f"y2='{PLOT_MARGIN + inner_h}' stroke='#888'/>",
        f"<text x='{PLOT_MARGIN}' y='{axis_y}' font-size='10'>{_number(low)}</text>",
        f"<text x='{PLOT_MARGIN + inner_w}' y='{axis_y}' font-size='10' text-anchor='end'>{_number(high)}</text>",
        f"<text x='2' y='{PLOT_MARGIN}' font-size='10'>{tallest}</text>",
    ]
    kept_total = sum(kept)
    svg = (
        f"<svg width='{PLOT_WIDTH}' height='{PLOT_HEIGHT}' "
        f"role='img' aria-label='histogram of {_text(score)}'>{''.join(shapes)}</svg>"
    )
    rules = f"<ul>{''.join(captions)}</ul>" if captions else "<p class='note'>no threshold on this score</p>"
    return (
        f"<div class='histogram' id='hist-{score}'><h3>{_text(label)} <code>{score}</code></h3>{svg}"
        f"<p class='note'>{len(values)} clips with this score: {kept_total} kept, {len(values) - kept_total} "
        f"rejected</p>{rules}</div>"
    )


def _what_if_section(
    rows: Sequence[dict],
    shown: CurationConfig,
    comparison: Comparison | None,
    early: dict[str, str],
    fractions: Sequence[float],
) -> str:
    parts = ["<section id='what-if'><h2>What other thresholds would keep</h2>"]
    skipped = frozenset(early)
    if comparison is not None:
        after = comparison.after
        unknown = f", plus up to {len(after.unknown)} whose later scores were never computed" if after.unknown else ""
        parts.append(
            f"<p class='overrides'>With {_text(_overrides_text(comparison.overrides))}: <b>{len(after.kept)} kept</b> "
            f"(the run kept {len(comparison.before.kept)}: {len(comparison.newly_kept)} more, "
            f"{len(comparison.newly_rejected)} fewer){unknown}. See the contact sheets below.</p>"
        )
    rules = list(evaluate(rows, shown, skipped).rules)
    if not rules:
        parts.append("<p>The filter has no rule.</p></section>")
        return "\n".join(parts)
    which = "the run's config with the overrides" if comparison is not None else "the run's config"
    parts.append(
        f"<p class='note'>Each table changes one filter and keeps the others as in {which}. Absolute thresholds "
        "are tried at the values that would drop each share of the scored clips by that score alone. "
        "<em>Plus up to</em>: clips rejected early that would pass every rule they have a score for; relative "
        "thresholds of later scores are taken over the clips that have them.</p><div class='tables'>"
    )
    unscored = []
    for rule in rules:
        if any(_finite(row.get(rule.score)) for row in rows):
            parts.append(_alternatives_table(rows, shown, rule, skipped, fractions))
        else:
            unscored.append(rule.name)
    parts.append("</div>")
    if unscored:
        parts.append(f"<p class='note'>No table for {_text(', '.join(unscored))}: the run computed no such score.</p>")
    parts.append("</section>")
    return "\n".join(parts)


def _alternatives_table(
    rows: Sequence[dict], shown: CurationConfig, rule: Rule, skipped: frozenset[str], fractions: Sequence[float]
) -> str:
    configured = getattr(shown.filter, rule.name)
    values = [row[rule.score] for row in rows if _finite(row.get(rule.score))]
    tries: dict[float | None, str] = {None: "off"}
    for fraction in fractions:
        if rule.relative:
            tries.setdefault(fraction, f"drop {_percent(fraction)}")
        else:
            value = relative_threshold(values, fraction, rule.keep)
            dropped = sum(replace(rule, threshold=value).rejects(v) for v in values)
            tries.setdefault(value, f"{_number(value)} (alone drops {dropped} of {len(values)})")
    tries.setdefault(configured, _percent(configured) if rule.relative else _number(configured))
    strictness = sorted(
        (value for value in tries if value is not None), reverse=not rule.relative and rule.keep == "max"
    )
    body = []
    for value in [None, *strictness]:
        config = shown.model_copy(update={"filter": shown.filter.model_copy(update={rule.name: value})})
        outcome = evaluate(rows, config, skipped)
        used = next((r.threshold for r in outcome.rules if r.name == rule.name), None)
        unknown = f"+ up to {len(outcome.unknown)}" if outcome.unknown else ""
        mark = " class='configured'" if value == configured else ""
        body.append(
            f"<tr{mark}><td>{_text(tries[value])}{' (as configured)' if mark else ''}</td>"
            f"<td class='n'>{_number(used)}</td><td class='n'>{len(outcome.kept)}</td><td class='n'>{unknown}</td></tr>"
        )
    direction = "keeps at least" if rule.keep == "min" else "keeps at most"
    return (
        f"<table class='what-if' id='what-if-{rule.name}'><caption><code>filter.{rule.name}</code> "
        f"({_text(SCORES.get(rule.score, rule.score))}, {direction})</caption>"
        "<tr><th>setting</th><th>threshold</th><th>kept</th><th>plus up to</th></tr>"
        f"{''.join(body)}</table>"
    )


class _CardMaker:
    """Cards of clips; a clip's thumbnail is made once however many sheets it appears on."""

    def __init__(self, read_clip: Callable[[str], bytes], width: int):
        self.read_clip = read_clip
        self.width = width
        self.thumbnails: dict[str, str] = {}

    def image(self, row: dict) -> str:
        key = row["key"]
        if key not in self.thumbnails:
            self.thumbnails[key] = self._image(row)
        return self.thumbnails[key]

    def _image(self, row: dict) -> str:
        if not row.get("path"):
            return self._placeholder("no clip file")
        try:
            data = self.read_clip(row["path"])
        except FileNotFoundError:
            return self._placeholder("clip file missing")
        except OSError as error:
            return self._placeholder(f"clip file unreadable: {error}")
        try:
            jpeg = thumbnail(data, row.get("num_frames"), self.width)
        except av.error.FFmpegError as error:
            return self._placeholder(f"clip cannot be decoded: {error.strerror or error}")
        except ValueError as error:
            return self._placeholder(f"clip cannot be decoded: {error}")
        encoded = base64.b64encode(jpeg).decode("ascii")
        return f"<img src='data:image/jpeg;base64,{encoded}' alt='{_text(row['key'])}'>"

    def _placeholder(self, why: str) -> str:
        return f"<div class='placeholder' style='width:{self.width}px'>{_text(why)}</div>"


def _sheet(anchor: str, heading: str, rows: list[dict], outcome: Outcome, cards: _CardMaker, limit: int) -> str:
    shown = rows[:limit]
    more = f" ({len(rows) - limit} more not shown)" if len(rows) > limit else ""
    items = "".join(_card(row, outcome, cards) for row in shown)
    empty = "" if rows else "<p class='note'>none</p>"
    return (
        f"<section class='sheet' id='{_text(anchor)}'><h3>{_text(heading)}: {len(rows)}{more}</h3>{empty}"
        f"<div class='cards'>{items}</div></section>"
    )


def _card(row: dict, outcome: Outcome, cards: _CardMaker) -> str:
    scores = " &middot; ".join(f"{_text(label)} {_number(row.get(score))}" for score, label in SCORES.items())
    reasons = "".join(
        f"<div class='why'>{_reason_text(reason)}</div>" for reason in outcome.reasons.get(row["key"], [])
    )
    caption = row.get("caption")
    caption_html = f"<q>{_text(caption)}</q>" if caption else "<span class='note'>no caption</span>"
    return (
        f"<figure class='card' data-key='{_text(row['key'])}'>{cards.image(row)}<figcaption>"
        f"<b>{_text(row['key'])}</b><br><span class='scores'>{scores}</span>{reasons}{caption_html}"
        "</figcaption></figure>"
    )


def _page(title: str, body: str) -> str:
    heading = f"svd curate report: {title}" if title else "svd curate report"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_text(heading)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: 0 1.5em 1em 0; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 2px 8px; text-align: left; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
tr.configured {{ font-weight: bold; }}
caption {{ text-align: left; font-weight: bold; }}
.plots, .tables, .cards {{ display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }}
.histogram {{ border: 1px solid #eee; padding: 6px; }}
.histogram h3 {{ margin: 0; font-size: 14px; }}
.histogram ul {{ margin: 0; padding-left: 1.2em; font-size: 12px; }}
li.proposed {{ color: {PROPOSED_COLOUR}; }}
.note {{ color: #666; font-size: 12px; }}
.caveat {{ background: #fff6d5; padding: 6px; }}
.overrides {{ background: #e8f0ff; padding: 6px; }}
.card {{ margin: 0; width: min-content; font-size: 11px; }}
.card img, .placeholder {{ display: block; }}
.placeholder {{ height: 90px; background: #ddd; color: #555; display: flex; align-items: center;
  justify-content: center; text-align: center; }}
.card figcaption {{ min-width: 140px; word-break: break-all; }}
.card q {{ word-break: normal; }}
.why {{ color: {REJECTED_COLOUR}; }}
</style></head>
<body>
{body}
</body></html>
"""


# --- text ----------------------------------------------------------------------------------------------------


def _text(value) -> str:
    """Anything shown on the page, escaped: captions and keys come from models and file names."""
    return html.escape(str(value), quote=True)


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) and not isinstance(value, bool) else "&ndash;"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _overrides_text(overrides: Sequence[str]) -> str:
    return " ".join(f"--set {override}" for override in overrides)


def _rule_text(rule: Rule) -> str:
    sign = "&ge;" if rule.keep == "min" else "&le;"
    if rule.relative:
        kind = f"relative: drops {_percent(rule.fraction)} of {rule.pool} clips"
    else:
        kind = "absolute"
    return f"<code>{_text(rule.name)}</code> = {_number(rule.threshold)} (keeps {sign}; {kind})"


def _reason_text(reason: dict) -> str:
    if reason.get("filter") == "decode":
        return f"decode: {_text(reason.get('error') or 'the clip file could not be read back')}"
    return f"{_text(reason['filter'])}: {_number(reason.get('value'))} vs {_number(reason.get('threshold'))}"
