"""Noise parameterisations: how a clean latent becomes a training example, and what the UNet is scored against.

Both share one interface (`Parameterisation`), so the training loop reads the same for either:

    levels = p.sample_levels(batch_size, generator=g, device=x0.device)
    noisy = p.add_noise(x0, noise, levels)
    sample, timestep = p.unet_inputs(noisy, levels)      # concatenate the conditioning latent to `sample`
    loss = p.loss(unet(sample, timestep, ...).sample, x0, noise, levels).mean()

`edm` is SVD's (Blattmann et al. 2023, appendix D; generative-models' `VScalingWithEDMcNoise`, `EDMWeighting`
and `EDMSampling`), with sigma_data = 1:
    x = x0 + sigma * n,  ln sigma ~ N(P_mean, P_std^2)
    D(x) = c_skip x + c_out F(c_in x; c_noise)
    c_skip = 1 / (sigma^2 + 1),  c_out = -sigma / sqrt(sigma^2 + 1),  c_in = 1 / sqrt(sigma^2 + 1),  c_noise = 0.25 ln sigma
    loss = (1 + sigma^2) / sigma^2 * ||D(x) - x0||^2
This is what diffusers' `EulerDiscreteScheduler` assumes at sampling time for SVD checkpoints
(`prediction_type="v_prediction"`, `timestep_type="continuous"`).

`backbone` keeps the discrete timesteps and the epsilon / v / sample prediction of the SD backbone's own
scheduler config: a frozen backbone only understands the timestep embedding it was trained with.
    x = sqrt(abar_t) x0 + sqrt(1 - abar_t) n,  t ~ U{0, ..., T-1}
    target = n (epsilon), sqrt(abar_t) n - sqrt(1 - abar_t) x0 (v_prediction) or x0 (sample);  loss = ||F - target||^2
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import torch
from diffusers import DDPMScheduler
from torch import Tensor

from svd.model.config import EDMConfig, VideoModelConfig


class Parameterisation(Protocol):
    def sample_levels(
        self, batch_size: int, *, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> Tensor:
        """One noise level per video: sigma (edm) or a timestep index (backbone)."""

    def add_noise(self, x0: Tensor, noise: Tensor, levels: Tensor) -> Tensor: ...

    def unet_inputs(self, noisy: Tensor, levels: Tensor) -> tuple[Tensor, Tensor]:
        """The UNet's (sample, timestep): the scaled noisy latent and the noise level as the UNet embeds it."""

    def denoise(self, model_output: Tensor, noisy: Tensor, levels: Tensor) -> Tensor:
        """The clean latent the UNet's output implies."""

    def loss(self, model_output: Tensor, x0: Tensor, noise: Tensor, levels: Tensor) -> Tensor:
        """Weighted squared error, one value per video (mean over all other axes)."""


class EDM:
    """SVD's continuous-sigma EDM preconditioning with v-scaling (sigma_data = 1)."""

    def __init__(self, p_mean: float = -1.2, p_std: float = 1.2) -> None:
        self.p_mean = p_mean
        self.p_std = p_std

    def sample_levels(self, batch_size, *, generator=None, device="cpu") -> Tensor:
        normal = torch.randn(
            batch_size, generator=generator, device=generator.device if generator is not None else device
        )
        return (self.p_mean + self.p_std * normal).exp().to(device)

    @staticmethod
    def c_skip(sigma: Tensor) -> Tensor:
        return 1.0 / (sigma**2 + 1.0)

    @staticmethod
    def c_out(sigma: Tensor) -> Tensor:
        return -sigma / (sigma**2 + 1.0).sqrt()

    @staticmethod
    def c_in(sigma: Tensor) -> Tensor:
        return 1.0 / (sigma**2 + 1.0).sqrt()

    @staticmethod
    def c_noise(sigma: Tensor) -> Tensor:
        return 0.25 * sigma.log()

    @staticmethod
    def loss_weight(sigma: Tensor) -> Tensor:
        return (1.0 + sigma**2) / sigma**2

    def add_noise(self, x0: Tensor, noise: Tensor, levels: Tensor) -> Tensor:
        return x0 + _per_video(levels, x0) * noise

    def unet_inputs(self, noisy: Tensor, levels: Tensor) -> tuple[Tensor, Tensor]:
        return self.c_in(_per_video(levels, noisy)) * noisy, self.c_noise(levels)

    def denoise(self, model_output: Tensor, noisy: Tensor, levels: Tensor) -> Tensor:
        sigma = _per_video(levels, noisy)
        return self.c_skip(sigma) * noisy + self.c_out(sigma) * model_output

    def loss(self, model_output: Tensor, x0: Tensor, noise: Tensor, levels: Tensor) -> Tensor:
        denoised = self.denoise(model_output, self.add_noise(x0, noise, levels), levels)
        return self.loss_weight(levels) * _mean_per_video((denoised - x0) ** 2)


