"""The report page: its sections as HTML, the score histograms as inline SVG, the contact sheets' cards.

It shows what the report's pass (`tally`) counted under `what_if`'s filters (the run's, the overrides', other
thresholds) and the clips' `thumbnails`; every text that comes from a run (keys, captions, file names, errors) is
escaped.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

from curation.config import ReportConfig
from curation.filtering import Rule
from curation.record import DECODE_FAILED, DUPLICATE, SCORES, Column
from curation.split.fates import ALIGNMENT, CLIP, FATE_COUNTS, TOO_SHORT, TRANSITION
from pipelines.report.tally import (
    KEPT_SHEET,
    NEWLY_KEPT,
    NEWLY_REJECTED,
    UNKNOWN,
    Sheet,
    Tally,
    copy_order,
    histogram_range,
)
from pipelines.report.thumbnails import Thumbnails
from pipelines.report.what_if import Alternatives, Filters, Try

# The names the page gives the scores.
SCORE_LABELS = {
    Column.MOTION_SCORE: "motion",
    Column.TEXT_AREA_RATIO: "text area",
    Column.AESTHETIC_SCORE: "aesthetic",
    Column.CLIP_SCORE: "CLIP score",
}

# Page layout: sizes of the inline SVG histograms (px).
PLOT_WIDTH, PLOT_HEIGHT, PLOT_MARGIN = 360, 120, 28
KEPT_COLOUR, REJECTED_COLOUR, PROPOSED_COLOUR = "#3f8f3f", "#c0503c", "#2563eb"
# Source timelines: the strip's size (px), the colours of the frames that no clip holds, and of rejected clips
# by reason (in the order the reasons first appear; the last colour repeats).
STRIP_WIDTH, STRIP_HEIGHT = 720, 14
FATE_COLOURS = {TRANSITION: "#555555", TOO_SHORT: "#c9c9c9", ALIGNMENT: "#e6a23c"}
REASON_COLOURS = ("#c0503c", "#8e44ad", "#d35400", "#b03a6a", "#7f3f1f", "#a93226")

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
    *FATE_COUNTS.values(),
)
COUNT_END = ("rejected", "kept", "shards")


def render(
    tally: Tally,
    filters: Filters,
    summary: dict,
    settings: ReportConfig,
    title: str,
    sources: Sequence[dict],
    thumbnails: Thumbnails,
) -> str:
    """The page of a run: what the report's pass found (`tally`) under `filters`, `summary` as in summary.json,
    `sources` the first `settings.timelines` lines of sources.jsonl; `settings` are the report's (the overrides'
    if any)."""
    parts = [
        f"<h1>Curation report{': ' + _text(title) if title else ''}</h1>",
        _intro(tally, filters),
        _counts_section(summary),
        _timelines_section(sources, _split_sources(summary, sources), tally, filters, settings.timelines),
        _histograms_section(tally, filters),
        _what_if_section(tally, filters),
        "<h2>Contact sheets</h2>",
    ]
    for anchor, heading, name in _sheets(tally, filters):
        parts.append(_sheet(anchor, heading, tally.sheets[name], thumbnails, settings.thumbnails_per_sheet))
    parts.append(_copies_section(tally, thumbnails))
    return _page(title, "\n".join(parts))


def _sheets(tally: Tally, filters: Filters) -> list[tuple[str, str, str]]:
    """The contact sheets shown: (anchor, heading, name in `Tally.sheets`)."""
    sheets = [("sheet-kept", "Kept", KEPT_SHEET)]
    sheets += [(f"sheet-rejected-{name}", f"Rejected by {name}", name) for name in _reasons_found(tally, filters)]
    if filters.after is not None:
        sheets += [
            ("sheet-newly-kept", "Kept only with the overrides", NEWLY_KEPT),
            ("sheet-newly-rejected", "Rejected only with the overrides", NEWLY_REJECTED),
            ("sheet-unknown", "Might be kept with the overrides: rejected early, later scores never computed", UNKNOWN),
        ]
    return sheets


def shown_keys(tally: Tally, filters: Filters) -> set[str]:
    """The clips whose thumbnails the page shows."""
    keys = {row[Column.KEY] for _, _, name in _sheets(tally, filters) for row in tally.sheets[name].first}
    return keys | {row[Column.KEY] for row in tally.copies} | set(tally.originals)


def _reasons_found(tally: Tally, filters: Filters) -> list[str]:
    """The reasons the run's filter rejected a clip for, in the order of the rules (decode failures first)."""
    return [name for name in filters.reason_names() if tally.sheets.get(name, Sheet()).count]


