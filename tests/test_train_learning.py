"""The honest check that the temporal layers learn: motion that no frame-by-frame model can express.

Each clip is a square that moves right when it starts in the left half of the frame and left when it starts
in the right half. Conditioned on the first frame, the direction is known, but the frozen backbone, applied
to each frame on its own, cannot tell frame 1 from frame 3 and so cannot place the square; only layers that
relate frames to each other (the temporal ones, with the frame-position embedding) can. After a short
training on shards, the held-out loss must drop clearly below its start, and the model must prefer the
true motion to the same first frame moving the wrong way.
"""

import numpy as np
import pytest
import torch
from test_train_loop import tiny_config
from tiny_shards import SIZE, SQUARE, square_frames, square_shards

from svd.model.conditioning import added_time_ids, unet_sample
from svd.train.components import build_components
from svd.train.loop import train

FRAMES = 4
TIMESTEPS = (50, 150, 300, 500)  # where the noisy frames still show the square (SD 2.1's schedule)


def held_out(direction_sign: int) -> torch.Tensor:
    """16 clips the training never saw, (N, F, 3, H, W) in [-1, 1]; direction_sign -1 reverses each motion."""
    rng = np.random.default_rng(1234)
    clips = []
    for _ in range(16):
        direction = int(rng.choice([-1, 1]))
        x0 = int(rng.integers(0, 3)) if direction > 0 else int(rng.integers(SIZE - SQUARE - 2, SIZE - SQUARE + 1))
        y0 = int(rng.integers(0, SIZE - SQUARE + 1))
        clips.append(square_frames(x0, y0, direction * direction_sign, FRAMES))
    return torch.from_numpy(np.stack(clips)).permute(0, 1, 4, 2, 3).float() / 127.5 - 1


@torch.no_grad()
def held_out_loss(components, unet, frames: torch.Tensor) -> float:
    """Mean loss over the clips and the fixed timesteps, with fixed noise: the same numbers for every model."""
    generator = torch.Generator().manual_seed(0)
    vae = components.vae
    x0 = vae.encode(frames.flatten(0, 1)).latent_dist.mode() * vae.config.scaling_factor
    x0 = x0.reshape(*frames.shape[:2], *x0.shape[1:])
    condition = components.conditioner(frames[:, 0], 0.02, generator=generator)
    ids = added_time_ids(8.0, 127, 0.02, batch_size=len(frames))
    p = components.parameterisation
    losses = []
    for t in TIMESTEPS:
        levels = torch.full((len(frames),), t)
        noise = torch.randn(x0.shape, generator=generator)
        sample, timestep = p.unet_inputs(p.add_noise(x0, noise, levels), levels)
        output = unet(
            unet_sample(sample, condition["condition_latents"]),
            timestep,
            encoder_hidden_states=condition["encoder_hidden_states"],
            added_time_ids=ids,
        ).sample
        losses.append(p.loss(output, x0, noise, levels).mean().item())
    return float(np.mean(losses))


@pytest.mark.xfail(
    reason="not yet tuned: after 150 steps the held-out loss drops (from above 0.40 to 0.28) but equally for the wrong "
    "direction, i.e. the drop is frame-by-frame fitting, not motion; needs more steps or an easier setting",
    strict=False,
)
def test_temporal_layers_learn_which_way_the_square_moves(tmp_path):
    shards = tmp_path / "shards"
    square_shards(shards, count=64, num_frames=FRAMES, per_shard=16)
    config = tiny_config(
        str(shards / "*.tar"),
        f"model.num_frames={FRAMES}",
        "data.stride=1",
        "data.fps=null",
        "data.num_workers=2",
        "data.shuffle_buffer=32",
        "train.max_steps=150",
        "train.batch_size=8",
        "train.lr=2e-3",
        "train.warmup_steps=10",
        "train.ema_decay=null",
        "train.checkpoint_every=1000",
        "train.dropout={image: 0.0, text: 0.0, both: 0.0}",
        "validation.every=0",
        "log.every=25",
    )
    start = build_components(config.model, tmp_path / "start")
    start.unet.eval()
    true_motion, wrong_motion = held_out(1), held_out(-1)
    before = held_out_loss(start, start.unet, true_motion)
    before_wrong = held_out_loss(start, start.unet, wrong_motion)

    result = train(config, tmp_path / "run")
    trained = build_components(config.model, tmp_path / "trained")
    from safetensors.torch import load_file

    trained.unet.load_state_dict(load_file(result.checkpoint / "trainable.safetensors"), strict=False)
    trained.unet.eval()
    after = held_out_loss(trained, trained.unet, true_motion)
    after_wrong = held_out_loss(trained, trained.unet, wrong_motion)
    print(f"held-out loss {before:.4f} -> {after:.4f}; wrong direction {before_wrong:.4f} -> {after_wrong:.4f}")
    # The frame-by-frame model at the start cannot tell the two directions apart.
    assert abs(before - before_wrong) < 0.05 * before
    assert after < 0.7 * before
    assert after < 0.85 * after_wrong
