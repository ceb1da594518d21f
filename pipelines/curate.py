"""`svd curate`: compose the curation stages over many sources and write the output contract.

For now the stages run in a plain loop on this machine; the Ray Data job (streaming stages, actor pools,
resume) replaces the loop without changing what is written. Outputs, in OUT:
clips/KEY.mp4, clips.parquet, errors.jsonl, summary.json, config.yaml (see README).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curation.config import CurationConfig
from curation.config_io import save_config
from curation.progress import track
from curation.split import split_video
from curation.video_io import VideoError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {
    ".mp4",
    ".m4v",
    ".mov",
    ".mkv",
    ".webm",
    ".avi",
    ".ts",
    ".mts",
    ".m2ts",
    ".flv",
    ".wmv",
    ".mpg",
    ".mpeg",
}
# Stages whose implementation has not landed yet; enabling one is refused rather than faked.
NOT_YET_AVAILABLE = ("motion", "ocr", "clip", "caption")


class InputError(ValueError):
    """An INPUT argument that names nothing usable (a user mistake, reported in one line)."""


@dataclass
class CurationResult:
    clips: int = 0
    failed_inputs: int = 0
    counts: dict[str, int] = field(default_factory=dict)


def find_inputs(inputs: list[str]) -> list[Path]:
    """Expand INPUT arguments: files as given, folders recursively (video suffixes), .txt files as lists."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        elif path.suffix.lower() == ".txt" and path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            found += [Path(line.strip()) for line in lines if line.strip() and not line.lstrip().startswith("#")]
        elif path.exists():
            found.append(path)
        else:
            raise InputError(f"{item}: no such file or folder")
    unique = list(dict.fromkeys(found))
    if not unique:
        raise InputError(f"no video files found in {', '.join(inputs)}")
    return unique


def check_stages(config: CurationConfig) -> None:
    enabled = [name for name in NOT_YET_AVAILABLE if getattr(config, name).enabled]
    if enabled:
        switches = " ".join(f"--set {name}.enabled=false" for name in enabled)
        raise InputError(f"stage(s) {', '.join(enabled)} not available yet: run with {switches}")


def run_curation(inputs: list[Path], output_dir: Path, config: CurationConfig) -> CurationResult:
    """Split every input into clips and write the outputs; a bad input becomes a line of errors.jsonl."""
    check_stages(config)
    output_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, output_dir / "config.yaml")
    clips_dir = output_dir / "clips"
    rows: list[dict] = []
    errors: list[dict] = []
    counts: dict[str, int] = {"inputs": len(inputs)}
    for source in track(inputs, total=len(inputs), description="split", unit="videos"):
        try:
            result = split_video(source, clips_dir, output_dir, config.split)
        except VideoError as error:
            log.warning("%s: %s", source, error)
            errors.append({"input": str(source), "error": str(error)})
            continue
        for name, value in result.counts.items():
            counts[name] = counts.get(name, 0) + value
        rows += [{**clip.to_dict(), "kept": True, "reject_reasons": []} for clip in result.clips]
    counts["failed_inputs"] = len(errors)
    counts["kept"] = len(rows)
    _write_parquet(rows, output_dir / "clips.parquet")
    _write_lines(errors, output_dir / "errors.jsonl")
    _write_json({"counts": counts}, output_dir / "summary.json")
    return CurationResult(clips=len(rows), failed_inputs=len(errors), counts=counts)


def _write_parquet(rows: list[dict], path: Path) -> None:
    table = pa.Table.from_pylist(rows) if rows else pa.table({"key": pa.array([], pa.string())})
    temporary = path.with_name(path.name + ".part")
    pq.write_table(table, temporary)
    os.replace(temporary, path)


def _write_lines(records: list[dict], path: Path) -> None:
    text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    path.write_text(text, encoding="utf-8")


def _write_json(data: dict, path: Path) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
