"""A model exported by `svd train` (tiny.yaml: an inflated SD, `backbone` parameterisation) generates, and
equals diffusers' pipeline loaded from the same export."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from diffusers import StableVideoDiffusionPipeline
from tiny_generate import random_image
from tiny_shards import square_shards
from tiny_train import TINY

from curation.config_io import load_config
from svd.cli import cli
from svd.generate.generator import VideoGenerator
from svd.generate.options import LoadOptions, SampleSettings
from svd.train.config import TrainConfig
from svd.train.loop import train


@pytest.fixture(scope="module")
def final(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    square_shards(folder / "shards", count=2, per_shard=2)
    overrides = [
        f"data.shards={folder / 'shards'}/*.tar",
        "data.height=16",
        "data.width=16",
        "data.num_workers=0",
        "train.max_steps=1",
        "train.batch_size=1",
        "validation.every=0",
    ]
    return train(load_config(TrainConfig, TINY, overrides), folder / "run").final


def test_the_export_generates_from_the_command_line(final, tmp_path):
    random_image(tmp_path / "square.png")
    args = ["generate", str(tmp_path / "square.png"), "-o", str(tmp_path / "v.gif"), "--model", str(final)]
    result = CliRunner().invoke(
        cli, [*args, "--height", "32", "--width", "32", "--steps", "2", "--seed", "0", "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["settings"]["num_frames"] == 4  # model.num_frames of tiny.yaml, stored in the UNet config
    assert (tmp_path / "v.gif").is_file() and (tmp_path / "v.condition.png").is_file()


def test_the_backbone_export_equals_the_diffusers_pipeline(final):
    generator = VideoGenerator.from_pretrained(str(final), LoadOptions(device="cpu", dtype="fp32"))
    settings = SampleSettings(steps=3, height=32, width=32, num_frames=3)
    image = random_image(size=(40, 40))
    ours = generator([image], [11], settings).frames
    pipeline = StableVideoDiffusionPipeline.from_pretrained(str(final))
    pipeline.set_progress_bar_config(disable=True)
    theirs = pipeline(
        image,
        height=32,
        width=32,
        num_frames=3,
        num_inference_steps=3,
        generator=torch.Generator().manual_seed(11),
        output_type="np",
    ).frames
    assert json.loads((final / "svd_train.json").read_text())["parameterisation"] == "backbone"
    assert pipeline.scheduler.config.timestep_type == "discrete"
    assert ours.std() > 0.01
    assert np.abs(ours - theirs).max() <= 1 / 255
