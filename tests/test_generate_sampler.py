"""The sampler's schedule and denoiser against their definitions (EDM/Karras) and svd.model.parameterisation."""

import math

import pytest
import torch
from diffusers import EulerDiscreteScheduler
from tiny_models import SD15_SCHEDULER, SD21_SCHEDULER, SVD_SCHEDULER

from svd.generate.denoiser import denoise, guidance_scales
from svd.generate.schedule import Schedule
from svd.model.parameterisation import Backbone


def test_svd_schedule_is_karras_with_continuous_timesteps():
    schedule = Schedule.from_scheduler(EulerDiscreteScheduler(**SVD_SCHEDULER), 25)
    rho, low, high = 7.0, 0.002, 700.0
    karras = torch.tensor(
        [(high ** (1 / rho) + i / 24 * (low ** (1 / rho) - high ** (1 / rho))) ** rho for i in range(25)]
    )
    assert schedule.parameterisation == "edm" and schedule.prediction_type == "v_prediction"
    torch.testing.assert_close(schedule.sigmas[:-1], karras.float(), rtol=1e-5, atol=0)
    assert schedule.sigmas[-1] == 0
    torch.testing.assert_close(schedule.timesteps, 0.25 * schedule.sigmas[:-1].log())
    assert schedule.init_noise_sigma == pytest.approx(math.sqrt(700.0**2 + 1))


@pytest.mark.parametrize("config", [SD21_SCHEDULER, SD15_SCHEDULER], ids=["v_prediction", "epsilon"])
def test_backbone_denoiser_agrees_with_the_training_parameterisation(config):
    """At SD's own timesteps, the Euler-variable denoiser gives what `Backbone.denoise` gives on DDPM latents."""
    euler = EulerDiscreteScheduler.from_config({**config, "timestep_type": "discrete"})
    schedule = Schedule.from_scheduler(euler, 10)
    assert schedule.parameterisation == "backbone"
    backbone = Backbone(config)
    generator = torch.Generator().manual_seed(0)
    x_ddpm, output = torch.randn(2, 3, 4, 5, 5, generator=generator), torch.randn(2, 3, 4, 5, 5, generator=generator)
    for t in (1, 250, 999):
        alpha = backbone.alphas_cumprod[t]
        sigma = ((1 - alpha) / alpha).sqrt()
        ours = denoise(output, x_ddpm * (sigma**2 + 1).sqrt(), sigma, schedule.prediction_type)
        torch.testing.assert_close(ours, backbone.denoise(output, x_ddpm, torch.tensor([t, t])), rtol=1e-4, atol=1e-4)


def test_guidance_is_linear_over_frames():
    assert guidance_scales(1.0, 3.0, 5).flatten().tolist() == [1.0, 1.5, 2.0, 2.5, 3.0]
    assert guidance_scales(1.0, 3.0, 5).shape == (1, 5, 1, 1, 1)
