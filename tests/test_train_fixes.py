"""The fixes from issue 18's audit of the trainer against sgm, SVD_Xtend and diffusers, each on the tiny model.

(The third, VAE encodes outside autocast, is tested with the latent cache in test_train_cache.py and on the
conditioner in test_model_conditioning.py.)
"""

import json

import pytest
import torch
import yaml
from click.testing import CliRunner
from diffusers import UNet2DConditionModel, UNetSpatioTemporalConditionModel
from safetensors.torch import load_file
from tiny_generate import save_tiny_svd
from tiny_models import SD15_SCHEDULER
from tiny_train import TINY, tiny_config, tiny_parts

import svd.train.loop
from svd.cli import cli
from svd.model.inflate import inflate_checkpoint
from svd.train.components import build_components
from svd.train.loop import train

QUICK = ("train.max_steps=2", "validation.every=0", "data.num_workers=0", "train.checkpoint_every=100")


@pytest.fixture(scope="module")
def shards(square_shards_glob):
    return square_shards_glob


def test_an_svd_inflate_folder_is_a_base_and_keeps_the_parameterisation_it_records(shards, tmp_path):
    sd, parts = tiny_parts(tmp_path / "parts")
    # An epsilon-prediction SD (1.5's scheduler), so the recorded parameterisation is not the default v one.
    (sd / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD15_SCHEDULER))
    inflated = inflate_checkpoint(str(sd), tmp_path / "inflated", num_frames=4).output
    config = tiny_config(shards, "model.random=null", f"model.base={inflated}", f"model.image_parts={parts}", *QUICK)

    components = build_components(config.model, tmp_path / "work")
    assert components.parameterisation.prediction_type == "epsilon"
    on_disk = UNetSpatioTemporalConditionModel.from_pretrained(inflated).state_dict()
    assert all(torch.equal(tensor, on_disk[name]) for name, tensor in components.unet.state_dict().items())
    result = train(config, tmp_path / "run")
    assert result.step == 2 and (result.final / "unet" / "config.json").is_file()


def test_the_export_samples_the_trained_frame_count(shards, tmp_path):
    base = save_tiny_svd(tmp_path / "svd")  # its UNet config says 3 frames, as SVD-xt's says 25
    assert json.loads((base / "unet" / "config.json").read_text())["num_frames"] == 3
    config = tiny_config(
        shards, "model.random=null", "model.base_kind=svd", f"model.base={base}", "model.freeze=temporal", *QUICK
    )
    assert config.model.num_frames == 4
    result = train(config, tmp_path / "run")
    assert json.loads((result.final / "unet" / "config.json").read_text())["num_frames"] == 4


@pytest.mark.parametrize("use_ema", [True, False])
def test_validation_samples_with_the_ema_weights_when_asked(shards, tmp_path, monkeypatch, use_ema):
    seen = []
    real = svd.train.loop.validation_video

    def recording(components, unet, *args, **kwargs):
        seen.append({name: tensor.clone() for name, tensor in unet.state_dict().items()})
        return real(components, unet, *args, **kwargs)

    monkeypatch.setattr(svd.train.loop, "validation_video", recording)
    config = tiny_config(
        shards,
        "train.max_steps=2",
        "train.ema_decay=0.5",  # the average stays well apart from the last weights
        "train.checkpoint_every=2",
        "validation.every=2",
        "validation.num_inference_steps=1",
        f"validation.ema={use_ema}",
        "data.num_workers=0",
    )
    result = train(config, tmp_path / "run")
    checkpoint = result.run_dir / "checkpoints" / "step-00000002"
    expected = load_file(checkpoint / ("ema.safetensors" if use_ema else "trainable.safetensors"))
    other = load_file(checkpoint / ("trainable.safetensors" if use_ema else "ema.safetensors"))
    assert len(seen) == 1
    assert all(torch.equal(seen[0][name], tensor) for name, tensor in expected.items())
    assert any(not torch.equal(seen[0][name], tensor) for name, tensor in other.items())


def test_an_sd1_base_for_image_to_video_is_a_one_line_config_error(shards, tmp_path):
    random = yaml.safe_load(TINY.read_text())["model"]["random"]
    sd1 = tmp_path / "sd1"
    UNet2DConditionModel(**{**random["unet"], "cross_attention_dim": 48}).save_pretrained(sd1 / "unet")
    (sd1 / "scheduler").mkdir()
    (sd1 / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD15_SCHEDULER))
    _, parts = tiny_parts(tmp_path / "parts")  # its image encoder embeds in 32 dimensions
    overrides = ["model.random=null", f"model.base={sd1}", f"model.image_parts={parts}", f"data.shards={shards}"]
    overrides += QUICK
    result = CliRunner().invoke(
        cli, ["train", "-c", str(TINY), "-o", str(tmp_path / "run"), *(f"--set={item}" for item in overrides)]
    )
    assert result.exit_code == 2, result.output
    assert "48-d context, but the image encoder embeds images in 32 dimensions" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run" / "final").exists()
