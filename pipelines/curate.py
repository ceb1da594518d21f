"""`svd curate`: the curation stages as one streaming Ray Data job, and the output contract it writes.

Sources go in as paths or URLs (never as bytes through Ray's object store); each split task writes its
clip files to OUT/clips/ and passes on small records; after the last stage a filing task writes each batch of
records as a Parquet fragment under OUT/.work/ and passes on only the fragment's name (`journal.py`). INPUT and
OUT may be local or any fsspec URL (`storage.py`). This driver files an input's entry once all of its clips
are through. Then the output phase's tasks (`outputs.py`) find the relative thresholds, write the shards and
the parts of clips.parquet and thumbnails.parquet; the driver writes errors.jsonl, sources.jsonl and
summary.json, and the report's tasks report.html (`pipelines/report`); the driver then marks the run complete
and has the clip files that `output.clip_files` does not keep removed. Running the same command on the same
OUT resumes: finished inputs are skipped, and the end state is that of an uninterrupted run. Outputs in OUT:
see the README's output contract.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np
import ray
import ray.data
import yaml

from curation.captions import text as captions
from curation.config import CurationConfig
from curation.config_io import config_text
from curation.errors import EndpointError, ModelLoadError
from curation.filtering import thresholds_summary
from curation.progress import track
from curation.record import Stage
from curation.run_lock import run_lock
from curation.split.fates import CLIP, FATE_COUNTS, FATES
from curation.stages import cpus_needed, enabled_stages, reads_frames
from curation.tiny_models import resolve_tiny
from pipelines.copies import find_copies
from pipelines.journal import InputResult, RunJournal
from pipelines.layout import (
    CLIPS_FOLDER,
    CONFIG_FILE,
    ERRORS_FILE,
    OUTPUT_FILES,
    SHARDS_FOLDER,
    SOURCES_FILE,
    SUMMARY_FILE,
    WORK_FOLDER,
)
from pipelines.outputs import (
    GroupOutcome,
    plan_groups,
    remove_clip_files,
    write_grouped_outputs,
)
from pipelines.ray_runtime import ray_session
from pipelines.report import write_report
from pipelines.selection import Run, run_here
from pipelines.stage_stats import StageStats
from pipelines.storage import Folder, LocationError, filesystem, find_files, normalise, without_credentials
from pipelines.workers import WORKERS, file_rows

log = logging.getLogger(__name__)

SKIPPED_NAMED = 10  # skipped files named in the log line (all of them go to summary.json)
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


# The filing task after the last stage writes a fragment of records: light work, so it reserves no CPU. With
# any (0.25 measured), Ray Data reserves part of the CPUs for it and ran one split task at a time on 2 CPUs
# where two ran before: the stream took 42-45 s instead of 30-33 s (BENCHMARKS.md, "Output phase at scale").
FILING_CPUS = 0.0


class InputError(ValueError):
    """An INPUT or OUT argument that names nothing usable (a user mistake, reported in one line)."""


@dataclass
class CurationResult:
    clips: int = 0
    failed_inputs: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    # Wall seconds of the driver's phases: preflight, ray_start, stages, ray_stop, outputs (shards and report
    # inside it); what `benchmarks/curate_speed.py` reports beside the stages' own times.
    seconds: dict[str, float] = field(default_factory=dict)


def find_inputs(inputs: list[str], skipped: list[str] | None = None) -> list[str]:
    """Expand INPUT arguments: files as given, folders recursively (video suffixes), .txt files as lists.

    Each may be a local path or a URL (`file://`, or any scheme fsspec has a filesystem for). Local
    sources come back as absolute paths, URLs as URLs. The files of a folder that are not videos by their
    suffix are logged in one line and appended to `skipped`, when given (`run_curation` counts them).
    """
    found: list[str] = []
    others: list[str] = []
    for item in inputs:
        try:
            in_folder = find_files(item, VIDEO_SUFFIXES, others)
            if in_folder is not None:
                found += in_folder
                continue
            fs, path = filesystem(item)
            if not fs.isfile(path):
                raise InputError(f"{item}: no such file or folder")
            if path.lower().endswith(".txt"):
                lines = fs.cat_file(path).decode("utf-8").splitlines()
                found += [
                    normalise(line.strip()) for line in lines if line.strip() and not line.lstrip().startswith("#")
                ]
            else:
                found.append(normalise(item))
        except LocationError as error:
            raise InputError(str(error)) from None
    if others:
        names = ", ".join(PurePosixPath(other).name for other in others[:SKIPPED_NAMED])
        more = f" and {len(others) - SKIPPED_NAMED} more" if len(others) > SKIPPED_NAMED else ""
        log.warning("%d file(s) skipped (not a video by suffix: %s%s)", len(others), names, more)
        if skipped is not None:
            skipped += [without_credentials(other) for other in others]
    unique = list(dict.fromkeys(found))
    if not unique:
        raise InputError(f"no video files found in {', '.join(inputs)}")
    return unique


def run_curation(
    inputs: list[str | Path],
    output_dir: str | Path,
    config: CurationConfig,
    address: str | None = None,
    restart: bool = False,
    workers: Mapping[Stage, Callable] = WORKERS,
    use_ray: bool = True,
    skipped: Sequence[str] = (),
) -> CurationResult:
    """Curate `inputs` into `output_dir` (a path or URL); a bad input becomes a line of errors.jsonl, never
    a failed job. `skipped`: the files `find_inputs` passed over, counted in summary.json.

    `workers`: the function or class that runs each stage (`pipelines.workers.WORKERS`; a benchmark passes
    timed ones). `use_ray=False` runs the same stages one input after another in this process
    (`stream_results_here`), for benchmarks and debugging; the outputs are the same.
    """
    seconds: dict[str, float] = {}
    try:
        output = Folder(str(output_dir))
    except LocationError as error:
        raise InputError(str(error)) from None
    with run_lock(output.fs, output.root, "OUT"):  # FolderLocked: another job runs in OUT
        with _timed(seconds, "preflight"):
            # A model that cannot be loaded stops the run before any work. Their modules import torch and the
            # model libraries (seconds): only for the stages that run. Tiny models are built here for the check (and
            # for the workers on this machine); each worker resolves them on its own node.
            checked = resolve_tiny(config)
            if config.ocr.enabled:
                from curation.scores import ocr

                ocr.preflight(config.ocr)
            if config.clip.enabled:
                from curation.scores import openclip

                openclip.preflight(checked.clip)
            captions.preflight(checked.caption)
        prepare_output(output, config, restart)
        journal = RunJournal(output)
        sources = [normalise(str(source)) for source in inputs]  # Ray workers may run in another folder
        finished = journal.completed(sources)
        if finished:
            log.info("%s already holds the finished run of these inputs", output.url())
            clips_per_input = [(entry.source, entry.clips) for entry in map(journal.load, sources)]
            groups = plan_groups(clips_per_input, config.output.group_clips)
            keep = config.output.clip_files
            list(run_here(remove_clip_files, [(output.location, group, keep) for group in groups]))  # if cut short
            counts = json.loads(output.read_text(SUMMARY_FILE))["counts"]
            return CurationResult(counts["kept"], counts["failed_inputs"], counts, seconds)
        if finished is False:
            if config.output.clip_files != "all":
                raise InputError(
                    f"{output.url()} holds the finished run of other inputs, whose kept clips now live only in its shards "
                    f"(output.clip_files={config.output.clip_files}): curate the new inputs into another OUT, or pass "
                    "--restart to start this one again"
                )
            journal.reopen()
        pending = [source for source in sources if not journal.is_done(source)]
        if len(pending) < len(sources):
            log.info(
                "resuming %s: %d of %d inputs already done", output.url(), len(sources) - len(pending), len(sources)
            )

        def stages_then_outputs(stream: Callable, run: Run) -> CurationResult:
            """The pending inputs through the stages (`stream`: on Ray or here), each filed as it finishes; then
            the output phase's tasks (`run`) over every input. Progress shows the videos done, their clips and each
            stage's throughput; summary.json gets each stage's figures (`stage_stats.py`) for the pending inputs."""
            stages = StageStats()
            todo = pending
            if todo and config.dedup.enabled and config.dedup.exact:
                with _timed(seconds, "copies"):
                    todo = record_copies(sources, todo, journal, run)
            if todo:
                with _timed(seconds, "stages"):
                    results = track(
                        stream(todo, output, config, workers, stages),
                        len(todo),
                        "curate",
                        "videos",
                        count=lambda result: result.clips,
                        count_unit="clips",
                        details=stages.describe,
                    )
                    for result in results:
                        journal.record(result)
            with _timed(seconds, "outputs"):
                return write_outputs(sources, output, config, run, seconds, stages=stages.figures(), skipped=skipped)

        if not use_ray:
            result = stages_then_outputs(stream_results_here, run_here)
            result.seconds = seconds
            return result
        started = time.perf_counter()
        with ray_session(address, cpus_needed(config)):
            seconds["ray_start"] = time.perf_counter() - started
            try:
                result = stages_then_outputs(stream_results, run_on_ray(config.ray.output_cpus))
            except Exception as error:  # Ray wraps what a stage raised; a model that cannot load is one line
                cause = _model_problem(error)
                if cause is None:
                    raise
                raise cause from None
            stopping = time.perf_counter()
        seconds["ray_stop"] = time.perf_counter() - stopping
        result.seconds = seconds
        return result


def record_copies(sources: list[str], pending: list[str], journal: RunJournal, run: Run) -> list[str]:
    """File each pending input that is the same file as an earlier input of the run (`pipelines/copies.py`) as
    done, naming its original; the pending inputs left to split."""
    copies = find_copies(sources, run)
    for source in pending:
        if source in copies:
            original = without_credentials(copies[source])
            log.info("%s: the same file as %s, not split again", without_credentials(source), original)
            journal.record(InputResult(source, counts={"duplicate_inputs": 1}, duplicate_of=copies[source]))
    return [source for source in pending if source not in copies]


def prepare_output(output: Folder, config: CurationConfig, restart: bool) -> None:
    """Start a new OUT, or check that the run in it has this config (else refuse, or wipe it with restart)."""
    if output.exists(CONFIG_FILE) and not restart:
        previous = yaml.safe_load(output.read_text(CONFIG_FILE))
        current = config.model_dump(mode="json")
        # The report's settings change only the page, which is rewritten at the end of every run.
        changed = sorted(key for key in _differences(previous, current) if key.split(".")[0] != "report")
        if changed:
            raise InputError(
                f"{output.url()} holds a run with another config (differs in {', '.join(changed[:5])}): "
                "pass --restart to discard it and start again, or choose another -o"
            )
    elif restart:
        for name in (WORK_FOLDER, SHARDS_FOLDER, CLIPS_FOLDER, *OUTPUT_FILES):
            output.remove(name)
    output.write_text(CONFIG_FILE, config_text(config))


def stream_results(
    sources: list[str],
    output: Folder,
    config: CurationConfig,
    workers: Mapping[Stage, Callable] = WORKERS,
    stats: StageStats | None = None,
) -> Iterator[InputResult]:
    """Run the stages on Ray and yield each input's `InputResult` as soon as all of its clips are through;
    `stats` is given the dataset, for Ray Data's figures of each operator as it runs."""
    stage_args = {"output_dir": output.location, "config": config}
    dataset = ray.data.from_items([{"source": source} for source in sources], override_num_blocks=len(sources))
    dataset = dataset.flat_map(
        split_on_node,
        fn_kwargs={"split": workers[Stage.SPLIT], **stage_args},
        num_cpus=config.ray.split_cpus,
        num_gpus=config.ray.split_gpus,  # Ray hides the GPUs from a task that asks for none
    )
    if reads_frames(config):  # the motion task decodes every later stage's frames, even with motion off
        dataset = dataset.map(workers[Stage.MOTION], fn_kwargs=stage_args, num_cpus=config.ray.motion_cpus)
    for stage in enabled_stages(config):
        if stage.pool is None:
            continue
        pool = stage.pool_config(config)
        dataset = dataset.map_batches(
            workers[stage.name],
            fn_constructor_kwargs={"config": config},
            batch_size=pool.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=pool.concurrency),
            num_cpus=pool.num_cpus,
            num_gpus=pool.num_gpus,
        )
    # Frames and embeddings have served their stages; the records are filed as fragments in OUT by the task
    # after the last stage, and only their fragments' names come back to this driver.
    dataset = dataset.map_batches(
        file_rows,
        fn_kwargs={"output_dir": output.location},
        batch_size=config.output.fragment_rows,
        batch_format="numpy",
        num_cpus=FILING_CPUS,
    )
    if stats is not None:
        stats.dataset = dataset
    waiting: dict[str, InputResult] = {}
    for row in dataset.iter_rows():
        result = waiting.setdefault(row["source"], InputResult(row["source"], node=row["node"]))
        result.add(row)
        if result.clips == row["clips_in_source"]:
            yield waiting.pop(row["source"])


