"""Saving and loading in diffusers layout, official-SVD-layout checkpoints, and the `svd inflate` command."""

import json

import pytest
import torch
from click.testing import CliRunner
from diffusers import DDIMScheduler, UNetSpatioTemporalConditionModel
from safetensors import safe_open
from tiny_models import CROSS_DIM, LATENT, SD21_SCHEDULER, sd_unet, svd_pipeline

from svd.cli import cli
from svd.model.inflate import inflate
from svd.model.loading import ModelSourceError, load_sd_unet, load_svd, save_unet


def video_forward(model, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(1, 3, 8, LATENT, LATENT, generator=generator)
    context = torch.randn(1, 4, CROSS_DIM, generator=generator)
    added = torch.randn(1, 3, generator=generator)
    with torch.no_grad():
        return model(sample, 42, encoder_hidden_states=context, added_time_ids=added).sample


def randomised(model):
    """Every weight non-trivial, so an output comparison exercises all of them (temporal paths included)."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p + 0.05 * torch.randn(p.shape, generator=generator))
    return model


def assert_same_model(reloaded, model) -> None:
    """Bit-identical weights, and the same outputs. Not bit-identical outputs: from_pretrained leaves weights in
    the safetensors buffer, at addresses CPU kernels do not always pick the same code path for (last-bit
    differences, about 1e-6)."""
    expected = model.state_dict()
    assert reloaded.state_dict().keys() == expected.keys()
    assert all(torch.equal(tensor, expected[name]) for name, tensor in reloaded.state_dict().items())
    torch.testing.assert_close(video_forward(reloaded.eval()), video_forward(model.eval()), atol=1e-5, rtol=0)


def test_saved_model_reloads_with_from_pretrained_and_gives_identical_outputs(tmp_path):
    model = randomised(inflate(sd_unet("sd2"))).eval()
    save_unet(model, tmp_path / "unet")
    assert (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list((tmp_path / "unet").glob("*.bin"))
    assert_same_model(UNetSpatioTemporalConditionModel.from_pretrained(tmp_path / "unet"), model)


def save_sd_pipeline_folder(folder, **unet_overrides):
    """The parts of an SD pipeline folder that inflation reads: unet/ and scheduler/."""
    unet = sd_unet("sd2", **unet_overrides)
    unet.save_pretrained(folder / "unet")
    DDIMScheduler.from_config(SD21_SCHEDULER).save_pretrained(folder / "scheduler")
    return unet


def test_sd_unet_is_read_from_a_pipeline_or_unet_folder_with_its_scheduler(tmp_path):
    saved = save_sd_pipeline_folder(tmp_path / "sd").state_dict()
    for source in (tmp_path / "sd", tmp_path / "sd" / "unet"):
        unet, scheduler = load_sd_unet(str(source))
        assert all(torch.equal(tensor, saved[name]) for name, tensor in unet.state_dict().items())
        assert scheduler["prediction_type"] == "v_prediction"


def unreadable(kind: str, root) -> str:
    if kind == "empty":
        (root / "empty").mkdir()
    if kind == "file":
        (root / "file").write_text("x")
    return "nobody/no-such-model" if kind == "hub-offline" else str(root / kind)


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("missing", "no such folder"),
        ("empty", "neither a diffusers UNet folder"),
        ("file", "not a folder"),
        ("hub-offline", "cannot be loaded"),  # a hub id; the hub is offline in tests
    ],
)
def test_unreadable_sd_sources_are_one_line_errors(tmp_path, kind, words):
    with pytest.raises(ModelSourceError, match=words) as error:
        load_sd_unet(unreadable(kind, tmp_path))
    assert "\n" not in str(error.value)


def test_an_svd_checkpoint_in_diffusers_layout_loads(tmp_path):
    pipeline = svd_pipeline(randomised(inflate(sd_unet("sd2"))))
    pipeline.save_pretrained(tmp_path / "svd")
    components = load_svd(str(tmp_path / "svd"))
    assert_same_model(components.unet, pipeline.unet)
    vae_state = pipeline.vae.state_dict()
    assert all(torch.equal(t, vae_state[k]) for k, t in components.vae.state_dict().items())
    assert components.scheduler.config.prediction_type == "v_prediction"
    assert components.scheduler.config.timestep_type == "continuous"
    assert components.image_encoder.config.projection_dim == CROSS_DIM
    assert components.feature_extractor.image_mean == pipeline.feature_extractor.image_mean


def test_an_svd_folder_missing_parts_says_which(tmp_path):
    inflate(sd_unet("sd2")).save_pretrained(tmp_path / "svd" / "unet")
    with pytest.raises(ModelSourceError, match=r"lacks vae/, image_encoder/, feature_extractor/, scheduler/"):
        load_svd(str(tmp_path / "svd"))


def test_svd_inflate_writes_a_folder_that_from_pretrained_reads(tmp_path):
    sd = save_sd_pipeline_folder(tmp_path / "sd")
    result = CliRunner().invoke(cli, ["inflate", str(tmp_path / "sd"), "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 0, result.output
    assert "new temporal layers" in result.output
    reloaded = UNetSpatioTemporalConditionModel.from_pretrained(tmp_path / "out").eval()
    sd_state = sd.state_dict()
    for name, tensor in reloaded.state_dict().items():
        if name.replace(".spatial_res_block.", ".") in sd_state and name != "conv_in.weight":
            assert torch.equal(tensor, sd_state[name.replace(".spatial_res_block.", ".")]), name
    # Temporal layers are freshly random (only their outputs are zero): compare behaviour, not those weights.
    torch.testing.assert_close(video_forward(reloaded), video_forward(inflate(sd).eval()), atol=1e-5, rtol=0)
    provenance = json.loads((tmp_path / "out" / "inflated_from.json").read_text())
    assert provenance["scheduler"]["prediction_type"] == "v_prediction"
    assert provenance["sd_unet_config"]["norm_num_groups"] == 32
    assert {p.name for p in tmp_path.iterdir()} == {"sd", "out"}  # no staging folder left behind


def test_svd_inflate_overwrites_only_when_asked(tmp_path):
    save_sd_pipeline_folder(tmp_path / "sd")
    args = ["inflate", str(tmp_path / "sd"), "-o", str(tmp_path / "out"), "--dtype", "fp16"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert CliRunner().invoke(cli, [*args, "--overwrite"]).exit_code == 0
    with safe_open(tmp_path / "out" / "diffusion_pytorch_model.safetensors", "pt") as weights:
        assert {weights.get_tensor(name).dtype for name in weights.keys()} == {torch.float16}


def bad_source(kind: str, root) -> str:
    if kind == "16-groups":
        save_sd_pipeline_folder(root / "g16", norm_num_groups=16)
        return str(root / "g16")
    return {"missing": str(root / "missing"), "hub-offline": "nobody/no-such-model"}[kind]


@pytest.mark.parametrize(
    ("kind", "words"),
    [("missing", "no such folder"), ("16-groups", "norm_num_groups is 16"), ("hub-offline", "cannot be loaded")],
)
def test_svd_inflate_user_mistakes_are_one_line_exit_2(tmp_path, kind, words):
    result = CliRunner().invoke(cli, ["inflate", bad_source(kind, tmp_path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_svd_inflate_help_names_the_input_kinds_and_outputs():
    result = CliRunner().invoke(cli, ["inflate", "--help"])
    assert result.exit_code == 0
    for word in ("SD_UNET", "pipeline folder", "hub id", "inflated_from.json", "--num-frames", "--overwrite"):
        assert word in result.output
