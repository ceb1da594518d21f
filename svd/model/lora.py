"""LoRA adapters on the video UNet (peft): which layers get one, and the adapter folder training writes and
`svd generate --lora` reads.

peft injects its layers into the diffusers UNet in place (`inject_adapter_in_model`, as diffusers' own LoRA
loaders do), so the model keeps its class, its config and its call. Only the adapter's weights train: every
base weight stays frozen, bit for bit.

Targets are named groups or regular expressions over module names (matched whole, as peft does):

| group | layers |
| --- | --- |
| `temporal` | every linear and 3D-conv layer of the temporal parts: temporal attention (q, k, v, out), its feed-forwards, the temporal resnets |
| `temporal_attention` | q, k, v and out of the temporal (across-frames) attention |
| `spatial_attention` | q, k, v and out of the spatial self- and cross-attention (the image backbone's) |
| `all_attention` | both |

The adapter folder is peft's own (`adapter_config.json`, `adapter_model.safetensors` with peft's
`base_model.model.` key prefix), so `peft.PeftModel.from_pretrained(unet, folder)` loads it as well.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import peft
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from svd.model.config import LoraConfig

_ATTENTION = r"attn[12]\.(to_q|to_k|to_v|to_out\.0)"
TARGET_GROUPS: dict[str, str] = {
    "temporal": rf".*(temporal_transformer_blocks\.\d+\.({_ATTENTION}|ff_in\.net\.(0\.proj|2)|ff\.net\.(0\.proj|2))"
    r"|temporal_res_block\.(conv1|conv2|time_emb_proj))",
    "temporal_attention": rf".*temporal_transformer_blocks\.\d+\.{_ATTENTION}",
    "spatial_attention": rf".*(?<!temporal_)transformer_blocks\.\d+\.{_ATTENTION}",
    "all_attention": rf".*transformer_blocks\.\d+\.{_ATTENTION}",
}
ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
_PEFT_PREFIX = "base_model.model."  # what PeftModel.save_pretrained puts before every key


class AdapterError(ValueError):
    """An adapter that does not fit a model, or targets that match nothing: one line saying which and why."""


def target_pattern(targets: list[str]) -> str:
    """One regular expression (peft's `target_modules`) for named groups and module-name patterns."""
    if not targets:
        raise AdapterError("model.lora.targets is empty: name groups (" + ", ".join(TARGET_GROUPS) + ") or patterns")
    parts = []
    for target in targets:
        pattern = TARGET_GROUPS.get(target, target)
        try:
            re.compile(pattern)
        except re.error as error:
            raise AdapterError(
                f"model.lora.targets: {target!r} is neither a group nor a valid pattern ({error})"
            ) from None
        parts.append(f"(?:{pattern})")
    return "|".join(parts)


def add_lora(unet: nn.Module, config: LoraConfig) -> list[nn.Parameter]:
    """Freeze all of `unet`, inject a fresh adapter (B zero: the model is unchanged until it trains) and return
    the adapter's parameters, the only trainable ones."""
    unet.requires_grad_(False)
    lora = peft.LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha if config.alpha is not None else config.rank,
        lora_dropout=config.dropout,
        target_modules=target_pattern(config.targets),
    )
    _inject(lora, unet, f"model.lora.targets {config.targets}")
    return [parameter for parameter in unet.parameters() if parameter.requires_grad]


def save_adapter(unet: nn.Module, folder: Path) -> Path:
    """Write the adapter in `unet` as a peft adapter folder (safetensors)."""
    config: peft.LoraConfig = unet.peft_config["default"]
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(folder))
    weights = {_PEFT_PREFIX + name: t.detach().cpu().contiguous() for name, t in adapter_state(unet).items()}
    save_file(weights, str(folder / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    return folder


def adapter_state(unet: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's weights by module name, without peft's adapter name (`...to_q.lora_A.weight`)."""
    return peft.get_peft_model_state_dict(unet)


def load_adapter(unet: nn.Module, folder: str | Path, scale: float = 1.0) -> None:
    """Apply the adapter in `folder` to `unet` at `scale` and merge it into the weights (no cost per step)."""
    folder = check_adapter_folder(folder)
    try:
        config = peft.LoraConfig.from_pretrained(str(folder))
    except (ValueError, TypeError, json.JSONDecodeError) as error:
        raise AdapterError(f"{folder / ADAPTER_CONFIG}: not a LoRA adapter config ({error})") from None
    _inject(config, unet, str(folder))
    weights = {name.removeprefix(_PEFT_PREFIX): tensor for name, tensor in load_file(folder / ADAPTER_WEIGHTS).items()}
    expected = adapter_state(unet)
    if set(weights) != set(expected):
        raise AdapterError(f"{folder}: its weights name other layers than its config targets in this model")
    for name, tensor in weights.items():
        if tensor.shape != expected[name].shape:
            raise AdapterError(
                f"{folder}: {name} is {tuple(tensor.shape)} here {tuple(expected[name].shape)}: made for another model"
            )
    peft.set_peft_model_state_dict(unet, weights)
    for module in unet.modules():
        if isinstance(module, peft.tuners.lora.LoraLayer):
            module.set_scale("default", scale)
    merge_lora(unet)


def check_adapter_folder(folder: str | Path) -> Path:
    """`folder` if it holds an adapter's two files, else AdapterError (before any model loads)."""
    folder = Path(folder)
    if not (folder / ADAPTER_CONFIG).is_file() or not (folder / ADAPTER_WEIGHTS).is_file():
        raise AdapterError(f"{folder}: not a LoRA adapter folder (it needs {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS})")
    return folder


def merge_lora(unet: nn.Module) -> None:
    """Fold the adapter into the base weights and put the plain layers back: a model like any other."""
    for name, module in list(unet.named_modules()):
        if isinstance(module, peft.tuners.lora.LoraLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(unet.get_submodule(parent) if parent else unet, child, module.get_base_layer())
    if hasattr(unet, "peft_config"):  # set by peft's injection; a merged model has no adapter left
        del unet.peft_config


def _inject(config: peft.LoraConfig, unet: nn.Module, what: str) -> None:
    try:
        peft.inject_adapter_in_model(config, unet)
    except ValueError as error:  # peft: "Target modules ... not found in the base model"
        raise AdapterError(f"{what}: matches no layer of this UNet ({str(error).splitlines()[0][:160]})") from None