def split_on_node(row: dict, split: Callable, **stage_args) -> list[dict]:
    """The split worker, with the Ray node that ran it in each row (the journal keeps it, for tracing a cluster)."""
    node = ray.get_runtime_context().get_node_id()
    return [{**out, "node": node} for out in split(row, **stage_args)]


def stream_results_here(
    sources: list[str],
    output: Folder,
    config: CurationConfig,
    workers: Mapping[Stage, Callable] = WORKERS,
    stats: StageStats | None = None,
) -> Iterator[InputResult]:
    """The same stages as `stream_results`, without Ray: one input after another, in this process.

    Each actor-pool worker is built once and called on batches shaped as Ray Data's numpy batches (one
    object array per field), `ray.<pool>.batch_size` clips at a time. `stats` gets each stage's rows and seconds.
    """
    stats = StageStats() if stats is None else stats
    stage_args = {"output_dir": output.location, "config": config}
    pools = [
        (stage.name, workers[stage.name](config=config), stage.pool_config(config).batch_size)
        for stage in enabled_stages(config)
        if stage.pool is not None
    ]
    for source in sources:
        started = time.perf_counter()
        rows = workers[Stage.SPLIT]({"source": source}, **stage_args)
        stats.add(Stage.SPLIT, len(rows), started)
        if reads_frames(config):
            started = time.perf_counter()
            rows = [workers[Stage.MOTION](row, **stage_args) for row in rows]
            stats.add(Stage.MOTION, len(rows), started)
        filing = ("file_rows", functools.partial(file_rows, output_dir=output.location), len(rows))
        for stage, worker, batch_size in [*pools, filing]:
            started = time.perf_counter()
            for start in range(0, len(rows), batch_size):
                chunk = rows[start : start + batch_size]
                batch = worker({name: np.array([row[name] for row in chunk], dtype=object) for name in chunk[0]})
                rows[start : start + batch_size] = [{name: batch[name][i] for name in batch} for i in range(len(chunk))]
            stats.add(stage, len(rows), started)
        result = InputResult(source)
        for row in rows:
            result.add(row)
        yield result


