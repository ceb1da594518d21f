"""What a curation run has finished, kept in OUT/.work/ so that the same command resumes where it stopped.

The last task of the stages files the rows it holds as one Parquet fragment (`write_fragment`:
.work/rows/DIGEST.parquet, `ROW_SCHEMA`, named by the rows' keys) and passes on only the fragment's name. Once
every row of an input is filed, the driver writes the input's entry (.work/inputs/DIGEST.json: counts, where
its frames went, its error, the node that split it, the fragments that hold its rows). The entry is what marks
an input done, so an input either has its complete result in OUT or is done again from the start; a fragment
that no entry names (its input was cut short) is never read, and is removed at the end of the run. Every file
is written atomically (`Folder.write_bytes`: temporary name, then move). The output phase (`outputs.py`) reads
the rows in its tasks; the driver reads the entries only, so what it holds grows with the inputs, not with
their clips.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.record import Column, rows_table
from pipelines.layout import WORK_FOLDER
from pipelines.storage import Folder, without_credentials

ROWS_FOLDER = f"{WORK_FOLDER}/rows"
COMPLETE_FILE = f"{WORK_FOLDER}/complete.json"  # written once every output of the run is
THUMBNAIL = "thumbnail"  # a fragment's column beside the clip rows' (`ROW_SCHEMA`)


@dataclass
class InputResult:
    """What one input produced: how many clip rows and the fragments that hold them, or why it failed."""

    source: str
    error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    fates: list[list] = field(default_factory=list)  # [start, end, fate] of every frame (curation/split/fates.py)
    node: str = ""  # the Ray node that split it, for tracing a cluster run
    clips: int = 0
    fragments: list[str] = field(default_factory=list)  # names under ROWS_FOLDER, sorted
    duplicate_of: str | None = None  # the earlier input that is the same file (`dedup.exact`): not split

    def add(self, row: dict) -> None:
        """Take in one filed row of the stages (`pipelines.workers.file_rows`): its counts, error and fragment."""
        for name, value in json.loads(row["counts"]).items():
            self.counts[name] = self.counts.get(name, 0) + value
        self.fates += json.loads(row["fates"])
        if row["error"]:
            self.error = row["error"]
        if row["fragment"]:
            self.clips += 1
            if row["fragment"] not in self.fragments:
                self.fragments = sorted([*self.fragments, row["fragment"]])


def write_fragment(output: Folder, rows: list[dict], thumbnails: list[bytes] | None = None) -> str:
    """File clip rows, and their thumbnails (JPEG, b"" for none) in a `THUMBNAIL` column, as one fragment; its
    name, which depends only on the rows' keys (a task run again writes the same file again)."""
    digest = hashlib.sha256("\n".join(sorted(row[Column.KEY] for row in rows)).encode()).hexdigest()[:24]
    name = f"{digest}.parquet"
    thumbnails = [b""] * len(rows) if thumbnails is None else thumbnails
    table = rows_table(rows).append_column(THUMBNAIL, pa.array(thumbnails, pa.binary()))
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    output.write_bytes(f"{ROWS_FOLDER}/{name}", buffer.getvalue().to_pybytes())
    return name


class RunJournal:
    def __init__(self, output: Folder):
        self.output = output

    def is_done(self, source: str) -> bool:
        return self.output.exists(self._name(source))

    def record(self, result: InputResult) -> None:
        """File a finished input's entry: from now on it is done."""
        entry = {**asdict(result), "source": without_credentials(result.source)}
        self.output.write_text(self._name(result.source), json.dumps(entry, ensure_ascii=False))

    def load(self, source: str) -> InputResult:
        return InputResult(**json.loads(self.output.read_text(self._name(source))))

    def rows(self, entries: list[InputResult], columns: list[str] | None = None) -> tuple[pa.Table, np.ndarray]:
        """The rows of finished inputs (`entries`, in run order), or some of their columns, in run order (input,
        then clip), reading each of their fragments once; and for each row the position of its input in
        `entries`."""
        wanted = None if columns is None else list(dict.fromkeys([*columns, Column.SOURCE, Column.CLIP_INDEX]))
        names = sorted({name for entry in entries for name in entry.fragments})
        parts = [
            pq.read_table(pa.BufferReader(self.output.read_bytes(f"{ROWS_FOLDER}/{name}")), columns=wanted)
            for name in names
        ]
        if not parts:
            empty = rows_table([])
            return (empty if columns is None else empty.select(columns)), np.empty(0, np.int64)
        table = pa.concat_tables(parts)
        sources = pa.array([entry.source for entry in entries], pa.string())
        # A fragment also holds rows of inputs outside `entries` (or of an attempt cut short): those are -1.
        position = pc.fill_null(pc.index_in(table[Column.SOURCE.value], value_set=sources), -1).to_numpy()
        keep = np.flatnonzero(position >= 0)
        clip_index = table[Column.CLIP_INDEX.value].to_numpy()[keep]
        order = np.lexsort((clip_index, position[keep]))
        table, position = table.take(keep[order]), position[keep][order].astype(np.int64)
        return (table if columns is None else table.select(columns)), position

    def remove_fragments_except(self, used: set[str]) -> None:
        """Remove the fragments no finished input names (rows of an attempt that was cut short)."""
        for name in self.output.list(ROWS_FOLDER, "*.parquet"):
            if name not in used:
                self.output.remove(f"{ROWS_FOLDER}/{name}")

    def mark_complete(self, sources: list[str]) -> None:
        """Every output of a run of these inputs is written (what `completed` reads)."""
        self.output.write_text(COMPLETE_FILE, json.dumps({"inputs": _inputs_digest(sources)}))

    def completed(self, sources: list[str]) -> bool | None:
        """Whether OUT's outputs are complete for these inputs: True; for other inputs: False; None: not complete."""
        if not self.output.exists(COMPLETE_FILE):
            return None
        return json.loads(self.output.read_text(COMPLETE_FILE))["inputs"] == _inputs_digest(sources)

    def reopen(self) -> None:
        """The outputs are to be written again (more inputs)."""
        self.output.remove(COMPLETE_FILE)

    @staticmethod
    def _name(source: str) -> str:
        """Named by the source without credentials: a changed password is still the same input."""
        digest = hashlib.sha256(without_credentials(source).encode()).hexdigest()[:24]
        return f"{WORK_FOLDER}/inputs/{digest}.json"


def _inputs_digest(sources: list[str]) -> str:
    return hashlib.sha256("\n".join(without_credentials(source) for source in sources).encode()).hexdigest()
