"""Which parameters of an SVD-layout UNet train, by policy.

`temporal`     only the temporal parts (the SVD/"Align your Latents" recipe: the image backbone stays frozen)
`temporal+io`  also `conv_in` (its 4 conditioning-latent input channels start at zero) and `add_embedding`
               (the fps / motion bucket / noise augmentation embedding, which an inflated SD lacks)
`all`          everything: the SVD paper's full finetune

On an inflated SD, `temporal` leaves the conditioning-latent channels of `conv_in` and `add_embedding` at
zero, so the conditioning image latent and the added time ids have no effect: right for text-to-video
pretraining; image-to-video from an inflated SD needs `temporal+io` (or `all`).

Frozen parameters get `requires_grad=False` and must not be handed to the optimizer: then they hold no
gradient and no optimizer state, and weight decay cannot move them. Build the optimizer from
`apply_freeze`'s return value.
"""

from __future__ import annotations

from typing import get_args

from torch import nn

from svd.model.config import FreezePolicy

POLICIES: tuple[str, ...] = get_args(FreezePolicy)

# The module names diffusers gives the temporal half of each SVD block (`SpatioTemporalResBlock`,
# `TransformerSpatioTemporalModel`); the spatial half is `spatial_res_block` and `transformer_blocks`.
TEMPORAL_PARTS = ("temporal_res_block", "temporal_transformer_blocks", "time_pos_embed", "time_mixer")
IO_PARTS = ("conv_in", "add_embedding")


def is_temporal(name: str) -> bool:
    """True for a parameter (or module) name inside a temporal part of the UNet."""
    return any(part in TEMPORAL_PARTS for part in name.split("."))


def is_trainable(name: str, policy: str) -> bool:
    check_policy(policy)
    if policy == "all":
        return True
    if is_temporal(name):
        return True
    return policy == "temporal+io" and name.split(".")[0] in IO_PARTS


def check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ValueError(f"unknown freeze policy {policy!r}; expected one of {', '.join(POLICIES)}")


def apply_freeze(model: nn.Module, policy: str) -> list[nn.Parameter]:
    """Set `requires_grad` by `policy` and return the trainable parameters (to build the optimizer from)."""
    check_policy(policy)
    trainable = []
    for name, parameter in model.named_parameters():
        keep = is_trainable(name, policy)
        parameter.requires_grad_(keep)
        if not keep:
            parameter.grad = None
        else:
            trainable.append(parameter)
    return trainable


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Total, temporal and trainable-per-policy parameter counts (works on the meta device)."""
    counts = {"total": 0, "temporal": 0, **{f"trainable[{policy}]": 0 for policy in POLICIES}}
    for name, parameter in model.named_parameters():
        size = parameter.numel()
        counts["total"] += size
        counts["temporal"] += size if is_temporal(name) else 0
        for policy in POLICIES:
            counts[f"trainable[{policy}]"] += size if is_trainable(name, policy) else 0
    return counts
