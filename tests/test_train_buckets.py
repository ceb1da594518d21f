"""Resolution buckets (`data.buckets`): each clip in the bucket nearest its aspect ratio, batches of one bucket,
exact resume with examples waiting in unfinished batches, validation in the validation image's bucket."""

import json

import av
import numpy as np
import PIL.Image
import pytest
from tiny_shards import shaped_clip, write_shards
from tiny_train import tiny_config

from svd.train.buckets import Bucket, nearest_bucket
from svd.train.data import ClipBatches
from svd.train.loop import train

BUCKETS = "[{height: 16, width: 32}, {height: 32, width: 16}, {height: 24, width: 24, num_frames: 3}]"
# Clip shapes (height, width) and the bucket each must land in (by log aspect ratio).
SHAPES = {(16, 32): "16x32x4", (20, 36): "16x32x4", (32, 16): "32x16x4", (40, 24): "32x16x4", (24, 24): "24x24x3"}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    clips = [shaped_clip(index, *shape) for index, shape in enumerate(list(SHAPES) * 4)]  # 20 clips
    write_shards(folder, clips, per_shard=5)
    return str(folder / "*.tar")


def config(shards, *overrides):
    return tiny_config(shards, f"data.buckets={BUCKETS}", "data.shuffle_buffer=4", *overrides)


def expected_bucket(key: str) -> str:
    height, width = map(int, key.split("-")[1].split("x"))
    return SHAPES[(height, width)]


def test_every_batch_is_one_bucket_and_every_clip_is_in_its_nearest(shards):
    batches = ClipBatches(config(shards, "data.num_workers=2").data, 4, 2, seed=0)
    seen = set()
    for _ in range(20):
        batch = next(batches)
        assert {expected_bucket(key) for key in batch["keys"]} == {batch["bucket"]}
        height, width, frames = map(int, batch["bucket"].split("x"))
        assert batch["frames"].shape == (2, frames, 3, height, width)
        seen.add(batch["bucket"])
    assert seen == set(SHAPES.values())


def test_nearest_bucket_is_by_log_aspect_ratio():
    buckets = [Bucket(576, 1024, 14), Bucket(1024, 576, 14), Bucket(768, 768, 14)]
    assert nearest_bucket(buckets, 720, 1280) == buckets[0]
    assert nearest_bucket(buckets, 1920, 1080) == buckets[1]
    assert nearest_bucket(buckets, 480, 640) == buckets[2]  # 4:3 is nearer 1:1 than 16:9 in log ratio
    assert nearest_bucket(buckets, 1000, 1000) == buckets[2]


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_with_examples_waiting_in_buckets_is_exact(shards, workers):
    data = config(shards, f"data.num_workers={workers}").data
    straight = ClipBatches(data, 4, 3, seed=1)
    expected = [next(straight) for _ in range(8)]
    first = ClipBatches(data, 4, 3, seed=1)
    before = [next(first) for _ in range(4)]
    assert first.waiting()  # examples of the other buckets were taken and wait for their batch
    resumed = ClipBatches(data, 4, 3, seed=1, position=first.position, waiting=first.waiting())
    after = [next(resumed) for _ in range(4)]
    for a, b in zip(expected, before + after, strict=True):
        assert a["keys"] == b["keys"] and a["bucket"] == b["bucket"]
        assert (a["frames"] == b["frames"]).all()


def test_training_with_buckets_resumes_exactly_and_validates_in_the_images_bucket(shards, tmp_path):
    portrait = tmp_path / "portrait.png"
    PIL.Image.fromarray(np.full((40, 20, 3), 128, np.uint8)).save(portrait)
    settings = (
        "train.batch_size=2",
        "train.checkpoint_every=2",
        "data.num_workers=2",
        "validation.every=6",
        "validation.num_inference_steps=1",
        f"validation.image={portrait}",
    )
    straight = train(config(shards, "train.max_steps=6", *settings), tmp_path / "straight")
    first = train(config(shards, "train.max_steps=4", *settings), tmp_path / "resumed")
    state = json.loads((first.checkpoint / "state.json").read_text())
    assert state["ranks"][0]["waiting"]  # the checkpoint came with examples waiting in unfinished batches
    second = train(config(shards, "train.max_steps=6", *settings), tmp_path / "resumed", resume=True)
    assert {**first.losses, **second.losses} == pytest.approx(straight.losses, rel=1e-5, abs=1e-7)
    with av.open(str(tmp_path / "straight" / "validation" / "step-00000006.mp4")) as video:
        stream = video.streams.video[0]
        assert (stream.height, stream.width) == (32, 16)
