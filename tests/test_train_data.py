"""The training data loader: shard patterns, decoding, frame sampling, captions, broken samples."""

import numpy as np
import pytest
from tiny_shards import encode, record, square_frames, square_shards, write_shards

from svd.train.config import DataConfig
from svd.train.data import ClipBatches, expand_shards, pick_caption, resize_crop


def test_shard_specs_expand_globs_braces_lists_and_urls(tmp_path):
    paths = square_shards(tmp_path, count=3, per_shard=1)
    assert expand_shards(str(tmp_path / "*.tar")) == [str(p) for p in paths]
    assert expand_shards(str(tmp_path / "shard-{000000..000001}.tar")) == [str(p) for p in paths[:2]]
    assert expand_shards([str(paths[2]), "https://host/s-{0..1}.tar"]) == [
        str(paths[2]),
        "https://host/s-0.tar",
        "https://host/s-1.tar",
    ]
    with pytest.raises(ValueError, match="matches no file"):
        expand_shards(str(tmp_path / "missing-*.tar"))
    with pytest.raises(ValueError, match="data.shards is not set"):
        expand_shards(None)


def test_captions_are_sampled_with_renormalised_probabilities_over_those_present():
    rng = np.random.default_rng(0)
    probabilities = {"coca": 0.5, "vblip": 0.25, "llm": 0.25}
    full = {"caption_coca": "c", "caption_vblip": "v", "caption_llm": "l"}
    picks = [pick_caption(full, probabilities, rng)[1] for _ in range(4000)]
    assert picks.count("coca") / 4000 == pytest.approx(0.5, abs=0.03)
    assert picks.count("llm") / 4000 == pytest.approx(0.25, abs=0.03)
    no_coca = {"caption_coca": None, "caption_vblip": "v", "caption_llm": "l"}
    picks = [pick_caption(no_coca, probabilities, rng)[1] for _ in range(2000)]
    assert set(picks) == {"vblip", "llm"} and picks.count("vblip") / 2000 == pytest.approx(0.5, abs=0.04)
    assert pick_caption({"caption": "shipped"}, probabilities, rng) == ("shipped", "caption")
    assert pick_caption({"caption_coca": "  ", "caption": None}, probabilities, rng) == ("", "none")


def test_resize_covers_then_crops_the_centre():
    image = np.zeros((96, 128, 3), np.uint8)
    image[:, 64:] = 255
    out = resize_crop(image, 32, 32)
    assert out.shape == (32, 32, 3)
    assert out[:, :14].max() == 0 and out[:, 18:].min() == 255  # the centre column kept


def test_frames_are_sampled_at_the_target_fps(tmp_path):
    frames = square_frames(0, 4, 1, 8, size=32)  # x = 0, 2, 4, ... at 8 fps
    write_shards(tmp_path, [("k", encode(frames, 8.0), record("k", frames, 8.0))])
    config = DataConfig(shards=str(tmp_path / "*.tar"), height=32, width=32, fps=4, num_workers=0)
    batch = next(ClipBatches(config, 3, 1, seed=0))
    assert batch["fps"].tolist() == [4.0]
    columns = [int(np.argmax(f[0, 8].numpy() > 128)) for f in batch["frames"][0]]
    assert np.diff(columns).tolist() == [4, 4]  # every other frame: 2 px per frame x 2


def test_broken_samples_are_skipped_and_counted_and_missing_fields_defaulted(tmp_path):
    good = square_frames(0, 4, 1, 8)
    short = square_frames(0, 4, 1, 2)
    clips = [
        ("good", encode(good, 8.0), record("good", good, 8.0)),
        ("corrupt", b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4, record("corrupt", good, 8.0)),
        ("short", encode(short, 8.0), record("short", short, 8.0)),
        (
            "bare",
            encode(good, 8.0),
            record(
                "bare",
                good,
                8.0,
                motion_bucket_id=None,
                caption_coca=None,
                caption_vblip=None,
                caption_llm=None,
                caption=None,
            ),
        ),
    ]
    write_shards(tmp_path, clips)
    config = DataConfig(
        shards=str(tmp_path / "*.tar"),
        height=16,
        width=16,
        num_workers=0,
        shuffle_buffer=1,
        default_motion_bucket_id=100,
    )
    batches = ClipBatches(config, 4, 2, seed=0)
    batch = next(batches)
    assert sorted(batch["keys"]) == ["bare", "good"]
    bare = batch["keys"].index("bare")
    assert batch["captions"][bare] == "" and batch["motion_bucket_id"][bare].item() == 100
    assert batches.counts["skipped_unreadable"] == 1 and batches.counts["skipped_too_short"] == 1
    assert batches.counts["no_caption"] == 1 and batches.counts["default_motion_bucket"] == 1
    assert batches.position == 4


def test_the_stream_resumes_at_its_position_with_workers(tmp_path):
    square_shards(tmp_path, count=12, per_shard=3)
    config = DataConfig(shards=str(tmp_path / "*.tar"), height=16, width=16, num_workers=2, shuffle_buffer=4)
    straight = ClipBatches(config, 4, 1, seed=3)
    keys = [next(straight)["keys"][0] for _ in range(15)]  # past one epoch of 12
    resumed = ClipBatches(config, 4, 1, seed=3, position=7)
    assert [next(resumed)["keys"][0] for _ in range(8)] == keys[7:]
    assert len(set(keys[:12])) == 12  # one epoch sees every clip once
