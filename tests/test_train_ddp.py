"""`svd train` data-parallel under torchrun: two CPU processes (gloo) on tiny shards, the README's command.

`python -m torch.distributed.run` is what the `torchrun` script runs; calling it through this interpreter
keeps the test on the virtual environment's torch whatever is on PATH.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from diffusers import UNetSpatioTemporalConditionModel
from safetensors.torch import load_file
from tiny_shards import assert_export_samples, encode, record, shaped_clip, square_frames, write_shards

ROOT = Path(__file__).parents[1]
TINY = ROOT / "configs" / "train" / "tiny.yaml"
STEPS = 4


def torchrun(run: Path, *overrides: str, resume: bool = False) -> str:
    """`svd train` on two CPU ranks with tiny.yaml at 16x16, STEPS steps; its output (AssertionError if it fails)."""
    settings = ["data.height=16", "data.width=16", "data.num_workers=1", f"train.max_steps={STEPS}"]
    settings += ["train.checkpoint_every=2", "validation.every=0", "log.every=1", *overrides]
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--tee", "3"),
        *("-m", "svd.cli", "train", "-c", str(TINY), "-o", str(run), *(["--resume"] if resume else [])),
        *(f"--set={setting}" for setting in settings),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"torchrun did not finish in 240 s; its output:\n{error.stdout}\n{error.stderr}") from None
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    return output


# A full finetune (freeze all, with EMA and a validation video), so the FSDP test below compares against it.
FULL = ("model.freeze=all", "train.ema_decay=0.9", "validation.every=4", "validation.num_inference_steps=1")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """Four shards of 16 clips; the odd ones (rank 1's: shards[rank::2]) hold clips without a motion bucket,
    which each rank counts as it reads them, so the counts show which shards a rank read."""
    folder = tmp_path_factory.mktemp("ddp")
    clips = []
    for index in range(16):
        frames = square_frames(index % 4, 2 + index % 3, 1, 8, colour=(200, 12 * index, 40))  # all different
        bucket = None if (index // 4) % 2 else 127
        clips.append((f"c{index}", encode(frames, 8.0), record(f"c{index}", frames, 8.0, motion_bucket_id=bucket)))
    shards = write_shards(folder / "shards", clips, per_shard=4)
    data = (f"data.shards={folder / 'shards' / '*.tar'}", "data.windows_per_clip=1")
    output = torchrun(folder / "run", *data, f"data.latent_cache={folder / 'cache'}", *FULL)
    return folder, shards, data, output


def test_two_ranks_read_their_own_shards_and_only_rank_0_writes(ddp_run):
    folder, shards, _, output = ddp_run
    run = folder / "run"

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
    entries = list((folder / "cache").glob("*/*.safetensors"))
    assert len(entries) == 16 and not list((folder / "cache").rglob("*.tmp"))

    assert_export_samples(run / "final")


def test_fsdp_shards_a_full_finetune_and_trains_as_ddp_does(ddp_run, tmp_path):
    """`train.fsdp` (FSDP2 over two gloo ranks) with freeze all: the losses, checkpoints and export of
    data-parallel training, and a resumed sharded run continues exactly."""
    folder, _, data, _ = ddp_run
    settings = [*data, *FULL, "train.fsdp=true"]
    output = torchrun(tmp_path / "fsdp", *settings, f"data.latent_cache={tmp_path / 'cache'}")
    held = re.findall(r"\[default(\d)\]:INFO svd\.train: fsdp: rank \d holds (\d+) of the (\d+) trainable", output)
    assert sorted(rank for rank, _, _ in held) == ["0", "1"]
    (_, first, total), (_, second, _) = held
    assert int(first) + int(second) == int(total) and max(int(first), int(second)) < 0.6 * int(total)
    # Resume the sharded run from its step-2 checkpoint.
    (tmp_path / "again").mkdir()
    shutil.copytree(
        tmp_path / "fsdp" / "checkpoints" / "step-00000002", tmp_path / "again" / "checkpoints" / "step-00000002"
    )
    torchrun(tmp_path / "again", *settings, resume=True)

    def losses(run):
        return [line["loss"] for line in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]

    assert losses(tmp_path / "fsdp") == pytest.approx(losses(folder / "run"), rel=1e-4)
    assert losses(tmp_path / "again") == pytest.approx(losses(tmp_path / "fsdp")[2:], rel=1e-4)

    # Sharded reductions sum in another order, and Adam magnifies the rounding where gradients are near zero:
    # compare whole states by norm. The weights must be far nearer each other than to where step 2 left them.
    def distance(a, b):
        assert a.keys() == b.keys()
        return sum(((a[key].double() - b[key].double()) ** 2).sum().item() for key in a) ** 0.5

    checkpoints = folder / "run" / "checkpoints"
    for name in ("trainable", "ema", "optimizer"):
        reference = load_file(checkpoints / "step-00000004" / f"{name}.safetensors")
        earlier = load_file(checkpoints / "step-00000002" / f"{name}.safetensors")
        for run in ("fsdp", "again"):
            other = load_file(tmp_path / run / "checkpoints" / "step-00000004" / f"{name}.safetensors")
            assert distance(other, reference) < 0.01 * distance(earlier, reference), (name, run)
    exported = [
        UNetSpatioTemporalConditionModel.from_pretrained(run / "final" / "unet").state_dict()
        for run in (folder / "run", tmp_path / "fsdp")
    ]
    ema = [load_file(checkpoints / f"step-0000000{step}" / "ema.safetensors") for step in (2, 4)]
    assert distance(*exported) < 0.01 * distance(*ema)  # the exports are the EMA weights (freeze all)
    assert (tmp_path / "fsdp" / "validation" / "step-00000004.mp4").stat().st_size > 0


def test_ranks_with_buckets_stay_in_lockstep_and_finish(tmp_path):
    """Each rank batches its own clips by bucket (a step's batches may be of different buckets on the two
    ranks); they step together, checkpoint what waits in their buckets and finish."""
    shapes = [(16, 32), (32, 16), (24, 24)]
    write_shards(tmp_path / "shards", [shaped_clip(i, *shapes[i % 3]) for i in range(12)], per_shard=3)
    buckets = "[{height: 16, width: 32}, {height: 32, width: 16}, {height: 24, width: 24}]"
    output = torchrun(
        tmp_path / "run",
        f"data.shards={tmp_path / 'shards' / '*.tar'}",
        f"data.buckets={buckets}",
        "train.batch_size=2",
    )
    state = json.loads((tmp_path / "run" / "checkpoints" / f"step-{STEPS:08d}" / "state.json").read_text())
    assert state["step"] == STEPS and len(state["ranks"]) == 2
    for rank in state["ranks"]:  # every example a rank took is in one of its batches or waits in a bucket
        assert rank["counts"]["examples"] == STEPS * 2 + len(rank["waiting"])
    assert len(re.findall(r"\[default\d\]:\S+: \d+ steps; last checkpoint", output)) == 1
    assert (tmp_path / "run" / "final" / "model_index.json").is_file()
