"""Reading a finished run from OUT: that it holds one, its config (with `--set` overrides), summary, sources and
the parts of its clip table.

A problem with OUT is one `ReportError` line for the user.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.config import CurationConfig
from curation.config_io import load_config
from curation.record import ROW_SCHEMA
from pipelines.layout import CLIPS_TABLE, CONFIG_FILE, SOURCES_FILE, SUMMARY_FILE
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


@dataclass(frozen=True)
class Part:
    """One Parquet file of clips.parquet, read by one task of the report's passes (a `selection.Piece`)."""

    index: int
    path: str  # relative to OUT

    @property
    def ranks(self) -> tuple[int, ...]:
        # The parts are in run order and each holds its rows in run order: a part's number is where it stands.
        return (self.index,)


def clip_parts(output: Folder) -> list[Part]:
    """The parts of clips.parquet in run order (one, the file itself, for a run written before parts)."""
    if not output.is_folder(CLIPS_TABLE):
        return [Part(0, CLIPS_TABLE)]
    names = output.list(CLIPS_TABLE, "part-*.parquet")
    return [Part(index, f"{CLIPS_TABLE}/{name}") for index, name in enumerate(names)]


def read_part(output_dir: str, part: Part, columns: list[str]) -> tuple[pa.Table, np.ndarray]:
    """`columns` of one part (a column the part lacks, as one written by hand may, reads as nulls), and each row's
    `Part.ranks` (`selection.Read`); a damaged file is one line."""
    output = Folder(output_dir)
    try:
        with output.open(part.path) as file:  # only the columns asked for are read
            parquet = pq.ParquetFile(file)
            present = [name for name in columns if name in parquet.schema_arrow.names]
            table = parquet.read(columns=present)
    except (OSError, pa.ArrowException) as error:
        raise ReportError(f"{output.url(part.path)}: cannot be read as the run's clip table: {error}") from None
    for name in columns:
        if name not in present:
            table = table.append_column(ROW_SCHEMA.field(name), pa.nulls(table.num_rows, ROW_SCHEMA.field(name).type))
    return table.select(columns), np.full(table.num_rows, part.index, np.int64)


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
