"""Checkpoints: everything a run needs to continue exactly where it stopped.

RUN_DIR/checkpoints/step-NNNNNNNN/
  trainable.safetensors   the trainable UNet weights, by parameter name (frozen ones come from the base)
  ema.safetensors         their exponential moving average (when train.ema_decay is set)
  optimizer.safetensors   AdamW's state tensors, `state.{index}.{name}`, index in the optimizer's parameter order
  state.json              step, optimizer param_groups, LR scheduler state, data position and counts, EMA update
                          count, python and numpy RNG states, per rank
  rng.safetensors         torch CPU/CUDA RNG states and the training generator's state, per rank

A checkpoint folder is written under a temporary name and renamed when complete, so the newest complete
folder is always a good one to resume from.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.distributed.tensor import DTensor

from svd.train.memory import shard_like

log = logging.getLogger(__name__)

PREFIX = "step-"


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"{PREFIX}{step:08d}"


def latest_checkpoint(run_dir: Path) -> Path | None:
    folder = run_dir / "checkpoints"
    done = (
        sorted(p for p in folder.glob(f"{PREFIX}*") if p.is_dir() and (p / "state.json").is_file())
        if folder.is_dir()
        else []
    )
    return done[-1] if done else None


def rng_state(generator: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, json-able) RNG states of this process: torch (CPU, CUDA), the training generator, python, numpy."""
    tensors = {"torch_cpu": torch.get_rng_state(), "generator": generator.get_state()}
    if torch.cuda.is_available():
        tensors["torch_cuda"] = torch.cuda.get_rng_state()
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    plain = {
        "python": [version, list(internal), gauss_next],
        "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
    }
    return tensors, plain


def set_rng_state(tensors: dict[str, torch.Tensor], plain: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    generator.set_state(tensors["generator"])
    if "torch_cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["torch_cuda"])
    version, internal, gauss_next = plain["python"]
    random.setstate((version, tuple(internal), gauss_next))
    kind, keys, pos, has_gauss, gauss = plain["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """The optimizer's state as flat tensors, `state.{index}.{name}`: nested dicts (bitsandbytes keeps its 8-bit
    states in one) as `name.{inner}`, numbers (bitsandbytes' integer step) as 0-d tensors."""
    state = optimizer.state_dict()
    tensors, storages = {}, set()
    for index, values in state["state"].items():
        for name, value in values.items():
            inner = value.items() if isinstance(value, dict) else [(None, value)]
            for part, item in inner:
                key = f"state.{index}.{name}" if part is None else f"state.{index}.{name}.{part}"
                tensor = (item if torch.is_tensor(item) else torch.tensor(item)).detach().contiguous()
                if not isinstance(tensor, DTensor):
                    if tensor.numel() and tensor.data_ptr() in storages:
                        tensor = tensor.clone()  # shared by several parameters (bitsandbytes' quantisation maps)
                    storages.add(tensor.data_ptr())
                tensors[key] = tensor
    return tensors, state["param_groups"]


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict]) -> None:
    """Restore what `optimizer_tensors` saved; under FSDP each state tensor is sharded as its parameter."""
    parameters = [parameter for group in optimizer.param_groups for parameter in group["params"]]
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        values = state.setdefault(int(index), {})
        if "." in name:
            name, part = name.split(".", 1)
            values.setdefault(name, {})[part] = value
        elif value.dim() == 0 and not value.is_floating_point():
            values[name] = int(value)  # an integer step (torch's own AdamW keeps a float tensor)
        else:
            values[name] = shard_like(value, parameters[int(index)])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(
    run_dir: Path,
    step: int,
    *,
    trainable: dict[str, torch.Tensor],
    ema: dict[str, torch.Tensor] | None,
    optimizer: tuple[dict[str, torch.Tensor], list[dict]],
    state: dict[str, Any],
    rng_tensors: list[dict[str, torch.Tensor]],
    keep: int,
) -> Path:
    """Write one checkpoint (rank 0, with every rank's RNG and data state gathered in `state` / `rng_tensors`).

    Tensors are full ones (`svd.train.memory.gathered` under FSDP); `optimizer` is `optimizer_tensors`' result.
    """
    final = checkpoint_dir(run_dir, step)
    staging = final.with_name(final.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file(
        {k: v.detach().float().contiguous().cpu() for k, v in trainable.items()}, staging / "trainable.safetensors"
    )
    if ema is not None:
        save_file({k: v.contiguous().cpu() for k, v in ema.items()}, staging / "ema.safetensors")
    tensors, groups = optimizer
    save_file({k: v.cpu() for k, v in tensors.items()}, staging / "optimizer.safetensors")
    save_file(
        {f"rank{rank}.{name}": t.cpu() for rank, ranks in enumerate(rng_tensors) for name, t in ranks.items()},
        staging / "rng.safetensors",
    )
    (staging / "state.json").write_text(json.dumps({"step": step, "param_groups": groups, **state}, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    old = sorted(p for p in final.parent.glob(f"{PREFIX}*") if p.is_dir() and not p.name.endswith(".tmp"))
    for folder in old[:-keep]:
        shutil.rmtree(folder, ignore_errors=True)
    return final


def load_checkpoint(folder: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    state = json.loads((folder / "state.json").read_text())
    rng: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in load_file(folder / "rng.safetensors").items():
        rank, name = key.split(".", 1)
        rng.setdefault(int(rank[4:]), {})[name] = tensor
    return {
        "state": state,
        "trainable": load_file(folder / "trainable.safetensors", device=str(device)),
        "ema": load_file(folder / "ema.safetensors", device=str(device))
        if (folder / "ema.safetensors").is_file()
        else None,
        "optimizer": load_file(folder / "optimizer.safetensors", device=str(device)),
        "rng": rng,
    }
