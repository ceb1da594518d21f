"""`svd train` end to end on tiny shards: checkpoints, frozen weights, resume, export, the command line."""

import json

import pytest
import torch
from click.testing import CliRunner
from diffusers import UNetSpatioTemporalConditionModel
from safetensors.torch import load_file
from tiny_shards import assert_export_samples, encode, record, square_frames, square_shards, write_shards
from tiny_train import TINY, assert_same_checkpoints, tiny_config

from curation.config_io import load_config
from svd.cli import cli
from svd.model.freeze import is_trainable
from svd.train.components import build_components
from svd.train.config import TrainConfig
from svd.train.loop import lr_factor, train


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Two shards of moving squares; the second also holds a corrupt clip."""
    folder = tmp_path_factory.mktemp("shards")
    square_shards(folder, count=8, per_shard=8)
    frames = square_frames(0, 4, 1, 8)
    write_shards(
        folder / "more",
        [
            ("corrupt", b"not a video", record("corrupt", frames, 8.0)),
            ("ok", encode(frames, 8.0), record("ok", frames, 8.0)),
        ],
    )
    (folder / "more" / "shard-000000.tar").rename(folder / "shard-000001.tar")
    return str(folder / "shard-*.tar")


@pytest.fixture(scope="module")
def short_run(shards, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    config = tiny_config(
        shards,
        "train.max_steps=3",
        "train.checkpoint_every=2",
        "validation.every=3",
        "validation.num_inference_steps=2",
        "data.num_workers=2",
    )
    return config, train(config, run_dir)


def test_a_few_steps_write_checkpoints_a_validation_video_and_the_export(short_run):
    config, result = short_run
    run = result.run_dir
    assert (
        result.step == 3 and len(result.losses) == 3 and all(torch.isfinite(torch.tensor(list(result.losses.values()))))
    )
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000002", "step-00000003"]
    last = run / "checkpoints" / "step-00000003"
    assert {p.name for p in last.iterdir()} == {
        "trainable.safetensors",
        "ema.safetensors",
        "optimizer.safetensors",
        "rng.safetensors",
        "state.json",
    }
    state = json.loads((last / "state.json").read_text())
    assert state["step"] == 3 and state["ranks"][0]["data_position"] >= 6
    assert (run / "validation" / "step-00000003.mp4").stat().st_size > 0
    assert (run / "config.yaml").is_file() and (run / "final" / "unet" / "config.json").is_file()
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "lr", "step_time_s", "samples_per_s"} <= set(lines[-1])


def test_frozen_parameters_are_bit_identical_and_trainable_ones_moved(short_run, tmp_path):
    config, result = short_run
    start = build_components(config.model, tmp_path).unet.state_dict()
    final = UNetSpatioTemporalConditionModel.from_pretrained(result.run_dir / "final" / "unet").state_dict()
    trained = load_file(result.run_dir / "checkpoints" / "step-00000003" / "trainable.safetensors")
    frozen = [name for name in start if not is_trainable(name, config.model.freeze)]
    assert frozen and all(torch.equal(final[name], start[name]) for name in frozen)
    assert set(trained) == {name for name in start if is_trainable(name, config.model.freeze)}
    assert any(not torch.equal(trained[name], start[name]) for name in trained)


def test_the_export_loads_in_diffusers_svd_pipeline(short_run):
    _, result = short_run
    assert_export_samples(result.run_dir / "final")


def test_resume_continues_exactly_where_the_run_stopped(shards, tmp_path):
    settings = ("train.checkpoint_every=2", "data.num_workers=2", "validation.every=0")
    straight = train(tiny_config(shards, "train.max_steps=4", *settings), tmp_path / "straight")
    first = train(tiny_config(shards, "train.max_steps=2", *settings), tmp_path / "resumed")
    second = train(tiny_config(shards, "train.max_steps=4", *settings), tmp_path / "resumed", resume=True)
    assert list(first.losses) == [1, 2] and list(second.losses) == [3, 4]
    losses = {**first.losses, **second.losses}
    assert losses == pytest.approx(straight.losses, rel=1e-5, abs=1e-7)
    assert_same_checkpoints(tmp_path / "straight", tmp_path / "resumed", 4)
    assert second.counts == straight.counts


def test_text_to_video_from_an_inflated_sd_trains_and_exports_its_parts(shards, tmp_path):
    config = tiny_config(
        shards,
        "model.conditioning=text",
        "model.freeze=temporal",
        "train.max_steps=2",
        "validation.every=2",
        "validation.num_inference_steps=2",
        "validation.prompt=a square",
        "data.num_workers=0",
        "model.random.vae={block_out_channels: [32, 64], down_block_types: [DownEncoderBlock2D, DownEncoderBlock2D], "
        "up_block_types: [UpDecoderBlock2D, UpDecoderBlock2D], latent_channels: 4}",
        "model.random.text_encoder={vocab_size: 64, hidden_size: 32, intermediate_size: 37, num_hidden_layers: 2, "
        "num_attention_heads: 4, max_position_embeddings: 16, projection_dim: 32}",
    )
    result = train(config, tmp_path / "t2v")
    final = result.run_dir / "final"
    assert {p.name for p in final.iterdir()} >= {"unet", "vae", "text_encoder", "tokenizer", "scheduler"}
    assert json.loads((final / "svd_train.json").read_text())["conditioning"] == "text"
    assert (result.run_dir / "validation" / "step-00000002.mp4").is_file()


def test_lr_warms_up_then_follows_the_schedule():
    config = load_config(
        TrainConfig,
        None,
        ["train.warmup_steps=4", "train.max_steps=14", "train.schedule=cosine", "train.min_lr_ratio=0.1"],
    )
    factors = [lr_factor(step, config.train) for step in range(14)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == 1.0 and factors[-1] == pytest.approx(
        0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(0.9 * torch.pi)).item())
    )
    assert all(a >= b for a, b in zip(factors[4:], factors[5:], strict=False))


def test_cli_reports_config_errors_in_one_line_and_trains(shards, tmp_path):
    runner = CliRunner()
    bad = runner.invoke(cli, ["train", "-c", str(TINY), "-o", str(tmp_path / "r"), "--set", "train.max_step=3"])
    assert bad.exit_code == 2 and "did you mean train.max_steps" in bad.output
    missing = runner.invoke(
        cli, ["train", "-c", str(TINY), "-o", str(tmp_path / "r"), "--set", f"data.shards={tmp_path}/nothing-*.tar"]
    )
    assert missing.exit_code == 2 and "matches no file" in missing.output
    ok = runner.invoke(
        cli,
        [
            "train",
            "-c",
            str(TINY),
            "-o",
            str(tmp_path / "r"),
            "--set",
            f"data.shards={shards}",
            "--set",
            "data.height=16",
            "--set",
            "data.width=16",
            "--set",
            "train.max_steps=1",
            "--set",
            "validation.every=0",
            "--set",
            "data.num_workers=0",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "r" / "final" / "model_index.json").is_file()
