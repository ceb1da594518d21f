"""`svd train` data-parallel under torchrun: two CPU processes (gloo) on tiny shards, the README's command.

`python -m torch.distributed.run` is what the `torchrun` script runs; calling it through this interpreter
keeps the test on the virtual environment's torch whatever is on PATH.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tiny_shards import assert_export_samples, encode, record, square_frames, write_shards

ROOT = Path(__file__).parents[1]
TINY = ROOT / "configs" / "train" / "tiny.yaml"
STEPS = 4


def test_two_ranks_read_their_own_shards_and_only_rank_0_writes(tmp_path):
    # Four shards; the odd ones (rank 1's: shards[rank::2]) hold clips without a motion bucket, which each rank
    # counts as it reads them, so the counts show which shards a rank read.
    clips = []
    for index in range(16):
        frames = square_frames(index % 4, 2 + index % 3, 1, 8, colour=(200, 12 * index, 40))  # all different
        bucket = None if (index // 4) % 2 else 127
        clips.append((f"c{index}", encode(frames, 8.0), record(f"c{index}", frames, 8.0, motion_bucket_id=bucket)))
    shards = write_shards(tmp_path / "shards", clips, per_shard=4)
    run = tmp_path / "run"
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--tee", "3"),
        *("-m", "svd.cli", "train", "-c", str(TINY), "-o", str(run)),
        *("--set", f"data.shards={tmp_path / 'shards' / '*.tar'}", "--set", "data.height=16", "--set", "data.width=16"),
        *("--set", "data.num_workers=1", "--set", f"data.latent_cache={tmp_path / 'cache'}"),
        *("--set", "data.windows_per_clip=1", "--set", f"train.max_steps={STEPS}", "--set", "train.checkpoint_every=2"),
        *("--set", "validation.every=0", "--set", "log.every=1"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"torchrun did not finish in 240 s; its output:\n{error.stdout}\n{error.stderr}") from None
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]

    # Each rank read its own shards: the lists are disjoint and cover them all, and only rank 1 met clips
    # without a motion bucket.
    state = json.loads((run / "checkpoints" / f"step-{STEPS:08d}" / "state.json").read_text())
    ranks = state["ranks"]
    assert [r["shards"] for r in ranks] == [[str(shards[0]), str(shards[2])], [str(shards[1]), str(shards[3])]]
    for rank in ranks:
        assert rank["counts"]["examples"] == STEPS * 2 == rank["data_position"]
    assert ranks[0]["counts"]["default_motion_bucket"] == 0
    assert ranks[1]["counts"]["default_motion_bucket"] == STEPS * 2
    assert re.search(r"\[default1\]:INFO svd\.train: rank 1 of 2 reads 2 shard\(s\)", output)

    # Only rank 0 wrote checkpoints, metrics and the export; both ranks filled the shared latent cache.
    saved = re.findall(r"\[default(\d)\]:INFO svd\.train: checkpoint (\S+)", output)
    assert saved == [
        ("0", str(run / "checkpoints" / "step-00000002")),
        ("0", str(run / "checkpoints" / "step-00000004")),
    ]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in metrics] == list(range(1, STEPS + 1))
    assert len(re.findall(r"\[default\d\]:\S+: \d+ steps; last checkpoint", output)) == 1
    entries = list((tmp_path / "cache").glob("*/*.safetensors"))
    assert len(entries) == 16 and not list((tmp_path / "cache").rglob("*.tmp"))

    assert_export_samples(run / "final")
