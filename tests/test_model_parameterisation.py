"""`edm` against its formulas and SVD's sampler; `backbone` against the SD backbone's diffusers scheduler."""

import math

import pytest
import torch
from diffusers import DDPMScheduler, EulerDiscreteScheduler
from tiny_models import SD15_SCHEDULER, SD21_SCHEDULER, SVD_SCHEDULER

from curation.config_io import ConfigError, load_config
from svd.model.config import VideoModelConfig
from svd.model.parameterisation import EDM, Backbone, make_parameterisation

SIGMAS = [0.002, 0.05, 0.5, 1.0, 3.0, 80.0, 700.0]


@pytest.mark.parametrize("sigma", SIGMAS)
def test_edm_preconditioning_and_weight_follow_the_formulas(sigma):
    s = torch.tensor([sigma], dtype=torch.float64)
    assert EDM.c_skip(s).item() == pytest.approx(1 / (sigma**2 + 1), rel=1e-12)
    assert EDM.c_out(s).item() == pytest.approx(-sigma / math.sqrt(sigma**2 + 1), rel=1e-12)
    assert EDM.c_in(s).item() == pytest.approx(1 / math.sqrt(sigma**2 + 1), rel=1e-12)
    assert EDM.c_noise(s).item() == pytest.approx(0.25 * math.log(sigma), rel=1e-12)
    assert EDM.loss_weight(s).item() == pytest.approx((1 + sigma**2) / sigma**2, rel=1e-12)


def test_edm_loss_is_the_weighted_error_of_the_denoised_latent():
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 2, 4, 5, 5, generator=generator, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    output = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    sigma = torch.tensor([0.1, 1.0, 20.0], dtype=torch.float64)
    edm = EDM()
    loss = edm.loss(output, x0, noise, sigma)
    for i, s in enumerate(sigma.tolist()):
        x = x0[i] + s * noise[i]
        denoised = x / (s**2 + 1) - s / math.sqrt(s**2 + 1) * output[i]
        expected = (1 + s**2) / s**2 * ((denoised - x0[i]) ** 2).mean()
        assert loss[i].item() == pytest.approx(expected.item(), rel=1e-12)
    # The ideal output F* = (x0 - c_skip x) / c_out is the v target (n - sigma x0) / sqrt(sigma^2 + 1): zero loss.
    s = sigma.reshape(-1, 1, 1, 1, 1)
    v = (noise - s * x0) / torch.sqrt(s**2 + 1)
    assert torch.allclose(edm.loss(v, x0, noise, sigma), torch.zeros(3, dtype=torch.float64), atol=1e-20)


def test_edm_matches_the_svd_sampler_at_every_sampling_sigma():
    """diffusers' SVD scheduler scales the input by c_in, embeds c_noise, and denoises with c_skip / c_out."""
    scheduler = EulerDiscreteScheduler(**SVD_SCHEDULER)
    scheduler.set_timesteps(5)
    edm = EDM()
    generator = torch.Generator().manual_seed(0)
    for step, sigma in enumerate(scheduler.sigmas[:-1]):
        x = torch.randn(1, 2, 4, 3, 3, generator=generator) * sigma
        output = torch.randn(x.shape, generator=generator)
        t = scheduler.timesteps[step]
        levels = sigma.reshape(1)
        sample, timestep = edm.unet_inputs(x, levels)
        assert torch.allclose(sample, scheduler.scale_model_input(x, t), rtol=1e-6)
        assert timestep.item() == pytest.approx(t.item(), rel=1e-5)
        expected = scheduler.step(output, t, x).pred_original_sample
        assert torch.allclose(edm.denoise(output, x, levels), expected, rtol=1e-5, atol=1e-5)


def test_edm_samples_log_normal_sigmas():
    edm = EDM(p_mean=0.7, p_std=1.6)
    log_sigma = edm.sample_levels(200_000, generator=torch.Generator().manual_seed(0)).log()
    assert log_sigma.mean().item() == pytest.approx(0.7, abs=0.01)
    assert log_sigma.std().item() == pytest.approx(1.6, abs=0.01)


