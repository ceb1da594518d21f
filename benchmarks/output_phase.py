"""How the output phase of `svd curate` scales: thresholds, filter, shards, clips.parquet, summary, report.

For each size (clips) a run's journal is laid out in a fresh OUT as the stages leave it: one small real H.264
clip file per clip (hard links to one clip encoded once, so the disk holds its bytes once while every clip is
a real file the shard writer reads), 20 clips per input, rows filed in fragments of `output.fragment_rows`
with random scores and a thumbnail, an entry per input. Then, in a fresh process for each size and CPU count,
`pipelines.curate.write_outputs` (the real output phase) runs on an embedded Ray of that many CPUs; the
process reports its wall time, the time of its phases and its peak RSS (the driver's: the tasks run in Ray's
workers). The paper's relative filters are on (bottom 25% of motion and aesthetics, 50% of CLIP score), so
the threshold pass runs.

    python benchmarks/output_phase.py                          # 10^3, 10^4, 10^5 clips, 1 and 2 CPUs
    python benchmarks/output_phase.py --sizes 1000 --cpus 1    # a quick look
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from machine import machine_description

CLIPS_PER_INPUT = 20
LINKS = 50_000


def encode_clip(path: Path) -> None:
    """A real 8-frame 64x64 H.264 clip (a few KB)."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(24))
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for index in range(8):
            image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def lay_out_run(out: Path, clips: int) -> None:
    """OUT as the stages leave it for `clips` clips: clip files, fragments, entries, config.yaml."""
    from curation.config import CurationConfig
    from curation.config_io import config_text
    from curation.record import Column
    from pipelines.journal import InputResult, RunJournal, write_fragment
    from pipelines.layout import CLIPS_FOLDER, CONFIG_FILE
    from pipelines.storage import Folder

    config = CurationConfig()
    output = Folder(str(out))
    output.write_text(CONFIG_FILE, config_text(config))
    (out / CLIPS_FOLDER).mkdir(parents=True)
    originals = []  # one per LINKS clips: a file system allows some 65000 links to one file
    thumbnail = b"\xff\xd8" + bytes(2000) + b"\xff\xd9"  # the size of a real 160 px JPEG, roughly
    rng = np.random.default_rng(1)
    journal = RunJournal(output)
    batch: list[dict] = []
    fragments: dict[str, set[str]] = {}
    inputs = []
    for index in range(clips):
        source = f"/videos/input_{index // CLIPS_PER_INPUT:06d}.mp4"
        key = f"input_{index // CLIPS_PER_INPUT:06d}-{index:08x}"
        path = f"{CLIPS_FOLDER}/{key}.mp4"
        if index % LINKS == 0:
            originals.append(out / f"original_{len(originals)}.mp4")
            encode_clip(originals[-1])
        (out / path).hardlink_to(originals[-1])
        row = {column.value: None for column in Column}
        row.update(
            {
                Column.KEY: key,
                Column.SOURCE: source,
                Column.CLIP_INDEX: index % CLIPS_PER_INPUT,
                Column.NUM_FRAMES: 8,
                Column.START_FRAME: 10 * (index % CLIPS_PER_INPUT),
                Column.END_FRAME: 10 * (index % CLIPS_PER_INPUT) + 8,
                Column.SCENE_START_FRAME: 10 * (index % CLIPS_PER_INPUT),
                Column.SCENE_END_FRAME: 10 * (index % CLIPS_PER_INPUT) + 10,
                Column.START_TIME: 10 * (index % CLIPS_PER_INPUT) / 24,
                Column.END_TIME: (10 * (index % CLIPS_PER_INPUT) + 8) / 24,
                Column.FPS: 24.0,
                Column.WIDTH: 64,
                Column.HEIGHT: 64,
                Column.PATH: path,
                Column.MOTION_SCORE: float(rng.gamma(2.0, 2.0)),
                Column.TEXT_AREA_RATIO: float(rng.random() * 0.1),
                Column.AESTHETIC_SCORE: float(rng.normal(5, 1)),
                Column.CLIP_SCORE: float(rng.normal(0.3, 0.05)),
                Column.CAPTION: f"a clip number {index}",
                Column.KEPT: True,
                Column.REJECT_REASONS: [],
            }
        )
        batch.append(row)
        if source not in fragments:
            fragments[source] = set()
            inputs.append(source)
        if len(batch) == config.output.fragment_rows or index == clips - 1:
            name = write_fragment(output, batch, [thumbnail] * len(batch))
            for filed in batch:
                fragments[filed[Column.SOURCE]].add(name)
            batch = []
    for source in inputs:
        counts = {"frames": CLIPS_PER_INPUT * 10, "frames_in_clips": CLIPS_PER_INPUT * 8}
        fates = [[10 * n, 10 * n + 8, "clip"] for n in range(CLIPS_PER_INPUT)]
        fates += [[10 * n + 8, 10 * n + 10, "transition"] for n in range(CLIPS_PER_INPUT)]
        entry = InputResult(source, counts=counts, fates=sorted(fates), clips=CLIPS_PER_INPUT)
        entry.fragments = sorted(fragments[source])
        journal.record(entry)
    for original in originals:
        original.unlink()


