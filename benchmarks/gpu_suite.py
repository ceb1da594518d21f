"""Every GPU figure of the project in one command: run it first whenever a GPU is lent.

Each part runs one benchmark script's own functions, at full size with random weights built in place (speed
does not depend on weight values; nothing is downloaded), in its own process with a hard time budget: a part
past its budget is killed (its figures so far are kept) and the next one starts, so one slow part cannot eat
the others' time. The whole suite takes at most 9 minutes (TOTAL_BUDGET_S). Parts run in the order of `PARTS`
(most wanted first):

  generate     `svd generate` vs diffusers' StableVideoDiffusionPipeline, 14 frames (generate_speed.py)
  train        one `svd train` step of the SVD-xt UNet: step time, peak memory (train_memory.py)
  ocr          EasyOCR's CRAFT, real weights, on 3 key frames per clip (score_speed.py)
  clip         open_clip ViT-L-14 + the aesthetic MLP, then caption embeddings + clip_score (score_speed.py)
  coca, vblip, llm   the three captioners at batch sizes 1, 8, 32 (caption_speed.py)
  transnetv2   TransNetV2 (the package's real weights, 30 MB, no download) scoring frames (curation/split/transnet.py)
  generate-samplers  as generate, heun / dpmpp_2m / ddim next to diffusers' matching schedulers
  generate-segments  ours only: a 4-segment video (4 x 14 frames, 53 in all)
  generate-25  as generate, 25 frames

One line per part started and finished (with its figures) goes to stdout; every figure, the machine, the
torch/CUDA versions and the settings go to one JSON file, rewritten after each part; each part's own output
goes to a log file next to it. Exit code 0 when every part ran to the end, 1 when any failed, was killed at
its budget or had no time left, 2 when the suite refused to start.

    python benchmarks/gpu_suite.py --out gpu_suite.json        # on the GPU, at most 9 minutes
    python benchmarks/gpu_suite.py --only generate,train       # a subset
    python benchmarks/gpu_suite.py --tiny --out /tmp/suite.json  # the same code, tiny models, on the CPU
    python benchmarks/gpu_suite.py --list

A new part is one more `Part` in `PARTS`: a name, a budget, a function from its settings to rows (one dict per
case, yielded as each is measured), its full-size and tiny settings.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import platform
import resource
import shlex
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_description  # noqa: E402

TOTAL_BUDGET_S = 540.0  # the whole suite, full size: 9 minutes at most
TINY_TOTAL_BUDGET_S = 900.0
TINY_BUDGET_S = 180.0  # each part with --tiny (a few seconds of work each, but the dev machine may be loaded)
MIN_START_S = 15.0  # a part is not started with less time than this (or its budget) left in the suite
PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "open_clip_torch", "easyocr", "numpy", "av")


def device(settings: dict) -> str:
    return "cpu" if settings["tiny"] else "cuda"


# --- the parts: each imports its benchmark script in its own process -------------------------------------


def generate(settings: dict) -> Iterator[dict]:
    import generate_speed

    return generate_speed.benchmark(
        tiny=settings["tiny"],
        frames_list=settings["frames"],
        steps=settings["steps"],
        dtype_name=settings["dtype"],
        samplers=tuple(settings.get("samplers", ["euler"])),
        low_memory_row=settings.get("low_memory", True),
        segments=settings.get("segments", 1),
        skip_diffusers=settings.get("skip_diffusers", False),
    )


def train(settings: dict) -> Iterator[dict]:
    import train_memory

    return train_memory.benchmark(settings["tiny"], settings["steps"], [tuple(case) for case in settings["cases"]])


def ocr(settings: dict) -> Iterator[dict]:
    import score_speed

    from curation.config import CurationConfig

    clips = score_speed.key_frame_clips(
        settings["clips"], settings["seconds"], tuple(settings["video_size"]), settings["frame_side"]
    )
    config = CurationConfig().ocr.model_copy(update={"device": device(settings), "max_side": settings["max_side"]})
    result = score_speed.time_ocr(config, clips, settings["repeats"])
    scores = result.pop("scores")
    yield result | {"text_area_max": max(scores)}


def clip(settings: dict) -> Iterator[dict]:
    import score_speed

    clips = score_speed.key_frame_clips(
        settings["clips"], settings["seconds"], tuple(settings["video_size"]), settings["frame_side"]
    )
    yield score_speed.time_clip(clips, settings["repeats"], device(settings), settings["tiny"])


def transnetv2(settings: dict) -> Iterator[dict]:
    """Frames per second of the cut-detection network, each frame in two windows as in the original, on random
    48x27 frames (speed does not depend on the pixels), at several windows per forward pass."""
    import numpy as np
    import torch

    from curation.split import transnet

    model = transnet.load(device(settings))
    frames = np.random.default_rng(0).integers(0, 256, (settings["frames"], 27, 48, 3), dtype=np.uint8)
    for batch_windows in settings["batch_windows"]:
        if settings["warm_up"]:  # cuDNN picks its kernels per shape; the allocator grows
            model.predict(frames[: transnet.STEP * batch_windows], batch_windows=batch_windows)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        model.predict(frames, batch_windows=batch_windows)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        row = {"batch_windows": batch_windows, "dtype": str(model.dtype), "frames": len(frames), "seconds": seconds}
        row["frames_per_s"] = len(frames) / seconds
        if model.device.type == "cuda":
            row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        yield row


def captioner(name: str) -> Callable[[dict], Iterator[dict]]:
    def run(settings: dict) -> Iterator[dict]:
        import caption_speed

        return caption_speed.measure(
            name,
            tiny=settings["tiny"],
            device_name=device(settings),
            batch_sizes=settings["batch_sizes"],
            repeats=settings["repeats"],
        )

    return run


@dataclass(frozen=True)
class Part:
    name: str
    what: str
    budget_s: float  # hard limit at full size on one GPU, process start included
    run: Callable[[dict], Iterator[dict]]  # settings (plus "tiny") -> one row per case, as each is measured
    full: dict
    tiny: dict
    figures: tuple[str, ...]  # what every row must give, finite and positive (the test checks --tiny)
    label: Callable[[dict], str] = field(default=lambda row: "")

    def settings(self, tiny: bool) -> dict:
        return {"tiny": tiny, **(self.tiny if tiny else self.full)}


# Key frames as the pipeline decodes them: 3 per clip at long side 448 (the largest max_side of the model stages).
FRAMES = {"video_size": [1280, 720], "seconds": 2.0, "frame_side": 448}
TINY_FRAMES = {"video_size": [160, 96], "seconds": 0.5, "frame_side": 96}
CAPTIONS = {"full": {"batch_sizes": [1, 8, 32], "repeats": 2}, "tiny": {"batch_sizes": [2], "repeats": 1}}
GENERATION_FIGURES = ("seconds_per_video", "frames_per_s")


def batch(row: dict) -> str:
    return f"batch {row['batch']}"


def generation_label(row: dict) -> str:
    return f"{row['impl']} {row['sampler']} {row['frames']}f"


def generation_part(
    name: str, description: str, budget: float, frames: int, tiny_frames: int, **options: object
) -> Part:
    """`options`: samplers (list), low_memory (bool), segments (int), skip_diffusers (bool), for
    generate_speed.benchmark."""
    full = {"frames": [frames], "steps": 25, "dtype": "fp16", **options}
    tiny = {"frames": [tiny_frames], "steps": 2, "dtype": "fp32", **options}
    return Part(name, description, budget, generate, full, tiny, GENERATION_FIGURES, generation_label)


PARTS: list[Part] = [
    generation_part(
        "generate",
        "svd generate vs diffusers' StableVideoDiffusionPipeline (SVD-xt, random weights), 14 frames at 576x1024, "
        "25 steps, fp16: diffusers, ours, ours --low-memory",
        100,
        frames=14,
        tiny_frames=3,
    ),
    Part(
        "train",
        "one svd train step of the SVD-xt UNet (random weights), batch 1, 14 frames at 576x1024 and 320x576, "
        "bf16 autocast, freeze temporal/all, gradient checkpointing off/on; with checkpointing, LoRA rank 64 on "
        "all attention and freeze all with 8-bit AdamW",
        150,
        train,
        {"cases": [[14, 576, 1024], [14, 320, 576]], "steps": 4},
        {"cases": [[4, 64, 64]], "steps": 2},
        ("step_time_s", "samples_per_s"),
        lambda row: (
            f"{row['policy']}{'+8bit' if row['optimizer'] == 'adamw8bit' else ''}"
            f"{'+ckpt' if row['checkpointing'] else ''} {row['height']}x{row['width']}"
        ),
    ),
    Part(
        "ocr",
        "EasyOCR's CRAFT (real weights) on the first, middle and last frames of each clip, long side 384",
        30,
        ocr,
        {**FRAMES, "clips": 256, "max_side": 384, "repeats": 2},
        {**TINY_FRAMES, "clips": 2, "max_side": 64, "repeats": 1},
        ("clips_per_s",),
    ),
    Part(
        "clip",
        "open_clip ViT-L-14 (random weights) + the aesthetic MLP on 3 frames per clip; caption embeddings + clip_score",
        45,
        clip,
        {**FRAMES, "clips": 256, "repeats": 2},
        {**TINY_FRAMES, "clips": 4, "repeats": 1},
        ("clips_per_s", "caption_clips_per_s"),
    ),
    *(
        Part(name, description, budget, captioner(name), CAPTIONS["full"], CAPTIONS["tiny"], ("clips_per_s",), batch)
        for name, description, budget in (
            ("coca", "CoCa ViT-L-14 (random weights) on the middle frame, 6 beams, 29 tokens forced", 45),
            (
                "vblip",
                "VideoBLIP (EVA ViT-g, Q-Former, OPT-2.7B; random weights) on 8 frames, 4 beams, 40 tokens forced",
                60,
            ),
            ("llm", "Qwen2.5-1.5B's architecture (random weights) merging two captions, greedy, 60 tokens forced", 40),
        )
    ),
    Part(
        "transnetv2",
        "TransNetV2 (real weights) on 48x27 frames, 100-frame windows at a stride of 50, the split's precision "
        "(auto: bf16 autocast where supported); 16 (the split's setting on a GPU), 64, 4 and 1 windows per pass",
        15,
        transnetv2,
        {"frames": 6400, "batch_windows": [16, 64, 4, 1], "warm_up": True},
        {"frames": 100, "batch_windows": [2], "warm_up": False},
        ("frames_per_s",),
        lambda row: f"{row['batch_windows']} windows",
    ),
    generation_part(
        "generate-samplers",
        "as generate, for the heun, dpmpp_2m and ddim samplers next to diffusers' matching schedulers (no --low-memory)",
        120,
        frames=14,
        tiny_frames=3,
        samplers=["heun", "dpmpp_2m", "ddim"],
        low_memory=False,
    ),
    generation_part(
        "generate-segments",
        "ours only: one video of 4 segments of 14 frames (53 frames), Euler",
        60,
        frames=14,
        tiny_frames=3,
        low_memory=False,
        segments=4,
        skip_diffusers=True,
    ),
    generation_part("generate-25", "as generate, 25 frames", 110, frames=25, tiny_frames=4),
]
PARTS_BY_NAME = {part.name: part for part in PARTS}

# How the progress lines show a row's figures.
SHOWN = {
    "seconds_per_video": "{:.2f} s/video",
    "frames_per_s": "{:.2f} frames/s",
    "speedup_vs_diffusers": "{:.2f}x diffusers",
    "step_time_s": "{:.3f} s/step",
    "clips_per_s": "{:.1f} clips/s",
    "caption_clips_per_s": "captions {:.0f} clips/s",
    "peak_gib": "peak {:.1f} GiB",
    "peak_memory_gb": "peak {:.1f} GiB",
}


# --- one part, in its own process ---------------------------------------------------------------------------


def jsonable(value):
    """Plain JSON: numpy scalars as numbers, tuples as lists, NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def child(name: str, tiny: bool, rows_path: Path, inject_failure: bool) -> int:
    """Run one part, appending one JSON line per event to `rows_path` (the parent reads it even after a kill)."""
    part = PARTS_BY_NAME[name]
    settings = part.settings(tiny)
    with rows_path.open("a", encoding="utf-8") as out:

        def put(**entry) -> None:
            out.write(json.dumps(jsonable(entry)) + "\n")
            out.flush()

        try:
            import torch

            env = {"torch_threads": torch.get_num_threads()}
            if device(settings) == "cuda":
                env["gpu"] = torch.cuda.get_device_name(0)
            put(env=env)
            if inject_failure:
                raise RuntimeError("failure injected with --inject-failure")
            for row in part.run(settings):
                print(json.dumps(jsonable(row)), flush=True)  # into the part's log as well
                put(row=row)
        except Exception as error:
            traceback.print_exc()
            put(error=f"{type(error).__name__}: {error}".splitlines()[0], traceback=traceback.format_exc())
            return 1
        put(done=True, host_peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    return 0


def die_with_parent() -> None:
    """In the child: SIGKILL when the suite dies, so no benchmark is left running on the GPU (Linux only)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_part(part: Part, tiny: bool, budget: float, log_path: Path, inject_failure: bool) -> dict:
    """Run `part` in a child process, killed past `budget` seconds; its result for the JSON."""
    rows_path = log_path.with_suffix(".jsonl")
    rows_path.unlink(missing_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", part.name, "--rows", str(rows_path)]
    command += ["--tiny"] * tiny + ["--inject-failure", part.name] * inject_failure
    env = os.environ | {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    env |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # nothing is downloaded
    if tiny:  # tiny tensors gain nothing from threads, and on a shared CPU spinning threads cost 5-8x the time
        env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    started = time.monotonic()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    timed_out = False
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, preexec_fn=die_with_parent
        )
        try:
            process.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            if process.poll() is None:  # past its budget, or the suite itself is stopping
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    wall = time.monotonic() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    entries = []
    for line in rows_path.read_text(encoding="utf-8").splitlines() if rows_path.exists() else []:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by the kill
            break
    rows_path.unlink(missing_ok=True)
    found = {key: entry[key] for entry in entries for key in entry if key != "row"}
    result = {
        "status": "ok",
        "what": part.what,
        "budget_s": round(budget, 1),
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),  # the part's processes, user + system
        "settings": part.settings(tiny),
        "rows": [entry["row"] for entry in entries if "row" in entry],
        "host_peak_rss_gib": found.get("host_peak_rss_gib"),
        "env": found.get("env"),
        "error": None,
        "log": str(log_path),
    }
    if timed_out:
        result["status"] = "timeout"
        result["error"] = f"killed at its budget of {budget:.0f} s, after {len(result['rows'])} rows"
    elif "error" in found:
        result["status"], result["error"], result["traceback"] = "failed", found["error"], found.get("traceback")
    elif process.returncode != 0 or not found.get("done"):
        result["status"], result["error"] = "failed", f"the part's process exited with code {process.returncode}"
    elif not result["rows"]:
        result["status"], result["error"] = "failed", "no figures"
    if result["status"] != "ok":
        result["log_tail"] = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
    return result


def describe(part: Part, result: dict) -> str:
    """One progress line: status, wall time and each row's figures."""
    rows = []
    for row in result["rows"]:
        shown = [SHOWN[key].format(row[key]) for key in SHOWN if isinstance(row.get(key), int | float)]
        if row.get("status", "ok") != "ok":
            shown.append(row["status"])
        rows.append(" ".join(filter(None, [part.label(row) + ":" if part.label(row) else "", ", ".join(shown)])))
    line = f"{part.name}: {result['status']} in {result['wall_s']:.1f} s"
    if result["error"]:
        line += f" ({result['error']})"
    return line + ("; " + " | ".join(rows) if rows else "")


# --- the suite ----------------------------------------------------------------------------------------------


def versions() -> dict:
    import torch

    found = {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    for package in PACKAGES:
        try:
            found.setdefault(package, metadata.version(package))
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def gpus() -> list[dict]:
    import torch

    if not torch.cuda.is_available():
        return []
    driver = None
    try:
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        driver = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.split("\n")[0].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    found = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        found.append(
            {
                "name": props.name,
                "memory_gib": round(props.total_memory / 2**30, 1),
                "capability": f"{props.major}.{props.minor}",
                "multiprocessors": props.multi_processor_count,
                "driver": driver or None,
            }
        )
    return found


def write(path: Path, report: dict) -> None:
    partial = path.with_name(path.name + ".part")
    partial.write_text(json.dumps(jsonable(report), indent=2) + "\n", encoding="utf-8")
    partial.replace(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("gpu_suite.json"), help="the JSON file (default: %(default)s)")
    parser.add_argument("--only", help="NAME[,NAME...]: run these parts only, in the suite's order (see --list)")
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU: checks the code paths")
    parser.add_argument("--list", action="store_true", help="list the parts and their budgets")
    parser.add_argument("--logs", type=Path, help="folder for each part's output (default: OUT without .json + .logs)")
    parser.add_argument("--total-budget", type=float, help=f"seconds for the whole suite (default {TOTAL_BUDGET_S:g})")
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiplies every part's budget")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--inject-failure", action="append", default=[], help=argparse.SUPPRESS)  # for the tests
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.tiny, args.rows, args.child in args.inject_failure)

    if args.list:
        for part in PARTS:
            print(f"{part.name:12} {part.budget_s:4.0f} s  {part.what}")
        print(f"{'total':12} {sum(p.budget_s for p in PARTS):4.0f} s  (the suite stops at {TOTAL_BUDGET_S:g} s)")
        return 0
    names = args.only.split(",") if args.only else [part.name for part in PARTS]
    unknown = [name for name in names if name not in PARTS_BY_NAME]
    if unknown:
        print(
            f"gpu_suite: unknown part {', '.join(unknown)}; the parts are {', '.join(PARTS_BY_NAME)}", file=sys.stderr
        )
        return 2
    for name in args.inject_failure:
        if name not in PARTS_BY_NAME:
            print(f"gpu_suite: unknown part {name} for --inject-failure", file=sys.stderr)
            return 2

    started = time.monotonic()
    import torch

    if not args.tiny and not torch.cuda.is_available():
        print("gpu_suite: no CUDA GPU visible: the full-size suite needs one (--tiny runs it on tiny models on the CPU)",
              file=sys.stderr)  # fmt: skip
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped suite kills its running part
    total = args.total_budget or (TINY_TOTAL_BUDGET_S if args.tiny else TOTAL_BUDGET_S)
    parts = [part for part in PARTS if part.name in names]
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    logs = args.logs or out.with_name(out.name.removesuffix(".json") + ".logs")
    logs.mkdir(parents=True, exist_ok=True)
    machine = {"description": machine_description(), "host": platform.node(), "python": platform.python_version()}
    machine["gpus"] = gpus()
    report = {
        "suite": "benchmarks/gpu_suite.py",
        "command": shlex.join(["python", *sys.argv]),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "tiny": args.tiny,
        "machine": machine,
        "versions": versions(),
        "settings": {"total_budget_s": total, "budget_scale": args.budget_scale, "parts": [p.name for p in parts]},
        "parts": {},
        "failed": [],
        "wall_s": None,
    }
    gpu = machine["gpus"][0]["name"] if machine["gpus"] and not args.tiny else "CPU (--tiny)"
    print(f"gpu_suite: {len(parts)} parts on {gpu}, torch {torch.__version__}, CUDA {torch.version.cuda}; "
          f"at most {total:.0f} s; figures -> {out}", flush=True)  # fmt: skip
    write(out, report)
    for number, part in enumerate(parts, 1):
        budget = (TINY_BUDGET_S if args.tiny else part.budget_s) * args.budget_scale
        left = total - (time.monotonic() - started)
        if left < min(budget, MIN_START_S):
            result = {"status": "not run", "what": part.what, "budget_s": round(budget, 1), "wall_s": 0.0,
                      "settings": part.settings(args.tiny), "rows": [],
                      "error": f"no time left: {max(left, 0):.0f} s of the suite's {total:.0f} s"}  # fmt: skip
        else:
            budget = min(budget, left)
            print(f"[{number}/{len(parts)}] {part.name}: started, budget {budget:.0f} s", flush=True)
            result = run_part(part, args.tiny, budget, logs / f"{part.name}.log", part.name in args.inject_failure)
        report["parts"][part.name] = result
        if result["status"] != "ok":
            report["failed"].append(part.name)
        report["wall_s"] = round(time.monotonic() - started, 1)
        write(out, report)
        print(f"[{number}/{len(parts)}] {describe(part, result)}", flush=True)
    ok = len(parts) - len(report["failed"])
    failed = f"; not ok: {', '.join(report['failed'])}" if report["failed"] else ""
    print(f"gpu_suite: {ok}/{len(parts)} parts ok in {report['wall_s']:.0f} s{failed}; figures in {out}", flush=True)
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
