"""Samplers: Euler (with sgm's churn), Heun, DPM++ 2M and DDIM, on x = x0 + sigma * n.

Each takes a denoiser D(x, sigma, timestep) -> clean latent (svd.generate.denoiser, or any function), the initial
latents and a `Schedule`, and returns the final latents in the UNet's own scale (x / sqrt(sigma_last^2 + 1), which is
x itself when the last level is 0). On the same model, seed and levels each gives what the matching diffusers
scheduler gives (tests/test_generate_samplers.py):

    euler     x <- x + (x - D(x; s_i)) / s_i * (s_{i+1} - s_i)                        EulerDiscreteScheduler
              with churn (sgm's EulerEDMSampler, Karras et al. 2022 alg. 2): noise first raises s_i to
              s_hat = s_i (1 + gamma), gamma = min(s_churn / steps, sqrt(2) - 1), and D is evaluated at s_hat
    heun      Euler, then the average of the slopes at both ends; Euler on the step to 0   HeunDiscreteScheduler
    dpmpp_2m  DPM-Solver++(2M) in the data prediction; first order on the first step,     DPMSolverMultistepScheduler
              and the last step (to 0) is the denoised latent                             (EDMDPMSolverMultistepScheduler)
    ddim      DDIM with eta 0: the Euler step on DDIM's levels                              DDIMScheduler

Latents stay in the model's dtype between steps and each step is computed in float32, as diffusers' schedulers do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from svd.generate.options import SamplerName
from svd.generate.schedule import Schedule
from svd.model.parameterisation import EDM

Denoiser = Callable[[Tensor, Tensor, Tensor], Tensor]  # (x, sigma, timestep) -> D(x; sigma), float32
Callback = Callable[[int], None]  # called with each finished step's index


class Sampler:
    """One sampling method; called once per batch of videos."""

    name: SamplerName

    def __call__(
        self,
        denoiser: Denoiser,
        latents: Tensor,
        schedule: Schedule,
        *,
        generators: Sequence[torch.Generator] = (),
        callback: Callback | None = None,
    ) -> Tensor:
        """`latents` (B, ...) at level sigmas[0]; `generators`, one per video, draw any noise the method adds."""
        dtype = latents.dtype
        x = self.sample(denoiser, latents, schedule, generators, callback or (lambda _: None))
        return (x.float() * EDM.c_in(schedule.sigmas[-1])).to(dtype)

    def sample(self, denoiser, x, schedule, generators, callback) -> Tensor:
        raise NotImplementedError


class EulerSampler(Sampler):
    """Euler; with `s_churn` > 0, sgm's stochastic Euler (churn between s_tmin and s_tmax, noise times s_noise)."""

    name = "euler"

    def __init__(self, s_churn: float = 0.0, s_noise: float = 1.0, s_tmin: float = 0.0, s_tmax: float = math.inf):
        self.s_churn, self.s_noise, self.s_tmin, self.s_tmax = s_churn, s_noise, s_tmin, s_tmax

    def sample(self, denoiser, x, schedule, generators, callback) -> Tensor:
        sigmas, dtype = schedule.sigmas, x.dtype
        gamma_max = min(self.s_churn / schedule.steps, 2**0.5 - 1) if self.s_churn > 0 else 0.0
        for i in range(schedule.steps):
            sigma, timestep = sigmas[i], schedule.timesteps[i]
            gamma = gamma_max if self.s_tmin <= float(sigma) <= self.s_tmax else 0.0
            if gamma > 0:
                sigma_hat = sigma * (1 + gamma)
                noise = _noise_like(x, generators) * self.s_noise
                x = (x.float() + noise * (sigma_hat**2 - sigma**2).sqrt().to(x.device)).to(dtype)
                sigma, timestep = sigma_hat, schedule.timestep(sigma_hat)
            x = _euler_step(x, denoiser(x, sigma, timestep), sigma, sigmas[i + 1]).to(dtype)
            callback(i)
        return x


