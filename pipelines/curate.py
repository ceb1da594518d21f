"""`svd curate`: the curation stages as one streaming Ray Data job, and the output contract it writes.

Sources go in as paths (never as bytes through Ray's object store); each split task writes its clip files
to OUT/clips/ and passes on small records. Records stream back to this driver, which files each input's
result in OUT/.work/ once all of its clips are through (see `journal.py`). At the end the shards, the
parquet table, errors.jsonl and summary.json are written from those files. Running the same command on
the same OUT resumes: finished inputs are skipped, and the end state is that of an uninterrupted run.
Outputs in OUT: shards/, clips.parquet, errors.jsonl, summary.json, config.yaml (see README); clips/ holds
the clip files the shards were made from.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pyarrow as pa
import pyarrow.parquet as pq
import ray.data
import yaml

from curation import captions, clip_scores, ocr
from curation.caption_llm import EndpointError
from curation.config import ActorPoolConfig, CurationConfig
from curation.config_io import save_config
from curation.devices import ModelLoadError
from curation.filtering import calibrate, filter_rules, reject_reasons, thresholds_summary
from curation.progress import track
from pipelines.journal import WORK_FOLDER, InputResult, RunJournal
from pipelines.ray_runtime import ray_session
from pipelines.shards import ShardWriter, clear_shards
from pipelines.stages import (
    ClipImageStage,
    ClipTextStage,
    CocaStage,
    LlmStage,
    OcrStage,
    VBlipStage,
    motion_stage,
    split_stage,
)

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


class InputError(ValueError):
    """An INPUT argument that names nothing usable (a user mistake, reported in one line)."""


@dataclass
class CurationResult:
    clips: int = 0
    failed_inputs: int = 0
    counts: dict[str, int] = field(default_factory=dict)


def local_path(location: str) -> Path:
    """A path or a `file://` URL as a local path; other URLs (s3://, gs://, http://, ...) are refused clearly."""
    if "://" not in location:
        return Path(location)
    url = urlparse(location)
    if url.scheme == "file":
        return Path(url2pathname(url.path))
    raise InputError(f"{location}: {url.scheme}:// locations are not supported yet; copy or mount them locally")


def find_inputs(inputs: list[str]) -> list[Path]:
    """Expand INPUT arguments: files as given, folders recursively (video suffixes), .txt files as lists.

    Each may be a path or a `file://` URL.
    """
    found: list[Path] = []
    for item in inputs:
        path = local_path(item)
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


def run_curation(
    inputs: list[Path], output_dir: Path, config: CurationConfig, address: str | None = None, restart: bool = False
) -> CurationResult:
    """Curate `inputs` into `output_dir`; a bad input becomes a line of errors.jsonl, never a failed job."""
    if config.ocr.enabled:  # a model that cannot be loaded stops the run before any work
        ocr.preflight(config.ocr)
    if config.clip.enabled:
        clip_scores.preflight(config.clip)
    captions.preflight(config.caption)
    output_dir = output_dir.absolute()
    prepare_output(output_dir, config, restart)
    journal = RunJournal(output_dir)
    sources = [str(path.absolute()) for path in inputs]  # Ray workers may run in another folder
    pending = [source for source in sources if not journal.is_done(source)]
    if len(pending) < len(sources):
        log.info("resuming %s: %d of %d inputs already done", output_dir, len(sources) - len(pending), len(sources))
    if pending:
        with ray_session(address, cpus_needed(config)):
            try:
                for result in track(stream_results(pending, output_dir, config), len(pending), "curate", "videos"):
                    journal.record(result)
            except Exception as error:  # Ray wraps what a stage raised; a model that cannot load is one line
                cause = _model_problem(error)
                if cause is None:
                    raise
                raise cause from None
    return write_outputs([journal.load(source) for source in sources], output_dir, config)


def prepare_output(output_dir: Path, config: CurationConfig, restart: bool) -> None:
    """Start a new OUT, or check that the run in it has this config (else refuse, or wipe it with restart)."""
    saved = output_dir / "config.yaml"
    if saved.is_file() and not restart:
        previous = yaml.safe_load(saved.read_text(encoding="utf-8"))
        current = config.model_dump(mode="json")
        changed = sorted(_differences(previous, current))
        if changed:
            raise InputError(
                f"{output_dir} holds a run with another config (differs in {', '.join(changed[:5])}): "
                "pass --restart to discard it and start again, or choose another -o"
            )
    elif restart:
        for name in (WORK_FOLDER, "shards", "clips"):
            shutil.rmtree(output_dir / name, ignore_errors=True)
        for name in ("clips.parquet", "errors.jsonl", "summary.json", "report.html", "config.yaml"):
            (output_dir / name).unlink(missing_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, saved)


def stream_results(sources: list[str], output_dir: Path, config: CurationConfig):
    """Run the stages on Ray and yield each input's `InputResult` as soon as all of its clips are through."""
    stage_args = {"output_dir": str(output_dir), "config": config}
    dataset = ray.data.from_items([{"source": source} for source in sources], override_num_blocks=len(sources))
    dataset = dataset.flat_map(split_stage, fn_kwargs=stage_args, num_cpus=config.ray.split_cpus)
    if config.motion.enabled or config.ocr.enabled or config.clip.enabled or config.caption.enabled:
        dataset = dataset.map(motion_stage, fn_kwargs=stage_args, num_cpus=config.ray.motion_cpus)
    actor_stages = [(stage, pool) for stage, enabled, pool in model_stages(config) if enabled]
    for stage, pool in actor_stages:
        dataset = dataset.map_batches(
            stage,
            fn_constructor_kwargs={"config": config},
            batch_size=pool.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=pool.concurrency),
            num_cpus=pool.num_cpus,
            num_gpus=pool.num_gpus,
        )
    # Frames and embeddings have served their stages: only the records come back to this driver.
    dataset = dataset.select_columns(["source", "clips_in_source", "clip", "error", "counts", "node"])
    waiting: dict[str, InputResult] = {}
    for row in dataset.iter_rows():
        result = waiting.setdefault(row["source"], InputResult(row["source"], node=row["node"]))
        for name, value in json.loads(row["counts"]).items():
            result.counts[name] = result.counts.get(name, 0) + value
        if row["error"]:
            result.error = row["error"]
        if row["clip"]:
            result.rows.append(json.loads(row["clip"]))
        if len(result.rows) == row["clips_in_source"]:
            yield waiting.pop(row["source"])


