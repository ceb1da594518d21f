"""Inflate a Stable Diffusion 2.x UNet into diffusers' SVD layout (`UNetSpatioTemporalConditionModel`).

"Align your Latents" (Blattmann et al. 2023, sec. 3.1) and SVD insert a temporal block after every spatial
block and blend the two paths with a learned factor. diffusers' SVD UNet holds the SD layers under the same
names, except that each resnet moves into `spatial_res_block`. Inflation therefore:

1. builds an SVD UNet of the SD UNet's widths, heads and depths;
2. copies every SD weight into its spatial counterpart (SD 1.x's 1x1-conv attention projections become the
   linear layers the SVD blocks use);
3. widens `conv_in` from 4 to 8 input channels, the 4 new ones (SVD's conditioning latent) zero;
4. zeroes the output layer of every new temporal path, and of `add_embedding`, so each temporal path starts
   as the identity and the blend `alpha * spatial + (1 - alpha) * temporal` returns the spatial result:
   at initialisation the video model is the image model applied to each frame.

"Reproduces" means to about 1e-4 in fp32, not bit for bit: diffusers' SVD blocks build the spatial resnets of
the cross-attention down and up blocks with GroupNorm eps 1e-6 where SD 2.x uses 1e-5 (the official SVD
checkpoint has the same layout, and `from_pretrained` rebuilds it, so inflation keeps it).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DConditionModel, UNetSpatioTemporalConditionModel
from diffusers.models.attention import FeedForward, TemporalBasicTransformerBlock
from diffusers.models.resnet import TemporalResnetBlock
from diffusers.models.transformers.transformer_temporal import TransformerSpatioTemporalModel
from torch import nn

from svd.model.freeze import is_temporal, parameter_counts
from svd.model.loading import ModelSourceError, _hub, load_sd_unet, save_unet

log = logging.getLogger(__name__)

# SVD's micro-conditioning: 3 added time ids (fps, motion bucket, noise augmentation), each embedded
# sinusoidally in 256 dimensions (the SVD unet config: addition_time_embed_dim 256, projection 768).
ADDITION_TIME_EMBED_DIM = 256
NUM_ADDED_TIME_IDS = 3

DOWN_BLOCKS = {"CrossAttnDownBlock2D": "CrossAttnDownBlockSpatioTemporal", "DownBlock2D": "DownBlockSpatioTemporal"}
UP_BLOCKS = {"CrossAttnUpBlock2D": "CrossAttnUpBlockSpatioTemporal", "UpBlock2D": "UpBlockSpatioTemporal"}

# SD config values the SVD blocks hard-code. Any other value builds a UNet the SVD layout cannot reproduce.
# key -> (required value, what the SVD layout does instead)
_FIXED_IN_SVD: dict[str, tuple[Any, str]] = {
    "norm_num_groups": (32, "diffusers' spatio-temporal blocks fix GroupNorm at 32 groups"),
    "mid_block_type": ("UNetMidBlock2DCrossAttn", "the SVD mid block is a cross-attention block"),
    "act_fn": ("silu", "the SVD blocks use SiLU"),
    "flip_sin_to_cos": (True, "the SVD timestep embedding is cos-first"),
    "freq_shift": (0, "the SVD timestep embedding has no frequency shift"),
    "time_embedding_type": ("positional", "the SVD timestep embedding is sinusoidal"),
    "time_embedding_dim": (None, "the SVD time embedding is 4 x the first block's width"),
    "time_embedding_act_fn": (None, "the SVD time embedding has no extra activation"),
    "timestep_post_act": (None, "the SVD time embedding has no post-activation"),
    "time_cond_proj_dim": (None, "SVD has no timestep-condition projection"),
    "class_embed_type": (None, "SVD has no class embedding"),
    "num_class_embeds": (None, "SVD has no class embedding"),
    "addition_embed_type": (None, "SVD's added embedding is its own fps/motion/noise-augmentation one"),
    "encoder_hid_dim": (None, "SVD has no encoder hidden-state projection"),
    "center_input_sample": (False, "SVD does not centre its input"),
    "resnet_time_scale_shift": ("default", "SVD resnets add the time embedding (no scale-shift)"),
    "resnet_skip_time_act": (False, "SVD resnets apply SiLU to the time embedding"),
    "resnet_out_scale_factor": (1.0, "SVD resnets do not rescale their output"),
    "mid_block_scale_factor": (1, "SVD resnets do not rescale their output"),
    "conv_in_kernel": (3, "the SVD conv_in is 3x3"),
    "conv_out_kernel": (3, "the SVD conv_out is 3x3"),
    "downsample_padding": (1, "SVD downsamplers pad by 1"),
    "attention_type": ("default", "SVD attention is unmasked, ungated"),
    "dual_cross_attention": (False, "SVD blocks have one transformer per layer"),
    "cross_attention_norm": (None, "SVD attention has no cross-attention norm"),
    "class_embeddings_concat": (False, "SVD has no class embedding"),
    "reverse_transformer_layers_per_block": (None, "SVD up blocks mirror the down blocks' transformer depths"),
}

# What `svd inflate` writes beside the UNet: where it came from and the SD scheduler config its backbone knows.
PROVENANCE_FILE = "inflated_from.json"

_RESNET = re.compile(r"^((?:down_blocks|up_blocks)\.\d+|mid_block)\.resnets\.(\d+)\.")


class UnsupportedUNetError(ValueError):
    """An SD UNet the SVD layout cannot hold; the message names the config key and the reason."""


@dataclass(frozen=True)
class InflateSummary:
    output: Path
    sd_parameters: int  # all copied into the SVD UNet
    total_parameters: int
    temporal_parameters: int


def check_inflatable(config: Mapping[str, Any]) -> None:
    """Raise `UnsupportedUNetError` for an SD UNet config the SVD blocks cannot reproduce."""
    for key, (required, why) in _FIXED_IN_SVD.items():
        value = config.get(key, required)
        if value != required:
            raise UnsupportedUNetError(f"{key} is {value!r}, but {why}")
    for key in ("only_cross_attention", "mid_block_only_cross_attention"):
        value = config.get(key)
        if value is not None and any(value if isinstance(value, (list, tuple)) else [value]):
            raise UnsupportedUNetError(f"{key} is {value!r}, but SVD blocks have self-attention")
    for key, known in (("down_block_types", DOWN_BLOCKS), ("up_block_types", UP_BLOCKS)):
        unknown = [block for block in config[key] if block not in known]
        if unknown:
            raise UnsupportedUNetError(f"{key} has {unknown[0]}; only {' and '.join(known)} have SVD counterparts")
    if config["in_channels"] != config["out_channels"]:
        raise UnsupportedUNetError(
            f"in_channels is {config['in_channels']} but out_channels {config['out_channels']} (an inpainting or "
            "depth UNet?); only text-to-image UNets, with as many latent channels in as out, can be inflated"
        )


def svd_unet_config(sd_config: Mapping[str, Any], num_frames: int = 14) -> dict[str, Any]:
    """The `UNetSpatioTemporalConditionModel` config of matching width, heads and depth."""
    check_inflatable(sd_config)
    # diffusers' UNet2DConditionModel reads `attention_head_dim` as the number of heads when
    # `num_attention_heads` is unset (a legacy naming it keeps for SD checkpoints); the SVD blocks, like
    # SD's, then use `channels // heads` per head.
    heads = sd_config.get("num_attention_heads") or sd_config["attention_head_dim"]
    return {
        "sample_size": sd_config.get("sample_size"),
        # SVD concatenates the conditioning latent to the noisy latent on the channel axis.
        "in_channels": 2 * sd_config["in_channels"],
        "out_channels": sd_config["out_channels"],
        "down_block_types": [DOWN_BLOCKS[block] for block in sd_config["down_block_types"]],
        "up_block_types": [UP_BLOCKS[block] for block in sd_config["up_block_types"]],
        "block_out_channels": list(sd_config["block_out_channels"]),
        "addition_time_embed_dim": ADDITION_TIME_EMBED_DIM,
        "projection_class_embeddings_input_dim": ADDITION_TIME_EMBED_DIM * NUM_ADDED_TIME_IDS,
        "layers_per_block": _listed(sd_config["layers_per_block"]),
        "cross_attention_dim": _listed(sd_config["cross_attention_dim"]),
        "transformer_layers_per_block": _listed(sd_config.get("transformer_layers_per_block", 1)),
        "num_attention_heads": _listed(heads),
        "num_frames": num_frames,
    }


def spatial_name(sd_name: str) -> str:
    """The SVD name of an SD weight: each resnet moves into `spatial_res_block`, everything else keeps its name."""
    return _RESNET.sub(r"\1.resnets.\2.spatial_res_block.", sd_name)


def is_new(svd_name: str) -> bool:
    """True for an SVD weight with no SD counterpart: the temporal parts and the added-time embedding."""
    return is_temporal(svd_name) or svd_name.startswith("add_embedding.")


def plan_copy(sd_shapes: Mapping[str, torch.Size], svd_shapes: Mapping[str, torch.Size]) -> dict[str, str]:
    """SD name -> SVD name for every SD weight, after checking that shapes fit and nothing spatial is left out.

    Shapes only, so it also checks full-size models built on the meta device.
    """
    plan = {}
    for name, shape in sd_shapes.items():
        target = spatial_name(name)
        if target not in svd_shapes:
            raise UnsupportedUNetError(f"SD weight {name} has no counterpart in the SVD UNet")
        have, want = tuple(shape), tuple(svd_shapes[target])
        if name == "conv_in.weight":
            have = (have[0], 2 * have[1], *have[2:])
        elif len(have) == 4 and have[2:] == (1, 1) and len(want) == 2:
            have = have[:2]  # SD 1.x: 1x1-conv proj_in/proj_out, a linear layer in the SVD blocks
        if have != want:
            raise UnsupportedUNetError(f"SD weight {name} has shape {tuple(shape)}, its SVD counterpart {want}")
        plan[name] = target
    left = sorted(set(svd_shapes) - set(plan.values()) - {name for name in svd_shapes if is_new(name)})
    if left:
        raise UnsupportedUNetError(f"{len(left)} spatial SVD weights have no SD counterpart, e.g. {left[0]}")
    return plan


@torch.no_grad()
def zero_new_outputs(model: UNetSpatioTemporalConditionModel) -> None:
    """Zero the last layer of every temporal path and of `add_embedding`, so each starts as a no-op.

    Temporal resnet: `x + conv2(...)`; temporal transformer: `x + ff_in(...)`, `x + attn1(...)`,
    `x + attn2(...)`, `x + ff(...)`; the frame-position embedding is added to the input of the temporal
    transformer and `add_embedding` to the time embedding. With these zero, the temporal path returns its
    input and the learned blend of spatial and temporal paths returns the spatial one, whatever the blend.
    """
    _zero(model.add_embedding.linear_2)
    for module in model.modules():
        if isinstance(module, TemporalResnetBlock):
            _zero(module.conv2)
        elif isinstance(module, TemporalBasicTransformerBlock):
            _zero(_last_linear(module.ff_in))
            _zero(module.attn1.to_out[0])
            if module.attn2 is not None:
                _zero(module.attn2.to_out[0])
            _zero(_last_linear(module.ff))
        elif isinstance(module, TransformerSpatioTemporalModel):
            _zero(module.time_pos_embed.linear_2)


@torch.no_grad()
def inflate(sd_unet: UNet2DConditionModel, num_frames: int = 14) -> UNetSpatioTemporalConditionModel:
    """Build the SVD-layout video UNet that reproduces `sd_unet` frame by frame at initialisation.

    The result has the SD UNet's dtype and device; the temporal layers keep diffusers' random init except
    for their zeroed output layers. Raises `UnsupportedUNetError` for an SD UNet the SVD blocks cannot hold.
    """
    parameter = next(sd_unet.parameters())
    model = UNetSpatioTemporalConditionModel(**svd_unet_config(sd_unet.config, num_frames)).to(parameter.device)
    if parameter.dtype != torch.float32:
        model.to(dtype=parameter.dtype)
    sd_state = sd_unet.state_dict()
    svd_state = model.state_dict()
    plan = plan_copy({k: v.shape for k, v in sd_state.items()}, {k: v.shape for k, v in svd_state.items()})
    for sd_name, svd_name in plan.items():
        source, target = sd_state[sd_name], svd_state[svd_name]
        if sd_name == "conv_in.weight":
            target.zero_()
            target[:, : source.shape[1]] = source  # channels 0-3 take the noisy latent, as in SD
        else:
            target.copy_(source.reshape(target.shape))
    zero_new_outputs(model)
    copied = sum(sd_state[name].numel() for name in plan)
    log.info(
        "inflated: %d SD tensors (%.1fM parameters) copied, %.1fM new parameters",
        len(plan),
        copied / 1e6,
        (sum(p.numel() for p in model.parameters()) - copied) / 1e6,
    )
    return model


def inflate_checkpoint(
    source: str,
    output: str | Path,
    *,
    num_frames: int = 14,
    dtype: torch.dtype = torch.float32,
    overwrite: bool = False,
) -> InflateSummary:
    """`svd inflate`: read an SD UNet (folder, pipeline folder or hub id), write the SVD UNet to `output`.

    `output` is written complete or not at all (a sibling temporary folder renamed at the end). Beside the
    diffusers files it holds `inflated_from.json`: the source, the SD UNet config and the SD scheduler config,
    which the `backbone` parameterisation needs.
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"{output}: exists and is not a folder")
    if output.is_dir() and any(output.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{output}: exists and is not empty (pass --overwrite to replace it)")
        if not (output / "config.json").is_file():
            raise FileExistsError(f"{output}: exists and is not a model folder; refusing to replace it")
    sd_unet, scheduler_config = load_sd_unet(source)
    model = inflate(sd_unet.float(), num_frames=num_frames)
    if dtype != torch.float32:
        model.to(dtype=dtype)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        save_unet(model, staging)
        provenance = {"source": source, "sd_unet_config": dict(sd_unet.config), "scheduler": scheduler_config}
        (staging / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, default=str), encoding="utf-8")
        if output.exists():
            shutil.rmtree(output)
        staging.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    counts = parameter_counts(model)
    return InflateSummary(
        output=output,
        sd_parameters=sum(p.numel() for p in sd_unet.parameters()),
        total_parameters=counts["total"],
        temporal_parameters=counts["temporal"],
    )


def read_inflated(source: str) -> tuple[UNetSpatioTemporalConditionModel, dict[str, Any]] | None:
    """The UNet of an `svd inflate` output folder and its provenance (source, SD UNet and scheduler configs);
    None when `source` is not such a folder (an SD UNet or pipeline, or a hub id, to inflate now)."""
    folder = Path(source)
    if not (folder / PROVENANCE_FILE).is_file():
        return None
    try:
        provenance = json.loads((folder / PROVENANCE_FILE).read_text(encoding="utf-8"))
    except ValueError as error:
        raise ModelSourceError(f"{folder / PROVENANCE_FILE}: not readable JSON ({error})") from None
    unet = _hub(lambda: UNetSpatioTemporalConditionModel.from_pretrained(str(folder)), source)
    return unet, provenance


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _last_linear(feed_forward: FeedForward) -> nn.Linear:
    return [layer for layer in feed_forward.net if isinstance(layer, nn.Linear)][-1]


def _zero(layer: nn.Module) -> None:
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
