"""The noise levels of one sampling run, read from a checkpoint's scheduler config.

Every sampler here works in Karras et al.'s variable x = x0 + sigma * n. The levels come from the diffusers scheduler
that the matching diffusers sampler would use, so they are exactly its levels:

| sampler  | `edm` (SVD: continuous sigmas)        | `backbone` (a frozen SD's discrete timesteps)            |
|----------|---------------------------------------|----------------------------------------------------------|
| euler    | the config's (EDM's Karras for SVD)   | EulerDiscreteScheduler's                                 |
| heun     | as euler                              | as euler (HeunDiscreteScheduler's levels are the same)   |
| dpmpp_2m | as euler                              | DPMSolverMultistepScheduler's with Karras sigmas         |
| ddim     | as euler                              | DDIMScheduler's timesteps, "leading" spacing (DDIM's own) |

For `edm` the UNet's timestep is c_noise = 0.25 ln sigma; for `backbone` it is the SD timestep of each level, and a
level off the schedule (Euler's churn) gets the timestep interpolated in log sigma, as diffusers does.
DDIM on an `edm` model is the Euler step on the same levels (Karras et al. 2022, section 3, show DDIM is Euler in
this variable), so `ddim` and `euler` give the same video there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from torch import Tensor

from svd.generate.options import SamplerName

PREDICTION_TYPES = ("v_prediction", "epsilon", "sample")


@dataclass(frozen=True)
class Schedule:
    """Decreasing noise levels and the UNet's timestep input at each one."""

    sigmas: Tensor  # (steps + 1,) float32 on the CPU; the last is 0 (or DDIM's final level)
    timesteps: Tensor  # (steps,) float32: the UNet's timestep at sigmas[i]
    init_noise_sigma: float  # the standard deviation of pure-noise initial latents
    prediction_type: str  # what the UNet predicts: v_prediction, epsilon or sample
    parameterisation: Literal["edm", "backbone"]
    train_log_sigmas: Tensor | None = None  # backbone: ln sigma of timesteps 0..T-1, for levels off the schedule

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    @classmethod
    def from_scheduler(cls, scheduler, steps: int, sampler: SamplerName = "euler") -> Schedule:
        config = scheduler.config
        if config.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"scheduler prediction_type {config.prediction_type!r} is not supported")
        # Private copies: set_timesteps keeps state on a scheduler, which the caller may share.
        euler = EulerDiscreteScheduler.from_config(config)
        euler.set_timesteps(steps, device="cpu")
        continuous = config.get("timestep_type") == "continuous" and config.prediction_type == "v_prediction"
        if continuous:
            return cls(
                _f32(euler.sigmas), _f32(euler.timesteps), float(euler.init_noise_sigma), config.prediction_type, "edm"
            )
        train_log_sigmas = (((1 - euler.alphas_cumprod) / euler.alphas_cumprod) ** 0.5).log().float()
        common = {"prediction_type": config.prediction_type, "parameterisation": "backbone"}
        if sampler == "dpmpp_2m":
            dpm = DPMSolverMultistepScheduler.from_config(
                config, use_karras_sigmas=True, algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero"
            )
            dpm.set_timesteps(steps, device="cpu")
            sigmas, timesteps = _f32(dpm.sigmas), _f32(dpm.timesteps)
            init = float((sigmas[0] ** 2 + 1) ** 0.5)  # DPM-Solver starts from unit noise in SD's own variable
        elif sampler == "ddim":
            ddim = ddim_scheduler(config)
            ddim.set_timesteps(steps, device="cpu")
            alphas = torch.cat([ddim.alphas_cumprod[ddim.timesteps], ddim.final_alpha_cumprod.reshape(1)])
            sigmas = _f32(((1 - alphas) / alphas) ** 0.5)
            timesteps = _f32(ddim.timesteps)
            init = float((sigmas[0] ** 2 + 1) ** 0.5)
        else:
            sigmas, timesteps, init = _f32(euler.sigmas), _f32(euler.timesteps), float(euler.init_noise_sigma)
        return cls(sigmas, timesteps, init, train_log_sigmas=train_log_sigmas, **common)

    def timestep(self, sigma: Tensor) -> Tensor:
        """The UNet's timestep for any level: c_noise for `edm`, the log-sigma interpolated SD timestep otherwise."""
        if self.parameterisation == "edm":
            return 0.25 * sigma.float().log()
        log_sigma = float(sigma.float().log())
        return torch.tensor(np.interp(log_sigma, self.train_log_sigmas.numpy(), np.arange(len(self.train_log_sigmas))))

    def from_step(self, first: int) -> Schedule:
        """The schedule's steps from `first` on: what video-to-video runs at a strength below 1."""
        return replace(self, sigmas=self.sigmas[first:], timesteps=self.timesteps[first:])


def ddim_scheduler(config) -> DDIMScheduler:
    """DDIM with its paper's uniform "leading" spacing (diffusers' DDIM with "linspace" steps to levels it then does
    not evaluate at) and without clipping the predicted latent to [-1, 1] (a pixel-space setting)."""
    return DDIMScheduler.from_config(config, timestep_spacing="leading", clip_sample=False, thresholding=False)


def _f32(values: Tensor) -> Tensor:
    return values.detach().float().cpu()
