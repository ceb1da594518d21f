"""Exponential moving average of the trainable weights (fp32 copies, kept on the model's device)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn


class EMA:
    """`shadow = decay * shadow + (1 - decay) * weight` after each optimizer step.

    The decay warms up as min(decay, (1 + n) / (10 + n)) over the first updates (as diffusers' EMAModel), so
    early weights, far from the trained ones, fade quickly.
    """

    def __init__(self, named_parameters: dict[str, nn.Parameter], decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.parameters = named_parameters
        self.shadow = {name: p.detach().float().clone() for name, p in named_parameters.items()}

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, parameter in self.parameters.items():
            self.shadow[name].lerp_(parameter.detach().float(), 1.0 - decay)

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, tensors: dict[str, Tensor], updates: int) -> None:
        for name, tensor in tensors.items():
            self.shadow[name].copy_(tensor)
        self.updates = updates

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged weights into `model` (same parameter names)."""
        named = dict(model.named_parameters())
        for name, tensor in self.shadow.items():
            named[name].copy_(tensor)

    @contextlib.contextmanager
    @torch.no_grad()
    def applied(self) -> Iterator[None]:
        """The averaged weights in the model while the block runs (validation), the trained ones back after."""
        trained = {name: p.detach().clone() for name, p in self.parameters.items()}
        for name, parameter in self.parameters.items():
            parameter.copy_(self.shadow[name])
        try:
            yield
        finally:
            for name, parameter in self.parameters.items():
                parameter.copy_(trained[name])
