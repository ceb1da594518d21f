"""D(x; sigma): the clean latent an SVD-layout UNet implies, with classifier-free guidance.

The samplers see only this function, so they are the same for every kind of model:

    D(x; sigma) = uncond + g * (cond - uncond)

with the UNet given x / sqrt(sigma^2 + 1) (the scheduler's `scale_model_input`) and the timestep of `sigma`. `g` is SVD's
guidance, linear over frames from min to max (image-to-video), or one scale (text-to-video). Both branches go through
the UNet as one batch, unconditional first as diffusers' pipelines do, or one after the other (`cfg="sequential"`,
half the activation memory).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from svd.model.parameterisation import EDM

CFGMode = Literal["batched", "sequential"]
_EDM = EDM()


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


@dataclass
class Branch:
    """What one guidance branch conditions on, for a batch of videos."""

    context: Tensor  # (B, tokens, D): the cross-attention input (CLIP image embedding or text hidden states)
    condition_latents: Tensor | None  # (B, C, h, w) repeated on every frame, or None: zeros (text-to-video)


class GuidedDenoiser:
    """D(x; sigma) for a batch of videos; built once per batch, called once per model evaluation."""

    def __init__(
        self,
        unet,
        *,
        conditional: Branch,
        unconditional: Branch | None,
        added_time_ids: Tensor,
        scales: Tensor | float,
        prediction_type: str,
        latent_shape: tuple[int, ...],
        dtype: torch.dtype,
        device: torch.device,
        cfg: CFGMode = "batched",
    ) -> None:
        """`unconditional` None: no guidance (the conditional branch alone). `latent_shape` is (B, F, C, h, w)."""
        self.unet, self.cfg, self.prediction_type = unet, cfg, prediction_type
        self.batch, self.channels = latent_shape[0], latent_shape[2]
        self.guided = unconditional is not None
        branches = [unconditional, conditional] if self.guided else [conditional]
        self.context = torch.cat([b.context for b in branches]).to(device, dtype)
        self.time_ids = torch.cat([added_time_ids] * len(branches)).to(device, dtype)
        self.scales = scales.to(device, dtype) if isinstance(scales, Tensor) else scales
        # The UNet's input, (2B or B, F, 2C, h, w): the scaled latent in the first C channels, rewritten at each
        # evaluation; the conditioning latent on every frame in the last C, written once.
        batch, frames, channels, *size = latent_shape
        self.unet_input = torch.zeros((batch * len(branches), frames, 2 * channels, *size), dtype=dtype, device=device)
        for index, branch in enumerate(branches):
            if branch.condition_latents is not None:
                rows = slice(index * batch, (index + 1) * batch)
                self.unet_input[rows, :, channels:] = branch.condition_latents.to(device, dtype).unsqueeze(1)

    def __call__(self, x: Tensor, sigma: Tensor, timestep: Tensor) -> Tensor:
        """x: (B, F, C, h, w) at level `sigma` -> the guided clean latent, float32."""
        batch, channels = self.batch, self.channels
        sigma = sigma.to(x.device)
        scaled = (x * EDM.c_in(sigma)).to(self.unet_input.dtype)  # the scheduler's scale_model_input
        self.unet_input[:batch, :, :channels] = scaled
        if self.guided:
            self.unet_input[batch:, :, :channels] = scaled
        t = timestep.to(x.device)
        if self.guided and self.cfg == "sequential":
            unconditional, conditional = (
                self._unet(self.unet_input[rows], t, self.context[rows], self.time_ids[rows])
                for rows in (slice(0, batch), slice(batch, 2 * batch))
            )
        else:
            output = self._unet(self.unet_input, t, self.context, self.time_ids)
            unconditional, conditional = output.chunk(2) if self.guided else (None, output)
        output = unconditional + self.scales * (conditional - unconditional) if self.guided else conditional
        # In float32, as diffusers' schedulers step (the samplers cast the latents back to the model's dtype).
        return denoise(output, x.float(), sigma, self.prediction_type)

    def _unet(self, sample: Tensor, t: Tensor, context: Tensor, time_ids: Tensor) -> Tensor:
        return self.unet(sample, t, encoder_hidden_states=context, added_time_ids=time_ids, return_dict=False)[0]
