"""LoRA (`model.lora`): only the adapter trains and is checkpointed, resume is exact, and the export is a peft
adapter folder that peft loads and `svd generate --lora` applies, giving the frames of the merged export."""

import json

import numpy as np
import peft
import PIL.Image
import pytest
import torch
from click.testing import CliRunner
from diffusers import UNetSpatioTemporalConditionModel
from safetensors.torch import load_file
from tiny_generate import random_image, save_tiny_svd
from tiny_shards import square_shards
from tiny_train import assert_same_checkpoints, tiny_config

from svd.cli import cli
from svd.model.config import LoraConfig
from svd.model.lora import TARGET_GROUPS, AdapterError, add_lora
from svd.train.loop import train

TARGETS = "[all_attention, temporal]"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    square_shards(folder, count=8, per_shard=4)
    return str(folder / "*.tar")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return save_tiny_svd(tmp_path_factory.mktemp("svd"))


def lora_config(shards, base, *overrides):
    return tiny_config(
        shards,
        "model.random=null",
        "model.base_kind=svd",
        f"model.base={base}",
        "model.lora.rank=4",
        f"model.lora.targets={TARGETS}",
        "train.lr=1e-2",  # big steps: the adapter must change the frames visibly within a few steps
        "train.warmup_steps=0",
        "validation.every=0",
        "data.num_workers=0",
        *overrides,
    )


@pytest.fixture(scope="module")
def merged_run(shards, base, tmp_path_factory):
    config = lora_config(shards, base, "train.max_steps=3", "train.checkpoint_every=3", "export.merge_lora=true")
    return train(config, tmp_path_factory.mktemp("run"))


def test_only_the_adapter_trains_and_is_checkpointed(merged_run, base):
    trained = load_file(merged_run.run_dir / "checkpoints" / "step-00000003" / "trainable.safetensors")
    optimizer = load_file(merged_run.run_dir / "checkpoints" / "step-00000003" / "optimizer.safetensors")
    assert trained and all(".lora_A." in name or ".lora_B." in name for name in trained)
    assert {key.split(".")[1] for key in optimizer} == {str(index) for index in range(len(trained))}
    assert any(name.endswith("lora_B.default.weight") and tensor.abs().max() > 0 for name, tensor in trained.items())

    # The merged export: every layer without an adapter is the base's, bit for bit; the others are base + B A.
    start = UNetSpatioTemporalConditionModel.from_pretrained(base / "unet").state_dict()
    merged = UNetSpatioTemporalConditionModel.from_pretrained(merged_run.final / "unet").state_dict()
    adapted = {name.split(".lora_")[0] for name in trained}
    untouched = [name for name in start if name.rsplit(".", 1)[0] not in adapted]
    assert len(untouched) < len(start) and all(torch.equal(merged[name], start[name]) for name in untouched)
    assert all(not torch.equal(merged[f"{layer}.weight"], start[f"{layer}.weight"]) for layer in adapted)


def test_the_adapter_folder_loads_with_peft_and_equals_the_merged_export(merged_run, base):
    folder = merged_run.final / "lora"
    assert {p.name for p in folder.iterdir()} == {"adapter_config.json", "adapter_model.safetensors"}
    assert json.loads((folder / "adapter_config.json").read_text())["r"] == 4
    with_peft = peft.PeftModel.from_pretrained(UNetSpatioTemporalConditionModel.from_pretrained(base / "unet"), folder)
    merged = UNetSpatioTemporalConditionModel.from_pretrained(merged_run.final / "unet")
    plain = UNetSpatioTemporalConditionModel.from_pretrained(base / "unet")
    generator = torch.Generator().manual_seed(0)
    inputs = (torch.randn(1, 4, 8, 8, 8, generator=generator), torch.tensor([3.0]))
    extra = {
        "encoder_hidden_states": torch.randn(1, 1, 32, generator=generator),
        "added_time_ids": torch.tensor([[6.0, 127.0, 0.02]]),
    }
    with torch.no_grad():
        outputs = [model(*inputs, **extra).sample for model in (with_peft, merged, plain)]
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-4, atol=1e-5)
    assert (outputs[0] - outputs[2]).abs().max() > 1e-3


def test_svd_generate_with_the_adapter_gives_the_frames_of_the_merged_export(merged_run, base, tmp_path):
    image = tmp_path / "cat.png"
    random_image(image, size=(32, 32))
    common = [str(image), "--height", "32", "--width", "32", "--steps", "2", "--seed", "3", "--num-frames", "4", "-q"]

    def frames(name, *args):
        result = CliRunner().invoke(cli, ["generate", *common, "-o", str(tmp_path / name), *args])
        assert result.exit_code == 0, result.output
        return np.stack([np.asarray(PIL.Image.open(p)) for p in sorted((tmp_path / name).iterdir())]).astype(int)

    with_lora = frames("lora", "--model", str(base), "--lora", str(merged_run.final / "lora"))
    merged = frames("merged", "--model", str(merged_run.final))
    plain = frames("plain", "--model", str(base))
    scaled_to_zero = frames("zero", "--model", str(base), "--lora", str(merged_run.final / "lora"), "--lora-scale", "0")
    assert with_lora.shape == merged.shape and np.abs(with_lora - merged).max() <= 1
    assert np.array_equal(scaled_to_zero, plain)
    assert np.abs(with_lora - plain).mean() > 1.0


def test_lora_resume_continues_exactly(shards, base, tmp_path):
    settings = ("train.checkpoint_every=2", "train.ema_decay=0.9")
    straight = train(lora_config(shards, base, "train.max_steps=4", *settings), tmp_path / "straight")
    first = train(lora_config(shards, base, "train.max_steps=2", *settings), tmp_path / "resumed")
    second = train(lora_config(shards, base, "train.max_steps=4", *settings), tmp_path / "resumed", resume=True)
    assert {**first.losses, **second.losses} == pytest.approx(straight.losses, rel=1e-5, abs=1e-7)
    assert_same_checkpoints(tmp_path / "straight", tmp_path / "resumed", 4)
    # Without export.merge_lora the export is the adapter alone.
    assert {p.name for p in (tmp_path / "straight" / "final").iterdir()} == {"lora", "svd_train.json"}


@pytest.mark.parametrize("group", list(TARGET_GROUPS))
def test_each_target_group_adapts_the_layers_it_names(group):
    from tiny_generate import tiny_svd_unet

    unet = tiny_svd_unet()
    add_lora(unet, LoraConfig(rank=2, targets=[group]))
    layers = {name.split(".lora_")[0] for name, p in unet.named_parameters() if p.requires_grad}
    assert layers and all(".lora_" in name for name, p in unet.named_parameters() if p.requires_grad)
    temporal = {layer for layer in layers if "temporal_" in layer}
    attention = {layer for layer in layers if ".attn" in layer}
    expected = {
        "temporal": layers == temporal and attention < layers,  # feed-forwards and temporal resnets too
        "temporal_attention": layers == temporal == attention,
        "spatial_attention": layers == attention and not temporal,
        "all_attention": layers == attention and temporal and temporal < layers,
    }
    assert expected[group]


def test_targets_that_match_nothing_are_one_line():
    from tiny_generate import tiny_svd_unet

    with pytest.raises(AdapterError, match="matches no layer"):
        add_lora(tiny_svd_unet(), LoraConfig(rank=2, targets=[r".*no_such_layer"]))