def write_outputs(
    sources: list[str],
    output: Folder,
    config: CurationConfig,
    run: Run = run_here,
    seconds=None,
    stages=None,
    skipped: Sequence[str] = (),
) -> CurationResult:
    """Shards, clips.parquet, thumbnails.parquet, errors.jsonl, sources.jsonl, summary.json and report.html of
    the finished inputs (`sources`, in input order). Shards and tables are written by tasks over groups of inputs
    (`outputs.py`; `run`: on Ray or here); this driver merges their counts. It reads each input's entry as it
    goes, twice, and keeps the small part of it (its name, clips, counts); the frames' fates go straight to
    sources.jsonl. report.html is made by passes of tasks over the parts of clips.parquet (`pipelines/report`).
    The time the shards and the report take is added to `seconds`. `stages` (each stage's figures for the inputs
    run in this invocation, `StageStats.figures()`) goes to summary.json as it is."""
    seconds = {} if seconds is None else seconds
    journal = RunJournal(output)
    errors: list[dict] = []
    counts: dict[str, int] = {"inputs": len(sources), "skipped_files": len(skipped)}
    clips_per_input: list[tuple[str, int]] = []
    fragments: set[str] = set()
    for entry in map(journal.load, sources):
        if entry.error:
            errors.append({"input": entry.source, "error": entry.error})
        for name, value in entry.counts.items():
            counts[name] = counts.get(name, 0) + value
        clips_per_input.append((entry.source, entry.clips))
        fragments.update(entry.fragments)
    groups = plan_groups(clips_per_input, config.output.group_clips)
    with _timed(seconds, "shards"):
        rules, outcomes = write_grouped_outputs(output, config, groups, run)
    merged: dict[str, int] = {"kept": 0, "rejected": 0, "frames_in_kept_clips": 0}
    frames_by_reason: dict[str, int] = {}
    for outcome in outcomes:
        for name, value in outcome.counts.items():
            merged[name] = merged.get(name, 0) + value
        for reason, frames in outcome.frames_by_reason.items():
            frames_by_reason[reason] = frames_by_reason.get(reason, 0) + frames
    kept_frames = merged.pop("frames_in_kept_clips")
    shards = [name for outcome in outcomes for name in outcome.shards]
    counts.update(failed_inputs=len(errors), kept=merged.pop("kept"), rejected=merged.pop("rejected"))
    counts.update(shards=len(shards), **merged)
    journal.remove_fragments_except(fragments)
    output.write_text(ERRORS_FILE, _json_lines(errors))
    write_sources(output, journal, sources)
    summary = {
        "counts": counts,
        "frames": frames_summary(counts, kept_frames, frames_by_reason),
        "thresholds": thresholds_summary(rules),
        "shard_writers": {name: outcome.node for outcome in outcomes for name in outcome.shards},
        "stages": stages or {},
        "skipped_files": list(skipped),  # files of the input folders that are not videos by their suffix
    }
    output.write_text(SUMMARY_FILE, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    with _timed(seconds, "report"):
        write_report(output.location, config, run=run)
    # Every output is written: from here the shards are the only copy of the kept clips.
    journal.mark_complete(sources)
    keep = config.output.clip_files
    list(run(remove_clip_files, [(output.location, group, keep) for group in groups]))
    return CurationResult(clips=counts["kept"], failed_inputs=len(errors), counts=counts)


def write_sources(output: Folder, journal: RunJournal, sources: list[str]) -> None:
    """sources.jsonl, a line per input that was split or is a copy of one, streamed from the entries."""
    with output.open_partial(SOURCES_FILE) as file:
        for entry in map(journal.load, sources):
            if entry.error:
                continue
            line = {"source": entry.source, "frames": entry.counts.get("frames", 0), "fates": entry.fates}
            if entry.duplicate_of:
                line["duplicate_of"] = without_credentials(entry.duplicate_of)
            file.write((json.dumps(line, ensure_ascii=False) + "\n").encode())
    output.publish(SOURCES_FILE)


def frames_summary(counts: dict[str, int], kept_frames: int, frames_by_reason: dict[str, int]) -> dict:
    """Every source frame by fate (`curation/split/fates.py`), with the clips' frames split into kept and rejected
    (by the first reason of each rejected clip); the fates add up to `total`."""
    return {
        "total": counts.get("frames", 0),
        "in_kept_clips": kept_frames,
        "in_rejected_clips": counts.get(FATE_COUNTS[CLIP], 0) - kept_frames,
        "in_rejected_clips_by_reason": frames_by_reason,
        **{FATE_COUNTS[fate].removeprefix("frames_"): counts.get(FATE_COUNTS[fate], 0) for fate in FATES[1:]},
    }


def run_on_ray(num_cpus: float) -> Run:
    """`selection.Run` as Ray tasks of `num_cpus` CPUs each, results taken as they finish; a group's outcome names
    the node whose task wrote it."""

    def run(function: Callable, arguments: list[tuple]) -> Iterator:
        # SPREAD, as Ray Data schedules its tasks: the groups' reads and writes go to every node.
        task = ray.remote(_on_node).options(name=function.__name__, num_cpus=num_cpus, scheduling_strategy="SPREAD")
        pending = [task.remote(function, *task_arguments) for task_arguments in arguments]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])

    return run


def _on_node(function: Callable, *arguments):
    result = function(*arguments)
    if isinstance(result, GroupOutcome):
        result = replace(result, node=ray.get_runtime_context().get_node_id())
    return result


@contextmanager
def _timed(seconds: dict[str, float], phase: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[phase] = seconds.get(phase, 0.0) + time.perf_counter() - started


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


def _json_lines(items: list[dict]) -> str:
    return "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