def measure(out: Path, cpus: int, report: bool) -> dict:
    """The output phase on OUT with an embedded Ray of `cpus` CPUs, in this process (a fresh one). Without
    `report`, report.html is left out, to show what it costs beside the rest."""
    import ray

    import pipelines.curate

    if not report:
        pipelines.curate.write_report = lambda *args, **kwargs: None

    from curation.config import CurationConfig
    from curation.config_io import load_config
    from pipelines.curate import run_on_ray, write_outputs
    from pipelines.layout import CONFIG_FILE
    from pipelines.storage import Folder

    output = Folder(str(out))
    config = load_config(CurationConfig, out / CONFIG_FILE)
    inputs = len(list((out / ".work" / "inputs").glob("*.json")))
    sources = [f"/videos/input_{n:06d}.mp4" for n in range(inputs)]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    result = write_outputs(sources, output, config, run_on_ray(config.ray.output_cpus), seconds)
    wall = time.perf_counter() - started
    ray.shutdown()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "report": report,
        "clips": result.counts["kept"] + result.counts["rejected"],
        "kept": result.counts["kept"],
        "shards": result.counts["shards"],
        "cpus": cpus,
        "wall_s": round(wall, 2),
        "shards_s": round(seconds.get("shards", 0), 2),
        "report_s": round(seconds.get("report", 0), 2),
        "driver_peak_rss_mb": round(peak, 1),
        "driver_rss_before_mb": round(before, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000", help="clips, comma-separated")
    parser.add_argument("--cpus", default="1,2", help="CPUs of the embedded Ray, comma-separated")
    parser.add_argument("--out", type=Path, help="write the results as JSON here too")
    parser.add_argument("--child", nargs=3, metavar=("OUT", "CPUS", "REPORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(Path(args.child[0]), int(args.child[1]), args.child[2] == "report")))
        return
    print(f"machine: {machine_description()}; python {platform.python_version()}")
    results = []
    for size in [int(size) for size in args.sizes.split(",")]:
        for cpus in [int(cpus) for cpus in args.cpus.split(",")]:
            for report in ("report", "no-report"):
                with tempfile.TemporaryDirectory(prefix="svd-output-phase-") as folder:
                    out = Path(folder) / "out"  # a fresh OUT each time: a finished run removes its clip files
                    started = time.perf_counter()
                    lay_out_run(out, size)
                    laid = time.perf_counter() - started
                    child = [sys.executable, __file__, "--child", str(out), str(cpus), report]
                    done = subprocess.run(child, capture_output=True, text=True, check=False)
                    if done.returncode != 0:
                        sys.exit(f"output phase failed at {size} clips, {cpus} CPUs:\n{done.stderr[-3000:]}")
                    result = json.loads(done.stdout.strip().splitlines()[-1])
                    result["layout_s"] = round(laid, 1)
                    results.append(result)
                    print(json.dumps(result), flush=True)
    print(
        "\n| clips | CPUs | report.html | wall s | clips/s | thresholds, shards, tables s | report s | driver peak RSS MB |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in results:
        rate = r["clips"] / r["wall_s"]
        print(
            f"| {r['clips']} | {r['cpus']} | {'yes' if r['report'] else 'left out'} | {r['wall_s']} | {rate:.0f} "
            f"| {r['shards_s']} | {r['report_s']} | {r['driver_peak_rss_mb']} |"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