class HeunSampler(Sampler):
    """EDM's second-order sampler without churn (Karras et al. 2022, alg. 1): two evaluations a step, one on the last."""

    name = "heun"

    def sample(self, denoiser, x, schedule, generators, callback) -> Tensor:
        sigmas, timesteps, dtype = schedule.sigmas, schedule.timesteps, x.dtype
        for i in range(schedule.steps):
            sigma, sigma_next = sigmas[i], sigmas[i + 1]
            slope = (x.float() - denoiser(x, sigma, timesteps[i])) / sigma.to(x.device)
            step = (sigma_next - sigma).to(x.device)
            if i == schedule.steps - 1 or sigma_next == 0:
                x = (x.float() + slope * step).to(dtype)
            else:
                predicted = (x.float() + slope * step).to(dtype)
                denoised_next = denoiser(predicted, sigma_next, timesteps[i + 1])
                slope_next = (predicted.float() - denoised_next) / sigma_next.to(x.device)
                x = (x.float() + (slope + slope_next) / 2 * step).to(dtype)
            callback(i)
        return x


class DPMPP2MSampler(Sampler):
    """DPM-Solver++(2M) (Lu et al. 2022): multistep in lambda = -ln sigma, reusing the previous step's denoised latent."""

    name = "dpmpp_2m"

    def sample(self, denoiser, x, schedule, generators, callback) -> Tensor:
        sigmas, dtype = schedule.sigmas, x.dtype
        previous, previous_h = None, None
        for i in range(schedule.steps):
            sigma, sigma_next = sigmas[i], sigmas[i + 1]
            denoised = denoiser(x, sigma, schedule.timesteps[i])
            if sigma_next == 0:
                x = denoised.to(dtype)
                callback(i)
                continue
            h = float(sigma.log() - sigma_next.log())
            if previous is None:
                estimate = denoised
            else:
                r = previous_h / h
                estimate = denoised + (denoised - previous) / (2 * r)
            x = (float(sigma_next / sigma) * x.float() - math.expm1(-h) * estimate).to(dtype)
            previous, previous_h = denoised, h
            callback(i)
        return x


class DDIMSampler(Sampler):
    """DDIM, eta 0 (Song et al. 2021): deterministic, first order; the schedule carries DDIM's levels."""

    name = "ddim"

    def sample(self, denoiser, x, schedule, generators, callback) -> Tensor:
        sigmas, dtype = schedule.sigmas, x.dtype
        for i in range(schedule.steps):
            x = _euler_step(x, denoiser(x, sigmas[i], schedule.timesteps[i]), sigmas[i], sigmas[i + 1]).to(dtype)
            callback(i)
        return x


SAMPLERS: dict[SamplerName, type[Sampler]] = {
    cls.name: cls for cls in (EulerSampler, HeunSampler, DPMPP2MSampler, DDIMSampler)
}


def make_sampler(name: SamplerName, *, s_churn: float = 0.0) -> Sampler:
    if name not in SAMPLERS:
        raise ValueError(f"sampler {name!r}: choose one of {', '.join(SAMPLERS)}")
    if s_churn and name != "euler":
        raise ValueError(f"s_churn {s_churn}: churn is a setting of the euler sampler, not of {name}")
    return EulerSampler(s_churn=s_churn) if name == "euler" else SAMPLERS[name]()


def _euler_step(x: Tensor, denoised: Tensor, sigma: Tensor, sigma_next: Tensor) -> Tensor:
    x = x.float()
    return x + (x - denoised) / sigma.to(x.device) * (sigma_next - sigma).to(x.device)


def _noise_like(x: Tensor, generators: Sequence[torch.Generator]) -> Tensor:
    """Standard normal noise of x's shape, each video's from its own CPU generator (a video does not depend on its batch)."""
    if len(generators) != x.shape[0]:
        raise ValueError(
            f"{len(generators)} generators for {x.shape[0]} videos: a stochastic sampler needs one per video"
        )
    return torch.cat([torch.randn((1, *x.shape[1:]), generator=g) for g in generators]).to(x.device)
