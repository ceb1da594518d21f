"""What a curation run has finished, kept in OUT/.work/ so that the same command resumes where it stopped.

One file per finished input, written only once every clip of that input has been through every stage,
and atomically (`Folder.write_bytes`: temporary name, then move): an input either has its complete result
in OUT or is done again from the start. Shards are written from these files at the end of the run, so a run that was killed
and resumed writes exactly the shards an uninterrupted run writes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from pipelines.layout import WORK_FOLDER
from pipelines.storage import Folder, without_credentials


@dataclass
class InputResult:
    """Everything one input produced: its clip rows (records, scores, captions), or why it failed."""

    source: str
    rows: list[dict] = field(default_factory=list)
    error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    fates: list[list] = field(default_factory=list)  # [start, end, fate] of every frame (curation/split/fates.py)
    node: str = ""  # the Ray node that split it, for tracing a cluster run

    def add(self, row: dict) -> None:
        """Take in one row of the stages (`pipelines/workers.py`): its counts, error and clip record."""
        for name, value in json.loads(row["counts"]).items():
            self.counts[name] = self.counts.get(name, 0) + value
        self.fates += json.loads(row["fates"])
        if row["error"]:
            self.error = row["error"]
        if row["clip"]:
            self.rows.append(json.loads(row["clip"]))


class RunJournal:
    def __init__(self, output: Folder):
        self.output = output

    def is_done(self, source: str) -> bool:
        return self.output.exists(self._name(source))

    def record(self, result: InputResult) -> None:
        entry = {**asdict(result), "source": without_credentials(result.source)}
        self.output.write_text(self._name(result.source), json.dumps(entry, ensure_ascii=False))

    def load(self, source: str) -> InputResult:
        return InputResult(**json.loads(self.output.read_text(self._name(source))))

    @staticmethod
    def _name(source: str) -> str:
        """Named by the source without credentials: a changed password is still the same input."""
        digest = hashlib.sha256(without_credentials(source).encode()).hexdigest()[:24]
        return f"{WORK_FOLDER}/inputs/{digest}.json"
