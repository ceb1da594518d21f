"""What a curation run has finished, kept in OUT/.work/ so that the same command resumes where it stopped.

One file per finished input, written only once every clip of that input has been through every stage,
and atomically (temporary name, then rename): an input either has its complete result on disk or is done
again from the start. Shards are written from these files at the end of the run, so a run that was killed
and resumed writes exactly the shards an uninterrupted run writes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

WORK_FOLDER = ".work"


@dataclass
class InputResult:
    """Everything one input produced: its clip rows (records, scores, captions), or why it failed."""

    source: str
    rows: list[dict] = field(default_factory=list)
    error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    node: str = ""  # the Ray node that split it, for tracing a cluster run


class RunJournal:
    def __init__(self, output_dir: Path):
        self.folder = output_dir / WORK_FOLDER / "inputs"
        self.folder.mkdir(parents=True, exist_ok=True)

    def is_done(self, source: str) -> bool:
        return self._path(source).is_file()

    def record(self, result: InputResult) -> None:
        path = self._path(result.source)
        partial = path.with_name(path.name + ".part")
        partial.write_text(json.dumps(asdict(result), ensure_ascii=False), encoding="utf-8")
        os.replace(partial, path)

    def load(self, source: str) -> InputResult:
        return InputResult(**json.loads(self._path(source).read_text(encoding="utf-8")))

    def _path(self, source: str) -> Path:
        return self.folder / f"{hashlib.sha256(source.encode()).hexdigest()[:24]}.json"
