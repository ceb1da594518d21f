"""Reading a finished run from OUT: that it holds one, its config (with `--set` overrides), rows and summary.

A problem with OUT is one `ReportError` line for the user.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from curation.config import CurationConfig
from curation.config_io import load_config
from pipelines.layout import CLIPS_TABLE, CONFIG_FILE, SOURCES_FILE, SUMMARY_FILE
from pipelines.outputs import read_clips_table
from pipelines.storage import Folder, LocationError

RUN_FILES = (CLIPS_TABLE, SUMMARY_FILE, CONFIG_FILE)


class ReportError(ValueError):
    """An OUT that holds no finished run, or an override `svd report` cannot honour (one line for the user)."""


def open_run(output_dir: str | Path) -> Folder:
    """OUT (a path or a URL, `pipelines/storage.py`), once it is known to hold a finished run."""
    try:
        output = Folder(str(output_dir))
    except LocationError as error:
        raise ReportError(str(error)) from None
    if not output.exists(""):
        raise ReportError(f"{output.url()}: no such folder")
    missing = [name for name in RUN_FILES if not output.exists(name)]
    if missing:
        raise ReportError(
            f"{output.url()}: no finished svd curate run here ({', '.join(missing)} missing): "
            "run or finish svd curate first"
        )
    return output


def read_configs(
    output: Folder, config: CurationConfig | None, overrides: Sequence[str]
) -> tuple[CurationConfig, CurationConfig | None]:
    """The run's config (`config` when the caller holds it, else OUT/config.yaml) and, with `overrides`,
    OUT/config.yaml with them applied (None without)."""
    with output.local_file(CONFIG_FILE) as saved:
        config = config or load_config(CurationConfig, saved)
        proposed = load_config(CurationConfig, saved, overrides) if overrides else None
    return config, proposed


def read_rows(output: Folder) -> list[dict]:
    """The rows of clips.parquet, in the run's input order; a damaged file is one line."""
    try:
        return read_clips_table(output).to_pylist()
    except (OSError, pa.ArrowException) as error:
        raise ReportError(f"{output.url(CLIPS_TABLE)}: cannot be read as the run's clip table: {error}") from None


def read_summary(output: Folder) -> dict:
    """summary.json, checked to hold the counts per stage."""
    where = output.url(SUMMARY_FILE)
    try:
        summary = json.loads(output.read_text(SUMMARY_FILE))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReportError(f"{where}: cannot be read: {error}") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("counts"), dict):
        raise ReportError(f"{where}: not a summary.json of svd curate (no counts)")
    return summary


def read_sources(output: Folder, limit: int) -> list[dict]:
    """The first `limit` lines of sources.jsonl (each source's frames and where they went), read a line at a
    time; [] for a run written before it existed."""
    if not output.exists(SOURCES_FILE):
        return []
    where = output.url(SOURCES_FILE)
    first: list[dict] = []
    try:
        with output.open(SOURCES_FILE) as file:
            for line in file:
                if len(first) >= limit:
                    break
                if line.strip():
                    first.append(json.loads(line))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReportError(f"{where}: cannot be read: {error}") from None
    return first
