"""`svd train`: the training loop, top to bottom.

One function, `train`, in the order things happen: processes and seeds, model, optimizer, resume, data, then
the loop (micro-batches with gradient accumulation, clipping, optimizer and EMA step, logging, validation,
checkpoint), then the export. Multi-GPU is plain PyTorch DDP under `torchrun`; every rank reads its own shards.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image
import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from curation.config_io import save_config
from curation.video_io import write_mp4
from svd.model.conditioning import added_time_ids, unet_sample
from svd.model.freeze import apply_freeze
from svd.model.lora import add_lora
from svd.train.buckets import buckets_of, nearest_bucket
from svd.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    load_optimizer,
    optimizer_tensors,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from svd.train.components import build_components
from svd.train.config import TrainConfig, TrainLoopConfig
from svd.train.data import ClipBatches
from svd.train.ema import EMA
from svd.train.export import export
from svd.train.latents import LatentCache, cached_moments, encoder_identity, posterior_moments, sample_latents
from svd.train.logs import MetricsLog
from svd.train.memory import (
    TrainSetupError,
    enable_gradient_checkpointing,
    gathered,
    make_optimizer,
    shard,
    shard_like,
    unsharded,
    use_tf32,
)
from svd.train.validation import validation_video

log = logging.getLogger("svd.train")


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    losses: dict[int, float] = field(default_factory=dict)  # step -> mean loss over its micro-batches (this rank)
    counts: dict[str, int] = field(default_factory=dict)  # examples, skipped_* ... (this rank)
    checkpoint: Path | None = None
    final: Path | None = None


def train(config: TrainConfig, run_dir: str | Path, *, resume: bool = False) -> TrainResult:
    """Train `config.model` on `config.data` into `run_dir`; with `resume`, continue from its latest checkpoint."""
    cfg = config.train
    run_dir = Path(run_dir)

    # 1. Processes, device, seeds. Under torchrun each process is one rank with its own GPU (or a CPU share).
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(cfg.device, local_rank)
    rank, world_size = _init_processes(device)
    master = rank == 0
    run_dir.mkdir(parents=True, exist_ok=True)
    if master:
        save_config(config, run_dir / "config.yaml")
    random.seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    torch.manual_seed(cfg.seed + rank)
    # Every random draw of the loop (noise, noise levels, dropout, noise augmentation, VAE posterior samples) comes
    # from this generator, on the CPU whatever the device, so a run and its resumed twin draw the same numbers.
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + rank)

    # 2. Model: the video UNet (trainable parts per model.freeze) and the frozen conditioning encoders.
    components = build_components(config.model, run_dir)
    unet = components.unet.to(device)
    for module in components.frozen_modules():
        module.to(device)
    lora = config.model.lora
    # With LoRA the adapter alone trains; otherwise the parameters model.freeze names.
    if lora.rank:
        add_lora(unet, lora)
    else:
        apply_freeze(unet, config.model.freeze)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(unet)
    if cfg.tf32:
        use_tf32(device)
    sharded = cfg.fsdp and world_size > 1
    if sharded:
        if lora.rank:
            raise TrainSetupError("train.fsdp shards a full finetune; a LoRA adapter is small: train it without fsdp")
        shard(unet)  # parameters become DTensors: the trainable ones are collected after this
    elif cfg.fsdp:
        log.info("train.fsdp with one process: nothing to shard")
    named_trainable = {name: p for name, p in unet.named_parameters() if p.requires_grad}
    trainable = list(named_trainable.values())
    if sharded:
        log.info(
            "fsdp: rank %d holds %d of the %d trainable parameters, and their optimizer state",
            rank,
            sum(p.to_local().numel() for p in trainable),
            sum(p.numel() for p in trainable),
        )
    parameterisation = components.parameterisation
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    image_to_video = config.model.conditioning == "image"
    log.info(
        "%.1fM of %.1fM UNet parameters train (%s)",
        sum(p.numel() for p in trainable) / 1e6,
        sum(p.numel() for p in unet.parameters()) / 1e6,
        f"LoRA rank {lora.rank} on {', '.join(lora.targets)}" if lora.rank else f"freeze {config.model.freeze}",
    )

    # 3. Optimizer on the trainable parameters only, LR schedule, EMA; DDP across ranks unless sharded.
    optimizer = make_optimizer(trainable, cfg, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg))
    ema = EMA(named_trainable, cfg.ema_decay) if cfg.ema_decay else None
    model = (
        torch.nn.parallel.DistributedDataParallel(unet, device_ids=[local_rank] if device.type == "cuda" else None)
        if world_size > 1 and not sharded
        else unet
    )

    # 4. Resume: weights, optimizer, schedule, EMA, RNG states and data position of the latest checkpoint.
    step, position, waiting, counts, saved_shards = 0, 0, [], Counter(), None
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if resume and checkpoint is None:
        log.warning("--resume: no checkpoint in %s; starting from step 0", run_dir / "checkpoints")
    if checkpoint is not None:
        saved = load_checkpoint(checkpoint)
        state = saved["state"]
        with torch.no_grad():
            for name, tensor in saved["trainable"].items():
                named_trainable[name].copy_(shard_like(tensor, named_trainable[name]))
        load_optimizer(optimizer, saved["optimizer"], state["param_groups"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None and saved["ema"] is not None:
            averaged = {name: shard_like(tensor, ema.shadow[name]) for name, tensor in saved["ema"].items()}
            ema.load_state_dict(averaged, state["ema_updates"])
        ranks = state["ranks"]
        if len(ranks) != world_size:
            raise ValueError(f"{checkpoint} was written by {len(ranks)} rank(s); resume with as many, not {world_size}")
        set_rng_state(saved["rng"][rank], ranks[rank]["rng"], generator)
        step, position, counts = state["step"], ranks[rank]["data_position"], Counter(ranks[rank]["counts"])
        waiting = ranks[rank].get("waiting", [])
        saved_shards = ranks[rank].get("shards")
        log.info("resumed from %s (step %d)", checkpoint, step)

    # 5. Data: this rank's shards, streamed, decoded, skipping what it already consumed; the latent cache.
    cache = None
    if config.data.latent_cache:
        cache = LatentCache(config.data.latent_cache, encoder_identity(components.vae))
        log.info("latent cache in %s (encoder %s)", cache.folder, cache.encoder[:12])
        if config.data.windows_per_clip is None:
            log.warning(
                "data.latent_cache without data.windows_per_clip: windows start anywhere, so few ever come back "
                "to hit the cache"
            )
    batches = ClipBatches(
        config.data,
        config.model.num_frames,
        cfg.batch_size,
        seed=cfg.seed,
        rank=rank,
        world_size=world_size,
        position=position,
        waiting=waiting,
        cache=cache,
    )
    urls = batches.stream.urls
    log.info("rank %d of %d reads %d shard(s): %s", rank, world_size, len(urls), _listing(urls))
    if saved_shards is not None and saved_shards != urls:
        log.warning("rank %d: its shards changed since the checkpoint; the data does not resume where it stopped", rank)
    batches.counts.update(counts)
    metrics = MetricsLog(run_dir, config.log.tensorboard) if master else None
    result = TrainResult(run_dir, step)
    validation_image = _validation_image(config, run_dir)
    dropout = cfg.dropout
    window: list[float] = []
    samples_per_step = cfg.batch_size * cfg.grad_accum * world_size

    # 6. The loop.
    while step < cfg.max_steps:
        started = time.perf_counter()
        step_loss = 0.0
        for micro in range(cfg.grad_accum):
            batch = next(batches)
            frames = batch["frames"].to(device).float() / 127.5 - 1.0  # (B, F, 3, H, W) in [-1, 1]
            size = frames.shape[0]
            if validation_image is None and config.validation.every and (master or sharded):
                validation_image = _first_frame_as_validation_image(frames[0, 0], run_dir if master else None)

            # Conditioning, with the frozen encoders: no gradients, and no autocast (the encoders run in their own
            # dtype, as sgm and the pipeline encode). Targets are drawn from the VAE posterior of the frames,
            # whose moments may come from the latent cache.
            with torch.no_grad():
                if cache is None:
                    moments = posterior_moments(components.vae, frames)
                else:
                    moments = cached_moments(cache, batch, components.vae, frames)
                x0 = sample_latents(components.vae, moments, generator).float()
                draw = torch.rand(size, generator=generator)
                drop_image = draw < dropout.both + dropout.image
                drop_text = (draw < dropout.both) | (
                    (draw >= dropout.both + dropout.image) & (draw < dropout.both + dropout.image + dropout.text)
                )
                if image_to_video:
                    # SVD: noise augmentation of the conditioning frame, ln(strength) ~ N(-3.0, 0.5^2).
                    strength = (
                        cfg.noise_aug_p_mean + cfg.noise_aug_p_std * torch.randn(size, generator=generator)
                    ).exp()
                    condition = components.conditioner(frames[:, 0], strength.to(device), generator=generator)
                    keep = (~drop_image).to(device=device, dtype=torch.float32)
                    context = condition["encoder_hidden_states"].float() * keep.view(-1, 1, 1)
                    condition_latents = condition["condition_latents"].float() * keep.view(-1, 1, 1, 1)
                else:
                    strength = torch.zeros(size)
                    captions = [
                        "" if drop else caption
                        for drop, caption in zip(drop_text.tolist(), batch["captions"], strict=False)
                    ]
                    context = components.conditioner(captions)["encoder_hidden_states"].float()
                    condition_latents = None
                time_ids = added_time_ids(
                    batch["fps"], batch["motion_bucket_id"], strength, batch_size=size, device=device
                )

            # Noise the latents, denoise, score (edm or the SD backbone's own parameterisation).
            noise = torch.randn(x0.shape, generator=generator).to(device)
            levels = parameterisation.sample_levels(size, generator=generator, device=device)
            sample, timestep = parameterisation.unet_inputs(parameterisation.add_noise(x0, noise, levels), levels)
            last_micro = micro == cfg.grad_accum - 1
            if sharded:
                model.set_requires_gradient_sync(last_micro)
            sync = contextlib.nullcontext() if last_micro or world_size == 1 or sharded else model.no_sync()
            with sync:
                with autocast:
                    output = model(
                        unet_sample(sample, condition_latents),
                        timestep,
                        encoder_hidden_states=context,
                        added_time_ids=time_ids,
                    ).sample
                loss = parameterisation.loss(output.float(), x0, noise, levels).mean()
                (loss / cfg.grad_accum).backward()
            step_loss += loss.item() / cfg.grad_accum

        # Optimizer step on the accumulated gradients.
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip or math.inf)
        if isinstance(grad_norm, DTensor):
            grad_norm = grad_norm.full_tensor()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update()
        step += 1
        result.losses[step] = step_loss
        window.append(step_loss)
        elapsed = time.perf_counter() - started

        # Logging (loss averaged over the ranks and the steps since the last line).
        if step % config.log.every == 0 or step == cfg.max_steps:
            mean_loss = torch.tensor(sum(window) / len(window), device=device)
            if world_size > 1:
                dist.all_reduce(mean_loss, op=dist.ReduceOp.AVG)
            window.clear()
            values = {
                "loss": mean_loss.item(),
                "lr": scheduler.get_last_lr()[0],
                "grad_norm": float(grad_norm),
                "step_time_s": elapsed,
                "samples_per_s": samples_per_step / elapsed,
                "skipped": sum(v for k, v in batches.counts.items() if k.startswith("skipped_")),
            }
            if cache is not None:
                values["cache_hits"] = batches.counts["latent_cache_hit"]
                values["cache_misses"] = batches.counts["latent_cache_miss"] + batches.counts["latent_cache_unreadable"]
            if device.type == "cuda":
                values["gpu_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
            if master:
                metrics.write(step, values)

        # Validation video from the fixed conditioning (its own seed: the training RNG is untouched). Sharded, every
        # rank runs the sampling loop (each forward gathers the weights from all of them); rank 0 writes it.
        if (master or sharded) and config.validation.every and step % config.validation.every == 0:
            weights = ema.applied() if ema is not None and config.validation.ema else contextlib.nullcontext()
            bucket = nearest_bucket(buckets_of(config.data, config.model.num_frames), *validation_image.size[::-1])
            with weights:
                video = validation_video(
                    components,
                    unet,
                    config.validation,
                    validation_image,
                    height=bucket.height,
                    width=bucket.width,
                    num_frames=config.validation.num_frames or bucket.num_frames,
                    device=device,
                )
            if master:
                path = run_dir / "validation" / f"step-{step:08d}.mp4"
                path.parent.mkdir(parents=True, exist_ok=True)
                write_mp4(video, path, config.validation.fps)

        # Checkpoint: every rank's RNG and data position gathered, full tensors of sharded ones, rank 0 writes.
        if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
            weights = gathered(named_trainable)
            averaged = gathered(ema.state_dict()) if ema is not None else None
            optimizer_state, groups = optimizer_tensors(optimizer)
            optimizer_state = gathered(optimizer_state)
            rng_tensors, rng_plain = rng_state(generator)
            mine = {
                "rng": rng_plain,
                "data_position": batches.position,
                "waiting": batches.waiting(),
                "counts": dict(batches.counts),
                "shards": urls,
            }
            everyone = [(rng_tensors, mine)]
            if world_size > 1:
                everyone = [None] * world_size
                dist.all_gather_object(everyone, (rng_tensors, mine))
            if master:
                result.checkpoint = save_checkpoint(
                    run_dir,
                    step,
                    trainable=weights,
                    ema=averaged,
                    optimizer=(optimizer_state, groups),
                    state={
                        "scheduler": scheduler.state_dict(),
                        "ema_updates": ema.updates if ema else 0,
                        "ranks": [ranked for _, ranked in everyone],
                    },
                    rng_tensors=[tensors for tensors, _ in everyone],
                    keep=cfg.keep_checkpoints,
                )
                log.info("checkpoint %s", result.checkpoint)
            if world_size > 1:
                dist.barrier()

    # 7. Export in diffusers layout, with the EMA weights when kept.
    result.step, result.counts = step, dict(batches.counts)
    if sharded:  # every rank: the full weights to rank 0, into a plain (unsharded) UNet
        unet = unsharded(unet, gathered(ema.state_dict()) if ema is not None else None)
    elif ema is not None:
        ema.copy_to(unet)
    if master:
        result.final = export(
            components,
            unet,
            run_dir / "final",
            {
                "conditioning": config.model.conditioning,
                "parameterisation": config.model.resolved_parameterisation(),
                "weights": "ema" if ema is not None else "last",
                "step": step,
                "model": config.model.model_dump(),
            },
            lora=lora.rank > 0,
            merge=config.export.merge_lora,
        )
        metrics.close()
        log.info("%s: trained %d steps; counts %s", result.final, step, dict(batches.counts))
    if world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result


def lr_factor(step: int, cfg: TrainLoopConfig) -> float:
    """Multiplier of `lr` for optimizer step `step` (from 0): linear warmup, then constant, cosine or linear."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1.0 - progress
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * shape


