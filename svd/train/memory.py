"""Gradient checkpointing that covers the temporal blocks too.

diffusers' `enable_gradient_checkpointing()` on the SVD UNet recomputes each `SpatioTemporalResBlock` and the
spatial transformer blocks, but runs every `TemporalBasicTransformerBlock` (attention across frames at each
pixel, the biggest activations of the temporal path) normally, so their activations stay in memory, and with
`freeze: temporal` these are exactly the blocks that need a backward pass. This wraps them as well.
"""

from __future__ import annotations

import torch
from diffusers.models.attention import TemporalBasicTransformerBlock
from torch.utils.checkpoint import checkpoint


def enable_gradient_checkpointing(unet: torch.nn.Module) -> int:
    """diffusers' checkpointing plus the temporal transformer blocks; returns how many blocks were wrapped."""
    unet.enable_gradient_checkpointing()
    wrapped = 0
    for module in unet.modules():
        if isinstance(module, TemporalBasicTransformerBlock) and not getattr(module, "_svd_checkpointed", False):
            module.forward = _checkpointed(module.forward)
            module._svd_checkpointed = True
            wrapped += 1
    return wrapped


def _checkpointed(forward):
    def run(hidden_states, num_frames, encoder_hidden_states=None):
        if torch.is_grad_enabled():
            return checkpoint(forward, hidden_states, num_frames, encoder_hidden_states, use_reentrant=False)
        return forward(hidden_states, num_frames, encoder_hidden_states)

    return run
