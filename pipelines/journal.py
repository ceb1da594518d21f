"""What a curation run has finished, kept in OUT/.work/ so that the same command resumes where it stopped.

Two files per finished input, written only once every clip of that input has been through every stage, each
atomically (`Folder.write_bytes`: temporary name, then move): its clip rows as Parquet (`ROW_SCHEMA`, in clip
order), then a small JSON entry (counts, where its frames went, its error, the node that split it). The entry
is what marks the input done, so an input either has its complete result in OUT or is done again from the
start. The output phase (`outputs.py`) reads the rows from these files, in tasks; the driver reads the entries
only, so what it holds grows with the inputs, not with their clips.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from curation.record import Column, rows_table
from pipelines.layout import WORK_FOLDER
from pipelines.storage import Folder, without_credentials


@dataclass
class InputResult:
    """Everything one input produced: its clip rows (records, scores, captions), or why it failed.

    Loaded back from the journal (`RunJournal.load`) it carries no rows, only how many (`clips`).
    """

    source: str
    rows: list[dict] = field(default_factory=list)
    error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    fates: list[list] = field(default_factory=list)  # [start, end, fate] of every frame (curation/split/fates.py)
    node: str = ""  # the Ray node that split it, for tracing a cluster run
    clips: int = 0

    def add(self, row: dict) -> None:
        """Take in one row of the stages (`pipelines/workers.py`): its counts, error and clip record."""
        for name, value in json.loads(row["counts"]).items():
            self.counts[name] = self.counts.get(name, 0) + value
        self.fates += json.loads(row["fates"])
        if row["error"]:
            self.error = row["error"]
        if row["clip"]:
            self.rows.append(json.loads(row["clip"]))
            self.clips += 1


class RunJournal:
    def __init__(self, output: Folder):
        self.output = output

    def is_done(self, source: str) -> bool:
        return self.output.exists(self._name(source, "json"))

    def record(self, result: InputResult) -> None:
        """File a finished input: its rows first, then the entry that marks it done."""
        rows = sorted(result.rows, key=lambda row: row[Column.CLIP_INDEX])
        buffer = pa.BufferOutputStream()
        pq.write_table(rows_table(rows), buffer)
        self.output.write_bytes(self._name(result.source, "parquet"), buffer.getvalue().to_pybytes())
        entry = {**asdict(result), "rows": [], "clips": len(rows), "source": without_credentials(result.source)}
        self.output.write_text(self._name(result.source, "json"), json.dumps(entry, ensure_ascii=False))

    def load(self, source: str) -> InputResult:
        """A finished input's entry, without its rows."""
        return InputResult(**json.loads(self.output.read_text(self._name(source, "json"))))

    def rows(self, source: str, columns: list[str] | None = None) -> pa.Table:
        """A finished input's rows (or some of their columns), in clip order."""
        data = self.output.read_bytes(self._name(source, "parquet"))
        return pq.read_table(pa.BufferReader(data), columns=columns)

    @staticmethod
    def _name(source: str, suffix: str) -> str:
        """Named by the source without credentials: a changed password is still the same input."""
        digest = hashlib.sha256(without_credentials(source).encode()).hexdigest()[:24]
        return f"{WORK_FOLDER}/inputs/{digest}.{suffix}"
