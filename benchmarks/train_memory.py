"""Training step time, samples/s and peak GPU memory of the SVD UNet at full size (random weights).

One training step as `svd train` runs it on the UNet: EDM noise on random latents, bf16 autocast, forward,
backward, gradient clipping, fused AdamW (or bitsandbytes' 8-bit AdamW) on the trainable parameters only, EMA
update. Per frame size: `freeze` temporal and all, with and without gradient checkpointing; then the memory
cases of issue 18 with checkpointing: a LoRA adapter of rank 64 on all attention layers, and `all` with 8-bit
AdamW. The frozen encoders are
left out (their encoding runs under no_grad and is freed before the UNet runs); batch 1, 14 frames, the CLIP
embedding as a random (1, 1, 1024) context.

    python benchmarks/train_memory.py                    # needs a GPU: 320x576 and 576x1024, temporal/all,
                                                         # with and without checkpointing; JSON lines on stdout
    python benchmarks/train_memory.py --tiny             # the same code on a tiny UNet on the CPU (a smoke test)
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from diffusers import UNetSpatioTemporalConditionModel

sys.path.insert(0, str(Path(__file__).parent))
from model_params import SVD_XT_UNET  # noqa: E402

from svd.model.conditioning import added_time_ids, unet_sample  # noqa: E402
from svd.model.config import LoraConfig  # noqa: E402
from svd.model.freeze import apply_freeze  # noqa: E402
from svd.model.lora import add_lora  # noqa: E402
from svd.model.parameterisation import EDM  # noqa: E402
from svd.train.config import TrainLoopConfig  # noqa: E402
from svd.train.ema import EMA  # noqa: E402
from svd.train.memory import enable_gradient_checkpointing, make_optimizer  # noqa: E402

# Issue 18's memory cases, beside the freeze x checkpointing grid: (policy, optimizer, LoRA rank).
MEMORY_CASES = (("lora", "adamw", 64), ("all", "adamw8bit", 0))

TINY_UNET = {
    "block_out_channels": [32, 64],
    "down_block_types": ["CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"],
    "up_block_types": ["UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"],
    "cross_attention_dim": 32,
    "num_attention_heads": [2, 4],
    "layers_per_block": 1,
}


def run(
    config: dict,
    *,
    policy: str,
    checkpointing: bool,
    frames: int,
    height: int,
    width: int,
    steps: int,
    device: torch.device,
    context_dim: int,
    optimizer_name: str = "adamw",
    lora_rank: int = 0,
) -> dict:
    torch.manual_seed(0)
    with torch.device(device):  # initialised in place on the device: a full-size init on the CPU is slow
        unet = UNetSpatioTemporalConditionModel(**config).train()
    if lora_rank:
        trainable = add_lora(unet, LoraConfig(rank=lora_rank, targets=["all_attention"]))
    else:
        trainable = apply_freeze(unet, policy)
    named = {n: p for n, p in unet.named_parameters() if p.requires_grad}
    if checkpointing:
        enable_gradient_checkpointing(unet)
    optimizer = make_optimizer(trainable, TrainLoopConfig(lr=1e-5, optimizer=optimizer_name), device)
    ema = EMA(named, 0.9999)
    edm = EDM(0.7, 1.6)  # SVD's high-resolution noise distribution
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    latent = (1, frames, 4, height // 8, width // 8)
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        for _ in range(steps):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            x0 = torch.randn(latent, device=device)
            condition = torch.randn(1, 4, height // 8, width // 8, device=device)
            context = torch.randn(1, 1, context_dim, device=device)
            noise = torch.randn_like(x0)
            sigma = edm.sample_levels(1, device=device)
            sample, timestep = edm.unet_inputs(edm.add_noise(x0, noise, sigma), sigma)
            with autocast:
                output = unet(
                    unet_sample(sample, condition),
                    timestep,
                    encoder_hidden_states=context,
                    added_time_ids=added_time_ids(7, 127, 0.02, batch_size=1, device=device),
                ).sample
            loss = edm.loss(output.float(), x0, noise, sigma).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            ema.update()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - started)
        status = "ok"
    except torch.OutOfMemoryError:
        status = "out of memory"
    step_time = sorted(times[1:] or times)[len(times[1:] or times) // 2] if times else None
    result = {
        "policy": policy,
        "optimizer": optimizer_name,
        "lora_rank": lora_rank,
        "checkpointing": checkpointing,
        "frames": frames,
        "height": height,
        "width": width,
        "status": status,
        "trainable_M": round(sum(p.numel() for p in trainable) / 1e6, 1),
        "step_time_s": round(step_time, 3) if step_time else None,
        "samples_per_s": round(1 / step_time, 3) if step_time else None,
    }
    if device.type == "cuda":
        result["peak_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    del unet, optimizer, ema, trainable, named
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def setup(tiny: bool) -> tuple[torch.device, dict, int, list[tuple[int, int, int]]]:
    """(device, UNet config, context width, the (frames, height, width) cases) at full size or tiny."""
    if tiny:
        return torch.device("cpu"), {**TINY_UNET, "num_frames": 4}, 32, [(4, 64, 64)]
    return torch.device("cuda"), {**SVD_XT_UNET, "num_frames": 14}, 1024, [(14, 320, 576), (14, 576, 1024)]


def benchmark(tiny: bool, steps: int, cases: list[tuple[int, int, int]] | None = None) -> Iterator[dict]:
    """One row per case and variant (freeze temporal/all x checkpointing off/on, then MEMORY_CASES), as each is
    measured."""
    device, config, context_dim, default_cases = setup(tiny)
    for frames, height, width in cases or default_cases:
        variants = [(policy, "adamw", 0, checkpointing) for policy in ("temporal", "all") for checkpointing in (0, 1)]
        variants += [(policy, optimizer, rank, True) for policy, optimizer, rank in MEMORY_CASES]
        for policy, optimizer_name, lora_rank, checkpointing in variants:
            yield run(
                config,
                policy=policy,
                checkpointing=bool(checkpointing),
                frames=frames,
                height=height,
                width=width,
                steps=steps,
                device=device,
                context_dim=context_dim,
                optimizer_name=optimizer_name,
                lora_rank=lora_rank,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny UNet, 4 frames of 64x64, on the CPU")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    if not args.tiny and not torch.cuda.is_available():
        sys.exit("no GPU: run with --tiny for the CPU smoke test")
    print(
        json.dumps(
            {
                "machine": platform.node(),
                "device": torch.cuda.get_device_name() if not args.tiny else platform.processor() or "cpu",
                "torch": torch.__version__,
            }
        )
    )
    for row in benchmark(args.tiny, args.steps):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