def model_stages(config: CurationConfig) -> list[tuple[type, bool, ActorPoolConfig]]:
    """The actor-pool stages in pipeline order, whether each runs, and its pool's resources."""
    caption = config.caption
    return [
        (OcrStage, config.ocr.enabled, config.ray.ocr),
        (ClipImageStage, config.clip.enabled, config.ray.clip),
        (CocaStage, caption.enabled and caption.coca.enabled, config.ray.coca),
        (VBlipStage, caption.enabled and caption.vblip.enabled, config.ray.vblip),
        (LlmStage, caption.enabled, config.ray.llm),
        (ClipTextStage, config.clip.enabled and caption.enabled, config.ray.clip),
    ]


def cpus_needed(config: CurationConfig) -> float:
    """CPUs held at once: every actor of every pool, plus one split and one motion task."""
    actors = sum(pool.num_cpus * pool.concurrency for _, enabled, pool in model_stages(config) if enabled)
    return actors + config.ray.split_cpus + config.ray.motion_cpus


def write_outputs(results: list[InputResult], output_dir: Path, config: CurationConfig) -> CurationResult:
    """Shards, clips.parquet, errors.jsonl and summary.json from every input's result, in input order."""
    rows = [row for result in results for row in result.rows]
    errors = [{"input": result.source, "error": result.error} for result in results if result.error]
    counts: dict[str, int] = {"inputs": len(results)}
    for result in results:
        for name, value in result.counts.items():
            counts[name] = counts.get(name, 0) + value
    rules = apply_filter(rows, config)
    kept = sorted((row for row in rows if row["kept"]), key=lambda row: row["key"])
    shards = write_shards(kept, output_dir, config)
    counts.update(failed_inputs=len(errors), kept=len(kept), rejected=len(rows) - len(kept), shards=len(shards))
    for row in rows:
        for reason in row["reject_reasons"]:
            counts[f"rejected_by_{reason['filter']}"] = counts.get(f"rejected_by_{reason['filter']}", 0) + 1
    _write_parquet(rows, output_dir / "clips.parquet")
    _write_lines(errors, output_dir / "errors.jsonl")
    _write_json({"counts": counts, "thresholds": thresholds_summary(rules)}, output_dir / "summary.json")
    return CurationResult(clips=len(kept), failed_inputs=len(errors), counts=counts)


def apply_filter(rows: list[dict], config: CurationConfig) -> list:
    """Every rule over the whole run: relative thresholds from the scores (all of them, or the first
    `filter.calibration_clips`), then each clip's reasons.

    Absolute rules already ran early in the stream (so rejected clips skipped later stages); running them
    again here gives the same reasons, and the relative ones are added. Returns the calibrated rules.
    """
    rules = filter_rules(config.filter)
    scores = {}
    for rule in rules:
        values = [row[rule.score] for row in rows if row.get(rule.score) is not None]
        scores[rule.score] = values[: config.filter.calibration_clips]  # the first N scored, in input order
    rules = calibrate(rules, scores)
    for row in rows:
        early = [reason for reason in row["reject_reasons"] if reason["filter"] == "decode"]
        row["reject_reasons"] = early + [reason.to_dict() for reason in reject_reasons(row, rules)]
        row["kept"] = not row["reject_reasons"]
    return rules


def write_shards(kept: list[dict], output_dir: Path, config: CurationConfig) -> list[str]:
    """All shards of the run, rewritten from the records: a resumed run gives the same shards."""
    folder = output_dir / "shards"
    clear_shards(folder)
    writer = ShardWriter(folder, config.output.shard_max_samples, config.output.shard_max_bytes)
    for row in kept:
        video = (output_dir / row["path"]).read_bytes()
        record = {name: value for name, value in row.items() if name not in ("path", "kept", "reject_reasons")}
        writer.write(row["key"], video, record, row.get("caption") or "")
    return writer.close()


def _model_problem(error: BaseException) -> BaseException | None:
    """The ModelLoadError or EndpointError behind an error that Ray raised for a stage, if there is one."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        original = getattr(error, "cause", None)  # a RayTaskError holds the stage's own exception here
        if type(error) in (ModelLoadError, EndpointError):
            return error
        error = original if isinstance(original, BaseException) else error.__cause__
    return None


def _differences(old, new, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            difference
            for name in sorted(set(old) | set(new))
            for difference in _differences(old.get(name), new.get(name), f"{prefix}{name}.")
        ]
    return [] if old == new else [prefix.rstrip(".")]


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
