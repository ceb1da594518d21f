"""report.html: what a finished `svd curate` run kept and rejected, and what other thresholds would keep.

Everything comes from the run's outputs (clips.parquet, summary.json, config.yaml) and its clip files; no
score is computed again. `build_report` is a pure function of the rows, so the job can call it with what it
holds in memory; clip bytes come through `read_clip`, so an OUT that is not a local folder can pass another
reader. `write_report` is `svd report`: it reads OUT, re-applies the filter with `--set filter.*` overrides
and writes OUT/report.html (OUT/config.yaml stays the run's config).

The layers, each using only those after it: `read` (OUT's files), `render` (the page), which shows what
`what_if` finds (the filter re-applied to the stored scores) and the clips' `thumbnails`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from curation.config import CurationConfig
from curation.config_io import ConfigError, parse_override
from pipelines.layout import REPORT_FILE
from pipelines.outputs import read_thumbnails
from pipelines.report.read import ReportError, open_run, read_configs, read_rows, read_sources, read_summary
from pipelines.report.render import render
from pipelines.report.what_if import compare, evaluate

__all__ = ["ReportError", "ReportSummary", "build_report", "write_report"]

# `svd report` re-applies the filter to stored scores; any other section would need the clips scored again.
REPORT_SECTIONS = ("filter", "report")


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
    # 1. Check that OUT holds a finished run, and which overrides are asked for.
    output = open_run(output_dir)
    for override in overrides:
        keys, _ = parse_override(override)
        if keys[0] not in REPORT_SECTIONS:
            raise ConfigError(
                f"--set {override}: svd report only re-applies filter.* (and report.*) to the stored scores; "
                f"changing {keys[0]}.* needs the clips scored again with svd curate"
            )
    # 2. Read the run; the overrides apply on top of its saved config.
    config, proposed = read_configs(output, config, overrides)
    rows = read_rows(output)
    summary = read_summary(output)
    settings = (proposed or config).report
    sources = read_sources(output, settings.timelines)
    # 3. Compare, render, write.
    comparison = compare(rows, config, proposed, overrides)
    title = PurePosixPath(output.url()).name
    saved = functools.partial(read_thumbnails, output)
    page = render(rows, summary, config, output.read_bytes, comparison, settings, title, sources, saved)
    output.write_text(REPORT_FILE, page)
    before = comparison.before if comparison else evaluate(rows, config)
    after = comparison.after if comparison else None
    return ReportSummary(
        output.url(REPORT_FILE),
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
    sources: Sequence[dict] = (),
    read_thumbnails: Callable[[set[str]], Mapping[str, bytes]] | None = None,
) -> str:
    """The report page (self-contained HTML) of a run: `rows` as in clips.parquet, `summary` as in summary.json,
    `config` the run's. `read_clip(row[Column.PATH])` returns a clip file's bytes (its middle frame is the
    thumbnail).

    `proposed` is the run's config with `overrides` applied: the page then also shows what it would keep.
    `sources` as in sources.jsonl, its first `report.timelines` lines at least: each source's timeline (none for
    a run written before it existed).
    `read_thumbnails(keys)`: the thumbnails saved while splitting (key -> JPEG), else made from the clip files.
    """
    comparison = compare(rows, config, proposed, overrides)
    settings = (proposed or config).report
    return render(rows, summary, config, read_clip, comparison, settings, title, sources, read_thumbnails)