class Backbone:
    """The SD backbone's own discrete-timestep parameterisation, read from its scheduler config."""

    PREDICTIONS = ("epsilon", "v_prediction", "sample")

    def __init__(self, scheduler_config: Mapping[str, Any]) -> None:
        # DDPMScheduler computes the betas the same way for every SD scheduler class (DDIM, PNDM, Euler...).
        scheduler = DDPMScheduler.from_config(dict(scheduler_config))
        self.prediction_type: str = scheduler.config.prediction_type
        if self.prediction_type not in self.PREDICTIONS:
            raise ValueError(
                f"scheduler prediction_type {self.prediction_type!r}: expected one of {', '.join(self.PREDICTIONS)}"
            )
        self.num_train_timesteps: int = scheduler.config.num_train_timesteps
        self.alphas_cumprod: Tensor = scheduler.alphas_cumprod.clone()

    def sample_levels(self, batch_size, *, generator=None, device="cpu") -> Tensor:
        where = generator.device if generator is not None else device
        return torch.randint(0, self.num_train_timesteps, (batch_size,), generator=generator, device=where).to(device)

    def _scales(self, timesteps: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        alphas = self.alphas_cumprod.to(device=like.device, dtype=like.dtype)[timesteps.to(like.device)]
        return _per_video(alphas**0.5, like), _per_video((1 - alphas) ** 0.5, like)

    def add_noise(self, x0: Tensor, noise: Tensor, levels: Tensor) -> Tensor:
        signal, sigma = self._scales(levels, x0)
        return signal * x0 + sigma * noise

    def unet_inputs(self, noisy: Tensor, levels: Tensor) -> tuple[Tensor, Tensor]:
        return noisy, levels

    def target(self, x0: Tensor, noise: Tensor, levels: Tensor) -> Tensor:
        if self.prediction_type == "epsilon":
            return noise
        if self.prediction_type == "sample":
            return x0
        signal, sigma = self._scales(levels, x0)
        return signal * noise - sigma * x0

    def denoise(self, model_output: Tensor, noisy: Tensor, levels: Tensor) -> Tensor:
        if self.prediction_type == "sample":
            return model_output
        signal, sigma = self._scales(levels, noisy)
        if self.prediction_type == "epsilon":
            return (noisy - sigma * model_output) / signal
        return signal * noisy - sigma * model_output

    def loss(self, model_output: Tensor, x0: Tensor, noise: Tensor, levels: Tensor) -> Tensor:
        return _mean_per_video((model_output - self.target(x0, noise, levels)) ** 2)


def make_parameterisation(
    config: VideoModelConfig, scheduler_config: Mapping[str, Any] | None = None
) -> Parameterisation:
    """The parameterisation `config` names; `backbone` needs the SD scheduler config (in `inflated_from.json`)."""
    if config.resolved_parameterisation() == "edm":
        edm: EDMConfig = config.edm
        return EDM(edm.p_mean, edm.p_std)
    if scheduler_config is None:
        raise ValueError("parameterisation backbone needs the SD backbone's scheduler config, and none was found")
    return Backbone(scheduler_config)


def _per_video(levels: Tensor, like: Tensor) -> Tensor:
    """(batch,) -> (batch, 1, 1, ...) to broadcast over frames, channels and pixels."""
    return levels.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def _mean_per_video(values: Tensor) -> Tensor:
    return values.flatten(1).mean(dim=1)
