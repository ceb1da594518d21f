"""report.html: what a finished `svd curate` run kept and rejected, and what other thresholds would keep.

Everything comes from the run's outputs (clips.parquet, thumbnails.parquet, summary.json, sources.jsonl,
config.yaml); no score is computed again. `write_report` is what the job ends with and what `svd report` runs: it
reads OUT, re-applies the filter (with `--set filter.*` overrides) and writes OUT/report.html (OUT/config.yaml
stays the run's config).

Memory does not grow with the run: clips.parquet is read a part at a time by passes of tasks (`run`), and the
driver keeps thresholds, counts, histogram bins and each contact sheet's first clips. The layers, each using only
those after it: `read` (OUT's files), `render` (the page), which shows what `tally` counted in its pass under
`what_if`'s filters (every threshold found over the whole run first) and the clips' `thumbnails`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from curation.config import CurationConfig
from curation.config_io import ConfigError, parse_override
from pipelines.layout import REPORT_FILE
from pipelines.outputs import read_thumbnails
from pipelines.report.read import ReportError, clip_parts, open_run, read_configs, read_part, read_sources, read_summary
from pipelines.report.render import render, shown_keys
from pipelines.report.tally import NEWLY_KEPT, NEWLY_REJECTED, count
from pipelines.report.thumbnails import Thumbnails
from pipelines.report.what_if import calibrate
from pipelines.selection import Run, run_here

__all__ = ["ReportError", "ReportSummary", "write_report"]

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
    output_dir: str | Path,
    config: CurationConfig | None = None,
    overrides: Sequence[str] = (),
    run: Run = run_here,
) -> ReportSummary:
    """Rebuild OUT/report.html from a finished run, with `--set filter.*` overrides shown beside the run's filter.

    OUT is a path or a URL (`pipelines/storage.py`). `config` is the run's config when the caller holds it
    (default: OUT/config.yaml); the overrides apply on top of OUT/config.yaml and are never written to it.
    `run` runs the passes over the parts of clips.parquet (`selection.Run`: here, or Ray tasks in the job).
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
    # 2. Read what the driver holds whole: the configs, summary.json, the sources whose timelines are drawn.
    config, proposed = read_configs(output, config, overrides)
    summary = read_summary(output)
    settings = (proposed or config).report
    sources = read_sources(output, settings.timelines)
    # 3. The passes over clips.parquet: every threshold, then what the page counts and shows.
    parts = clip_parts(output)
    read = functools.partial(read_part, output.location)
    filters = calibrate(config, proposed, overrides, read, parts, run)
    tally = count(filters, settings, [source["source"] for source in sources], read, parts, run)
    # 4. Thumbnails of the clips shown, the page.
    saved = read_thumbnails(output, shown_keys(tally, filters))
    thumbnails = Thumbnails(output.read_bytes, settings.thumbnail_width, saved)
    title = PurePosixPath(output.url()).name
    output.write_text(REPORT_FILE, render(tally, filters, summary, settings, title, sources, thumbnails))
    compared = filters.after is not None
    return ReportSummary(
        output.url(REPORT_FILE),
        clips=tally.clips,
        kept=tally.kept,
        overrides=filters.overrides,
        kept_with_overrides=tally.after_kept if compared else None,
        unknown_with_overrides=tally.after_unknown if compared else None,
        newly_kept=tally.sheets[NEWLY_KEPT].count if compared else 0,
        newly_rejected=tally.sheets[NEWLY_REJECTED].count if compared else 0,
    )
