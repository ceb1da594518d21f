"""Each sampler against the matching diffusers scheduler in diffusers' own SVD pipeline (same tiny weights, image,
seed and settings), for SVD's EDM schedule and for a frozen SD backbone's; and every sampler against the exact
solution on data whose denoiser is known in closed form."""

import math

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EDMDPMSolverMultistepScheduler,
    EDMEulerScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
)
from tiny_generate import components, random_image, tiny_svd_pipeline
from tiny_models import SD15_SCHEDULER, SD21_SCHEDULER, SVD_SCHEDULER

from svd.generate.generator import VideoGenerator
from svd.generate.options import LoadOptions, SampleSettings
from svd.generate.sampler import DDIMSampler, DPMPP2MSampler, EulerSampler, HeunSampler, make_sampler
from svd.generate.schedule import Schedule

TOLERANCE = 1 / 255
BACKBONE = {**SD21_SCHEDULER, "timestep_type": "discrete"}
EDM_LEVELS = {"sigma_min": 0.002, "sigma_max": 700.0, "sigma_data": 1.0, "prediction_type": "v_prediction"}

# (sampler, our scheduler config, the diffusers scheduler that samples the same way)
CASES = {
    "euler-edm": ("euler", SVD_SCHEDULER, lambda: EDMEulerScheduler(**EDM_LEVELS)),
    "dpmpp_2m-edm": ("dpmpp_2m", SVD_SCHEDULER, lambda: EDMDPMSolverMultistepScheduler(**EDM_LEVELS)),
    "euler-backbone": ("euler", BACKBONE, lambda: EulerDiscreteScheduler.from_config(BACKBONE)),
    "heun-backbone": ("heun", BACKBONE, lambda: HeunDiscreteScheduler.from_config(BACKBONE)),
    "dpmpp_2m-backbone": (
        "dpmpp_2m",
        BACKBONE,
        lambda: DPMSolverMultistepScheduler.from_config(
            BACKBONE, use_karras_sigmas=True, algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero"
        ),
    ),
    "ddim-backbone": (
        "ddim",
        BACKBONE,
        lambda: DDIMScheduler.from_config(BACKBONE, timestep_spacing="leading", clip_sample=False),
    ),
    "heun-epsilon": ("heun", SD15_SCHEDULER, lambda: HeunDiscreteScheduler.from_config(SD15_SCHEDULER)),
    "ddim-epsilon": (
        "ddim",
        SD15_SCHEDULER,
        lambda: DDIMScheduler.from_config(SD15_SCHEDULER, timestep_spacing="leading", clip_sample=False),
    ),
}


def with_scheduler(scheduler):
    pipeline = tiny_svd_pipeline()
    pipeline.scheduler = scheduler
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.mark.parametrize("case", CASES)
def test_each_sampler_gives_the_diffusers_schedulers_frames(case):
    name, config, reference_scheduler = CASES[case]
    settings = SampleSettings(steps=6, height=32, width=32, sampler=name)
    image = random_image(size=(40, 40))
    ours = VideoGenerator(
        components(with_scheduler(EulerDiscreteScheduler.from_config(config))), LoadOptions(device="cpu")
    )([image], [3], settings).frames
    theirs = with_scheduler(reference_scheduler())(
        image,
        height=32,
        width=32,
        num_inference_steps=6,
        generator=torch.Generator().manual_seed(3),
        output_type="np",
    ).frames
    assert ours.std() > 0.01
    assert np.abs(ours - theirs).max() <= TOLERANCE
    if name != "euler":  # and the method matters: the frames differ from Euler's on the same levels
        euler = VideoGenerator(
            components(with_scheduler(EulerDiscreteScheduler.from_config(config))), LoadOptions(device="cpu")
        )([image], [3], SampleSettings(steps=6, height=32, width=32)).frames
        assert np.abs(ours - euler).max() > 2 * TOLERANCE