def test_edm_noise_is_added_at_sigma():
    x0, noise = torch.ones(2, 1, 1, 2, 2), torch.full((2, 1, 1, 2, 2), 2.0)
    noisy = EDM().add_noise(x0, noise, torch.tensor([0.5, 3.0]))
    assert torch.equal(noisy[0], torch.full((1, 1, 2, 2), 2.0)) and torch.equal(noisy[1], torch.full((1, 1, 2, 2), 7.0))


@pytest.mark.parametrize(
    ("config", "prediction"), [(SD21_SCHEDULER, "v_prediction"), (SD15_SCHEDULER, "epsilon")], ids=["sd21", "sd15"]
)
def test_backbone_matches_the_backbone_scheduler(config, prediction):
    backbone = Backbone(config)
    assert backbone.prediction_type == prediction
    reference = DDPMScheduler.from_config(config, clip_sample=False)  # step() would clip its x0 estimate
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 3, 4, 5, 5, generator=generator)
    noise = torch.randn(x0.shape, generator=generator)
    t = torch.tensor([0, 1, 500, 999])

    noisy = backbone.add_noise(x0, noise, t)
    assert torch.allclose(noisy, reference.add_noise(x0, noise, t), atol=1e-6)
    target = reference.get_velocity(x0, noise, t) if prediction == "v_prediction" else noise
    assert torch.allclose(backbone.target(x0, noise, t), target, atol=1e-6)
    sample, timestep = backbone.unet_inputs(noisy, t)
    assert sample is noisy and torch.equal(timestep, t)  # the frozen UNet sees what SD saw in training

    output = torch.randn(x0.shape, generator=generator)
    for i in range(len(t)):
        expected = reference.step(output[i], int(t[i]), noisy[i], generator=generator).pred_original_sample
        assert torch.allclose(
            backbone.denoise(output[i : i + 1], noisy[i : i + 1], t[i : i + 1])[0], expected, atol=1e-4
        )
    loss = backbone.loss(output, x0, noise, t)
    assert torch.allclose(loss, ((output - target) ** 2).flatten(1).mean(1), atol=1e-6)


def test_backbone_samples_every_training_timestep():
    levels = Backbone(SD21_SCHEDULER).sample_levels(20_000, generator=torch.Generator().manual_seed(0))
    assert levels.dtype == torch.int64
    assert levels.min().item() == 0 and levels.max().item() == 999


def test_parameterisation_follows_the_base_by_default():
    assert isinstance(make_parameterisation(load_config(VideoModelConfig)), EDM)
    sd = load_config(VideoModelConfig, overrides=["base_kind=sd", "base=stabilityai/stable-diffusion-2-1"])
    assert sd.resolved_parameterisation() == "backbone"
    assert isinstance(make_parameterisation(sd, SD21_SCHEDULER), Backbone)
    with pytest.raises(ValueError, match="scheduler config"):
        make_parameterisation(sd, None)
    edm = load_config(VideoModelConfig, overrides=["edm.p_mean=1.0", "edm.p_std=1.6"])
    assert make_parameterisation(edm).p_mean == 1.0


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["parameterisation=backbone"], "needs an SD backbone"),
        (["base_kind=sd", "parameterisation=edm"], "frozen SD backbone"),
    ],
)
def test_inconsistent_model_configs_are_refused(overrides, words):
    config = load_config(VideoModelConfig, overrides=overrides)
    with pytest.raises(ValueError, match=words):
        make_parameterisation(config, SD21_SCHEDULER)


def test_unknown_freeze_policy_is_a_config_error():
    with pytest.raises(ConfigError, match="freeze"):
        load_config(VideoModelConfig, overrides=["freeze=spatial"])


def test_edm_on_a_fully_trained_sd_backbone_is_allowed():
    config = load_config(VideoModelConfig, overrides=["base_kind=sd", "freeze=all", "parameterisation=edm"])
    assert config.resolved_parameterisation() == "edm"