# --- page sections -------------------------------------------------------------------------------------------


def _intro(tally: Tally, filters: Filters) -> str:
    lines = [f"<p>{tally.clips} clips, {tally.kept} kept, {tally.clips - tally.kept} rejected.</p>"]
    if filters.after is not None:
        lines.append(
            f"<p class='overrides'>Also shown: the filter with {_text(_overrides_text(filters.overrides))} "
            "(OUT/config.yaml is unchanged).</p>"
        )
    if tally.early:
        names = ", ".join(sorted(tally.early))
        lines.append(
            f"<p class='caveat'>{sum(tally.early.values())} clips were rejected early ({_text(names)}) and never got "
            "their later scores or captions. Where other thresholds would let one through, it is counted as "
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


def _split_sources(summary: dict, sources: Sequence[dict]) -> int:
    """How many sources were split: every input but those that failed (summary.json), or as many as given."""
    counts = summary.get("counts", {})
    return max(len(sources), counts.get("inputs", 0) - counts.get("failed_inputs", 0))


def _timelines_section(sources: Sequence[dict], total: int, tally: Tally, filters: Filters, limit: int) -> str:
    """One strip per source (the first `limit` of the `total` split): where its frames went (kept or rejected
    clips, transitions, too short, alignment)."""
    if not sources:
        return ""
    found = _reasons_found(tally, filters)
    reason_colour = {name: REASON_COLOURS[min(i, len(REASON_COLOURS) - 1)] for i, name in enumerate(found)}
    strips = [_strip(source, tally.timelines.get(source["source"], []), reason_colour) for source in sources[:limit]]
    more = f" ({total - limit} more not shown)" if total > limit else ""
    legend = [(KEPT_COLOUR, "kept clip")] + [(colour, f"rejected by {name}") for name, colour in reason_colour.items()]
    legend += [(FATE_COLOURS[fate], text) for fate, text in _FATE_TEXT.items()]
    keys = " ".join(f"<span style='color:{colour}'>&#9632; {_text(text)}</span>" for colour, text in legend)
    return (
        f"<section id='timelines'><h2>Where the footage went: {total} sources{more}</h2>"
        f"<p class='note'>{keys}</p>{''.join(strips)}</section>"
    )


_FATE_TEXT = {
    TRANSITION: "transition",
    TOO_SHORT: "scene too short",
    ALIGNMENT: "lost to alignment (before a keyframe, or cut off at a clip's end)",
}


def _strip(source: dict, clips: list[tuple], reason_colour: dict[str, str]) -> str:
    name = source["source"].rsplit("/", 1)[-1]
    if source.get("duplicate_of"):  # `dedup.exact`: a copy of an earlier input, not split
        note = f"{_text(name)}: the same file as {_text(source['duplicate_of'])}, not split again"
        return f"<div class='timeline'><div class='note'>{note}</div></div>"
    frames = max(1, source["frames"])
    spans = [(start, end, FATE_COLOURS[fate], _FATE_TEXT[fate]) for start, end, fate in source["fates"] if fate != CLIP]
    for start, end, key, kept, first in clips:
        if kept:
            colour, why = KEPT_COLOUR, "kept"
        else:
            colour, why = reason_colour.get(first, REASON_COLOURS[-1]), f"rejected by {first}"
        spans.append((start, end, colour, f"{key}: {why}"))
    shapes = [
        f"<rect x='{start / frames * STRIP_WIDTH:.2f}' y='0' width='{max((end - start) / frames * STRIP_WIDTH, 0.5):.2f}'"
        f" height='{STRIP_HEIGHT}' fill='{colour}'><title>frames {start}-{end}: {_text(what)}</title></rect>"
        for start, end, colour, what in sorted(spans)
    ]
    return (
        f"<div class='timeline'><div class='note'>{_text(name)}: {source['frames']} frames</div>"
        f"<svg width='{STRIP_WIDTH}' height='{STRIP_HEIGHT}' role='img' aria-label='timeline of {_text(name)}'>"
        f"{''.join(shapes)}</svg></div>"
    )


def _histograms_section(tally: Tally, filters: Filters) -> str:
    plots = []
    for score in SCORES:
        if score not in tally.histograms:
            continue
        lines = [(rule, False) for rule in filters.before if rule.score == score and rule.threshold is not None]
        if filters.after is not None:  # the overrides' thresholds that differ from the run's
            run = {(rule.name, rule.threshold) for rule, _ in lines}
            lines += [
                (rule, True)
                for rule in filters.after
                if rule.score == score and rule.threshold is not None and (rule.name, rule.threshold) not in run
            ]
        kept, rejected = tally.histograms[score]
        plots.append(_histogram(score, _label(score), kept, rejected, histogram_range(filters, score), lines))
    if not plots:
        return "<section id='histograms'><h2>Scores</h2><p>No score was computed in this run.</p></section>"
    legend = (
        f"<p class='note'><span style='color:{KEPT_COLOUR}'>&#9632; kept</span> "
        f"<span style='color:{REJECTED_COLOUR}'>&#9632; rejected</span> (by the run); "
        f"threshold lines: the run's solid, with the overrides <span style='color:{PROPOSED_COLOUR}'>dashed</span>.</p>"
    )
    return f"<section id='histograms'><h2>Scores</h2>{legend}<div class='plots'>{''.join(plots)}</div></section>"


def _histogram(
    score: str,
    label: str,
    kept: list[int],
    rejected: list[int],
    edges: tuple[float, float],
    lines: list[tuple[Rule, bool]],
) -> str:
    low, high = edges
    bins = len(kept)
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
    values = sum(kept) + sum(rejected)
    kept_total = sum(kept)
    svg = (
        f"<svg width='{PLOT_WIDTH}' height='{PLOT_HEIGHT}' "
        f"role='img' aria-label='histogram of {_text(score)}'>{''.join(shapes)}</svg>"
    )
    rules = f"<ul>{''.join(captions)}</ul>" if captions else "<p class='note'>no threshold on this score</p>"
    return (
        f"<div class='histogram' id='hist-{score}'><h3>{_text(label)} <code>{score}</code></h3>{svg}"
        f"<p class='note'>{values} clips with this score: {kept_total} kept, {values - kept_total} "
        f"rejected</p>{rules}</div>"
    )


def _what_if_section(tally: Tally, filters: Filters) -> str:
    parts = ["<section id='what-if'><h2>What other thresholds would keep</h2>"]
    if filters.after is not None:
        newly_kept, newly_rejected = tally.sheets[NEWLY_KEPT].count, tally.sheets[NEWLY_REJECTED].count
        unknown = (
            f", plus up to {tally.after_unknown} whose later scores were never computed" if tally.after_unknown else ""
        )
        parts.append(
            f"<p class='overrides'>With {_text(_overrides_text(filters.overrides))}: <b>{tally.after_kept} kept</b> "
            f"(the run kept {tally.kept}: {newly_kept} more, {newly_rejected} fewer){unknown}. "
            "See the contact sheets below.</p>"
        )
    if not filters.shown:
        parts.append("<p>The filter has no rule.</p></section>")
        return "\n".join(parts)
    which = "the run's config with the overrides" if filters.after is not None else "the run's config"
    parts.append(
        f"<p class='note'>Each table changes one filter and keeps the others as in {which}. Absolute thresholds "
        "are tried at the values that would drop each share of the scored clips by that score alone. "
        "<em>Plus up to</em>: clips rejected early that would pass every rule they have a score for; relative "
        "thresholds of later scores are taken over the clips that have them.</p><div class='tables'>"
    )
    for table, counted in zip(filters.alternatives, tally.tries, strict=True):
        parts.append(_alternatives_table(table, counted, filters.ranges[table.rule.score][2]))
    parts.append("</div>")
    if filters.unscored:
        names = ", ".join(filters.unscored)
        parts.append(f"<p class='note'>No table for {_text(names)}: the run computed no such score.</p>")
    parts.append("</section>")
    return "\n".join(parts)


def _alternatives_table(table: Alternatives, counted: list[tuple[int, int, int]], scored: int) -> str:
    rule = table.rule
    body = []
    for tried, (kept, unknown, dropped) in zip(table.tries, counted, strict=True):
        plus = f"+ up to {unknown}" if unknown else ""
        mark = " class='configured'" if tried.configured else ""
        threshold = tried.rule.threshold if tried.rule else None
        setting = _setting_text(tried, rule, dropped, scored)
        body.append(
            f"<tr{mark}><td>{_text(setting)}{' (as configured)' if mark else ''}</td>"
            f"<td class='n'>{_number(threshold)}</td><td class='n'>{kept}</td><td class='n'>{plus}</td></tr>"
        )
    direction = "keeps at least" if rule.keep == "min" else "keeps at most"
    return (
        f"<table class='what-if' id='what-if-{rule.name}'><caption><code>filter.{rule.name}</code> "
        f"({_text(_label(rule.score))}, {direction})</caption>"
        "<tr><th>setting</th><th>threshold</th><th>kept</th><th>plus up to</th></tr>"
        f"{''.join(body)}</table>"
    )


def _setting_text(tried: Try, rule: Rule, dropped: int, scored: int) -> str:
    if tried.setting is None:
        return "off"
    if not tried.share:  # as configured
        return _percent(tried.setting) if rule.relative else _number(tried.setting)
    if rule.relative:
        return f"drop {_percent(tried.setting)}"
    return f"{_number(tried.setting)} (alone drops {dropped} of {scored})"


# --- copies --------------------------------------------------------------------------------------------------


def _copies_section(tally: Tally, thumbnails: Thumbnails) -> str:
    """The first copies (`dedup`), each group side by side: the clip that stays, then its copies."""
    if not tally.copies:
        return ""
    groups: dict[str, list[dict]] = {}
    for row in tally.copies:
        groups.setdefault(copy_order(row)[0], []).append(row)
    total = tally.sheets[DUPLICATE].count
    more = f" (the first {len(tally.copies)} of {total} shown)" if total > len(tally.copies) else ""
    rows = []
    for original, copies in groups.items():
        kept = tally.originals.get(original)
        first = _card(kept, thumbnails) if kept else f"<div class='placeholder'>{_text(original)}: not found</div>"
        copies_html = "".join(_card(row, thumbnails) for row in copies)
        rows.append(f"<div class='cards copies'><div class='stays'>{first}</div>{copies_html}</div>")
    return (
        f"<section id='copies'><h2>Copies side by side{more}</h2><p class='note'>Each row: the clip that stays "
        f"(first by <code>dedup.keep</code>), then the clips rejected as its copies.</p>{''.join(rows)}</section>"
    )


# --- contact sheets ------------------------------------------------------------------------------------------


def _sheet(anchor: str, heading: str, sheet: Sheet, thumbnails: Thumbnails, limit: int) -> str:
    more = f" ({sheet.count - limit} more not shown)" if sheet.count > limit else ""
    items = "".join(_card(row, thumbnails) for row in sheet.first)
    empty = "" if sheet.count else "<p class='note'>none</p>"
    return (
        f"<section class='sheet' id='{_text(anchor)}'><h3>{_text(heading)}: {sheet.count}{more}</h3>{empty}"
        f"<div class='cards'>{items}</div></section>"
    )


def _card(row: dict, thumbnails: Thumbnails) -> str:
    """A clip of a sheet: a row of `tally.COLUMNS` with the reasons of the sheet's filter."""
    key = row[Column.KEY]
    scores = " &middot; ".join(f"{_text(_label(score))} {_number(row.get(score))}" for score in SCORES)
    reasons = "".join(f"<div class='why'>{_reason_text(reason)}</div>" for reason in row[Column.REJECT_REASONS])
    caption = row.get(Column.CAPTION)
    caption_html = f"<q>{_text(caption)}</q>" if caption else "<span class='note'>no caption</span>"
    return (
        f"<figure class='card' data-key='{_text(key)}'>{_image(row, thumbnails)}<figcaption>"
        f"<b>{_text(key)}</b><br><span class='scores'>{scores}</span>{reasons}{caption_html}"
        "</figcaption></figure>"
    )


def _image(row: dict, thumbnails: Thumbnails) -> str:
    made = thumbnails.of(row)
    if made.jpeg is None:
        return f"<div class='placeholder' style='width:{thumbnails.width}px'>{_text(made.problem)}</div>"
    encoded = base64.b64encode(made.jpeg).decode("ascii")
    return f"<img src='data:image/jpeg;base64,{encoded}' alt='{_text(row[Column.KEY])}'>"


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
.copies {{ border-top: 1px solid #eee; padding-top: 6px; }}
.stays {{ outline: 2px solid {KEPT_COLOUR}; }}
</style></head>
<body>
{body}
</body></html>
"""


# --- text ----------------------------------------------------------------------------------------------------


def _text(value) -> str:
    """Anything shown on the page, escaped: captions and keys come from models and file names."""
    return html.escape(str(value), quote=True)


def _label(score: Column) -> str:
    return SCORE_LABELS.get(score, score)


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) and not isinstance(value, bool) else "&ndash;"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"


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
    if reason.get("filter") == DUPLICATE:
        return f"{DUPLICATE} of {_text(reason.get('of'))} ({_percent(reason.get('similarity') or 0)} of frames alike)"
    if reason.get("filter") == DECODE_FAILED:
        return f"{DECODE_FAILED}: {_text(reason.get('error') or 'the clip file could not be read back')}"
    return f"{_text(reason['filter'])}: {_number(reason.get('value'))} vs {_number(reason.get('threshold'))}"