def test_churn_draws_each_videos_noise_from_its_seed():
    generator = VideoGenerator(components(tiny_svd_pipeline()), LoadOptions(device="cpu"))
    images = [random_image(seed=1), random_image(seed=2)]
    plain = SampleSettings(steps=4, height=32, width=32)
    churned = SampleSettings(steps=4, height=32, width=32, s_churn=2.0)
    zero_churn = generator(images[:1], [5], SampleSettings(steps=4, height=32, width=32, s_churn=0.0)).frames
    assert np.array_equal(zero_churn, generator(images[:1], [5], plain).frames)
    batch = generator(images, [5, 6], churned).frames
    assert np.abs(batch[1:] - generator(images[1:], [6], churned).frames).max() <= 1e-4  # not its batch's noise
    assert np.array_equal(batch, generator(images, [5, 6], churned).frames)
    assert np.abs(batch[:1] - zero_churn).max() > 2 * TOLERANCE


def test_backbone_levels_off_the_schedule_get_interpolated_sd_timesteps():
    schedule = Schedule.from_scheduler(EulerDiscreteScheduler.from_config(BACKBONE), 10)
    for sigma, timestep in zip(schedule.sigmas[:-1], schedule.timesteps, strict=True):
        assert float(schedule.timestep(sigma)) == pytest.approx(float(timestep), abs=0.05)
    between = (schedule.sigmas[2] * schedule.sigmas[3]).sqrt()
    assert float(schedule.timesteps[3]) < float(schedule.timestep(between)) < float(schedule.timesteps[2])


def test_refusals():
    with pytest.raises(ValueError, match="churn is a setting of the euler sampler"):
        make_sampler("heun", s_churn=1.0)
    with pytest.raises(ValueError, match="choose one of"):
        make_sampler("lms")
    with pytest.raises(ValueError, match="euler sampler only"):
        SampleSettings(sampler="ddim", s_churn=1.0).check()


# Gaussian data x0 ~ N(0, s^2): the exact denoiser is D(x; sigma) = s^2 / (s^2 + sigma^2) x, and the probability flow
# ODE carries x(sigma_max) to x(0) = x(sigma_max) * s / sqrt(s^2 + sigma_max^2).
DATA_STD = 0.5


def gaussian_denoiser(x, sigma, timestep):
    return x.float() * DATA_STD**2 / (DATA_STD**2 + sigma**2)


def edm_schedule(steps: int) -> Schedule:
    return Schedule.from_scheduler(EulerDiscreteScheduler(**SVD_SCHEDULER), steps)


def relative_error(sampler, steps: int) -> float:
    schedule = edm_schedule(steps)
    start = torch.randn(4096, generator=torch.Generator().manual_seed(0), dtype=torch.float64).float()
    start = start * schedule.sigmas[0]
    exact = start * DATA_STD / math.sqrt(DATA_STD**2 + float(schedule.sigmas[0]) ** 2)
    return float((sampler(gaussian_denoiser, start, schedule) - exact).abs().max() / exact.abs().max())


def test_every_sampler_converges_to_the_exact_solution_euler_and_ddim_at_first_order_the_others_at_second():
    errors = {
        sampler.name: [relative_error(sampler, steps) for steps in (50, 100)]
        for sampler in (EulerSampler(), HeunSampler(), DPMPP2MSampler(), DDIMSampler())
    }
    assert errors["ddim"] == pytest.approx(errors["euler"])  # DDIM is Euler on the same levels (EDM)
    for name, (coarse, fine) in errors.items():
        first_order = name in ("euler", "ddim")
        assert fine < (0.05 if first_order else 0.005), name
        assert 1.6 < coarse / fine < 2.5 if first_order else coarse / fine > 3.2, name  # twice the steps: 1/2 or 1/4


def test_euler_with_churn_samples_the_data_distribution():
    schedule = edm_schedule(400)
    start = torch.randn(1, 20000, generator=torch.Generator().manual_seed(1)) * schedule.sigmas[0]
    generator = torch.Generator().manual_seed(2)
    churned = EulerSampler(s_churn=10.0)(gaussian_denoiser, start, schedule, generators=[generator])
    plain = EulerSampler()(gaussian_denoiser, start, schedule)
    assert float(churned.std()) == pytest.approx(DATA_STD, rel=0.03)
    assert float((churned - plain).abs().mean()) > 0.3  # the added noise took each sample off its start's path
