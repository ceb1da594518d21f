"""Euler sampling of an SVD-layout UNet: SVD's EDM sampler, or the discrete schedule of a frozen SD backbone.

The noise levels come from the checkpoint's scheduler config (`scheduler/scheduler_config.json`) through
diffusers' `EulerDiscreteScheduler.set_timesteps`, so they are exactly what `StableVideoDiffusionPipeline` uses:
for SVD checkpoints, EDM's Karras schedule (sigma_min 0.002, sigma_max 700, rho 7, then 0) with the continuous
timestep c_noise = 0.25 ln sigma (`edm`); for a model trained from a frozen SD (`backbone`, what `svd train`
exports for an inflated SD), SD's own discrete timesteps and prediction type. The loop itself is here:

    D(x; sigma)  = uncond + g_f * (cond - uncond),  g_f linear over frames from min to max guidance (SVD)
    x <- x + (x - D(x; sigma_i)) / sigma_i * (sigma_{i+1} - sigma_i)        (Euler, Karras et al. 2022, alg. 2 without churn)

Both guidance branches go through the UNet as one batch (unconditional first: zero image embedding and zero
image latent, as the pipeline and generative-models do), or one after the other (`cfg="sequential"`, half
the activation memory).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from diffusers import EulerDiscreteScheduler
from torch import Tensor

from svd.model.parameterisation import EDM

CFGMode = Literal["batched", "sequential"]
_EDM = EDM()


@dataclass(frozen=True)
class Schedule:
    """Noise levels of one sampling run, read from a scheduler config."""

    sigmas: Tensor  # (steps + 1,) float32 on the CPU, decreasing, the last one 0
    timesteps: Tensor  # (steps,) float32: the UNet's timestep input at each step
    init_noise_sigma: float  # the standard deviation of the initial latents
    prediction_type: str  # what the UNet predicts: v_prediction, epsilon or sample
    parameterisation: Literal["edm", "backbone"]

    @classmethod
    def from_scheduler(cls, scheduler: EulerDiscreteScheduler, steps: int) -> Schedule:
        config = scheduler.config
        if config.prediction_type not in ("v_prediction", "epsilon", "sample"):
            raise ValueError(f"scheduler prediction_type {config.prediction_type!r} is not supported")
        # A private copy: set_timesteps keeps state on the scheduler, which the caller may share.
        scheduler = EulerDiscreteScheduler.from_config(config)
        scheduler.set_timesteps(steps, device="cpu")
        continuous = config.timestep_type == "continuous" and config.prediction_type == "v_prediction"
        return cls(
            sigmas=scheduler.sigmas.float().cpu(),
            timesteps=scheduler.timesteps.float().cpu(),
            init_noise_sigma=float(scheduler.init_noise_sigma),
            prediction_type=config.prediction_type,
            parameterisation="edm" if continuous else "backbone",
        )


def denoise(model_output: Tensor, x: Tensor, sigma: Tensor, prediction_type: str) -> Tensor:
    """The clean latent the UNet's output implies at noise level `sigma`, with x in Euler's variable x0 + sigma n.

    v-prediction is EDM's preconditioning (c_skip x + c_out F) for SVD and for a v-predicting SD backbone
    alike: SD's noisy latent sqrt(abar) x0 + sqrt(1 - abar) n is c_in x with c_in = sqrt(abar) = 1 / sqrt(sigma^2 + 1).
    """
    if prediction_type == "v_prediction":
        return _EDM.denoise(model_output, x, sigma.reshape(1).expand(x.shape[0]))
    if prediction_type == "epsilon":
        return x - sigma.to(x.dtype) * model_output
    return model_output.to(x.dtype)


def guidance_scales(min_scale: float, max_scale: float, num_frames: int) -> Tensor:
    """(1, F, 1, 1, 1): SVD's guidance, linear from the first frame to the last."""
    return torch.linspace(min_scale, max_scale, num_frames).reshape(1, num_frames, 1, 1, 1)


class EulerSampler:
    """Denoises (batch, frames, C, h, w) latents with an SVD-layout UNet; called once per batch of videos."""

    def __init__(self, schedule: Schedule, *, cfg: CFGMode = "batched") -> None:
        self.schedule = schedule
        self.cfg = cfg

    @torch.no_grad()
    def __call__(
        self,
        unet,
        latents: Tensor,
        *,
        image_embeddings: Tensor,
        condition_latents: Tensor,
        added_time_ids: Tensor,
        min_guidance: float = 1.0,
        max_guidance: float = 3.0,
        callback: Callable[[int], None] | None = None,
    ) -> Tensor:
        """`latents` are the initial noise times `init_noise_sigma`; `image_embeddings` (B, 1, D),
        `condition_latents` (B, C, h, w) and `added_time_ids` (B, 3) are the conditional branch's."""
        batch, frames, channels = latents.shape[:3]
        dtype, device = latents.dtype, latents.device
        # As the pipeline: guidance only when some frame is guided above 1 (max_guidance > 1).
        guided = max_guidance > 1
        if guided:
            embeddings = torch.cat([torch.zeros_like(image_embeddings), image_embeddings])
            condition = torch.cat([torch.zeros_like(condition_latents), condition_latents])
            time_ids = torch.cat([added_time_ids, added_time_ids])
            scales = guidance_scales(min_guidance, max_guidance, frames).to(device, dtype)
        else:
            embeddings, condition, time_ids = image_embeddings, condition_latents, added_time_ids
        # The UNet's input, (2B or B, F, 2C, h, w): the scaled latent in the first C channels, rewritten each
        # step; the conditioning latent on every frame in the last C, written once.
        shape = (condition.shape[0], frames, 2 * channels, *latents.shape[3:])
        unet_input = torch.empty(shape, dtype=dtype, device=device)
        unet_input[:, :, channels:] = condition.to(dtype).unsqueeze(1)

        sigmas, timesteps = self.schedule.sigmas, self.schedule.timesteps
        for i, timestep in enumerate(timesteps):
            sigma = sigmas[i]
            scaled = latents * EDM.c_in(sigma)  # x / sqrt(sigma^2 + 1), as the scheduler's scale_model_input
            unet_input[:batch, :, :channels] = scaled
            if guided:
                unet_input[batch:, :, :channels] = scaled
            t = timestep.to(device)
            if guided and self.cfg == "sequential":
                halves = [slice(0, batch), slice(batch, 2 * batch)]
                unconditional, conditional = (
                    unet(
                        unet_input[h],
                        t,
                        encoder_hidden_states=embeddings[h],
                        added_time_ids=time_ids[h],
                        return_dict=False,
                    )[0]
                    for h in halves
                )
            else:
                output = unet(
                    unet_input, t, encoder_hidden_states=embeddings, added_time_ids=time_ids, return_dict=False
                )[0]
                unconditional, conditional = output.chunk(2) if guided else (None, output)
            output = unconditional + scales * (conditional - unconditional) if guided else conditional
            # The Euler step in float32, as diffusers' scheduler (the latents go back to the model's dtype).
            x = latents.float()
            denoised = denoise(output, x, sigma.to(device), self.schedule.prediction_type)
            latents = (x + (x - denoised) / sigma.to(device) * (sigmas[i + 1] - sigma).to(device)).to(dtype)
            if callback is not None:
                callback(i)
        return latents
