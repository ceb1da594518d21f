"""What makes training fit: gradient checkpointing, the optimizer's state size, TF32, sharding across ranks.

- Gradient checkpointing covers the temporal blocks too. diffusers' `enable_gradient_checkpointing()` on the SVD UNet recomputes each `SpatioTemporalResBlock` and the
spatial transformer blocks, but runs every `TemporalBasicTransformerBlock` (attention across frames at each
pixel, the biggest activations of the temporal path) normally, so their activations stay in memory, and with
`freeze: temporal` these are exactly the blocks that need a backward pass. This wraps them as well.
"""

from __future__ import annotations

import logging

import torch
from diffusers.models.attention import TemporalBasicTransformerBlock
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.utils.checkpoint import checkpoint

from svd.train.config import TrainLoopConfig

log = logging.getLogger(__name__)


class TrainSetupError(ValueError):
    """A training option this machine or this setup cannot run: one line saying what to change."""


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


def make_optimizer(parameters: list[torch.nn.Parameter], cfg: TrainLoopConfig, device: torch.device):
    """AdamW over `parameters` (fused on CUDA), or bitsandbytes' 8-bit AdamW (`train.optimizer: adamw8bit`)."""
    settings = {"lr": cfg.lr, "betas": cfg.betas, "weight_decay": cfg.weight_decay}
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(parameters, fused=device.type == "cuda", **settings)
    try:
        import bitsandbytes
    except ImportError:
        raise TrainSetupError("train.optimizer adamw8bit needs bitsandbytes: pip install bitsandbytes") from None
    if device.type != "cuda":
        log.warning(
            "train.optimizer adamw8bit on %s: bitsandbytes' CPU kernels, slower than adamw; 8-bit states are for "
            "fitting a GPU",
            device,
        )
    return bitsandbytes.optim.AdamW8bit(parameters, **settings)


def use_tf32(device: torch.device) -> None:
    """TF32 for fp32 matmuls and cuDNN convolutions on this CUDA process (`train.tf32`)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"


def shard(unet: torch.nn.Module) -> None:
    """FSDP2 over the ranks of the default process group: each down, mid and up block a unit, then the root.

    The parameters become DTensors (each rank holds its shard): collect the trainable ones after this call.
    """
    from torch.distributed.fsdp import fully_shard

    for block in [*unet.down_blocks, unet.mid_block, *unet.up_blocks]:
        fully_shard(block)
    fully_shard(unet)


def unsharded(unet: torch.nn.Module, replace: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """On rank 0, a plain UNet with the sharded one's full weights (those in `replace`, e.g. the EMA, instead);
    on the other ranks `unet` as it is (they export nothing). A collective: every rank calls it."""
    from diffusers import UNetSpatioTemporalConditionModel
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    weights = get_model_state_dict(unet, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not weights:  # not rank 0
        return unet
    weights.update({name: tensor.cpu() for name, tensor in (replace or {}).items()})
    with torch.device("meta"):
        plain = UNetSpatioTemporalConditionModel.from_config(unet.config)
    plain.load_state_dict(weights, assign=True)
    return plain


def gathered(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Full tensors of sharded ones (a collective: every rank calls it, in the same order); others as they are."""
    return {name: t.full_tensor() if isinstance(t, DTensor) else t for name, t in tensors.items()}


def shard_like(full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`full` sharded as `like` is when `like` is a DTensor of its shape (a collective); else `full`."""
    if isinstance(like, DTensor) and tuple(full.shape) == tuple(like.shape):
        return distribute_tensor(full.to(like.device, like.dtype), like.device_mesh, like.placements)
    return full