def _listing(items: list[str], most: int = 4) -> str:
    return ", ".join(items) if len(items) <= most else f"{', '.join(items[:most])} ... ({len(items) - most} more)"


def _init_processes(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the process group when started by torchrun with several processes: NCCL on
    GPUs, gloo on CPUs (`train.device=cpu` included, on a machine with GPUs)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return int(os.environ.get("RANK", "0")), world_size


def _device(name: str, local_rank: int) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _validation_image(config: TrainConfig, run_dir: Path) -> PIL.Image.Image | None:
    if config.validation.image:
        return PIL.Image.open(config.validation.image).convert("RGB")
    saved = run_dir / "validation" / "condition.png"
    return PIL.Image.open(saved).convert("RGB") if saved.is_file() else None


def _first_frame_as_validation_image(frame: torch.Tensor, run_dir: Path | None) -> PIL.Image.Image:
    """The first training frame, kept as the fixed validation conditioning (saved in `run_dir`, so a resumed run
    reuses it; sharded, the other ranks keep their own first frame in memory: only rank 0's video is written)."""
    pixels = ((frame.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    image = PIL.Image.fromarray(pixels)
    if run_dir is not None:
        (run_dir / "validation").mkdir(parents=True, exist_ok=True)
        image.save(run_dir / "validation" / "condition.png")
    return image
