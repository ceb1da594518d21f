"""The honest check that the temporal layers learn: motion that no frame-by-frame model can express.

Each clip is a square that moves right when it starts in the left half of the frame and left when it starts in
the right half. The model is the trainer's image-to-video setup on a tiny inflated SD: the spatial backbone
frozen, `temporal+io` training the temporal layers, `conv_in` (whose conditioning channels carry the first
frame) and `add_embedding`. Everything but the temporal layers works on each frame on its own: a frame sees its
noisy latent and the first frame, never which frame of the clip it is, so it can say which way the square goes
but not how far it has gone by that frame.

The test trains with the real `train()` on shards, then scores the exported UNet on held-out clips twice: as
they are, and with their frames in reverse order (the same first-frame conditioning, the noise reversed with
the frames). A model without cross-frame layers gives the two exactly the same loss, whatever it learned: the
same frames go through it, in another order. So any gap between them is learned by the temporal layers alone,
and it must be clear, not noise: the true order must score well below the reversed one, the square going
the wrong way. The losses are taken at SD timesteps 300-700, where the noisy frames no longer show where the
square is and only the conditioning and the frame's position in the clip can.

The tiny model is built on disk, as real parts would be, with one change from a random init: a randomly
initialised VAE's posterior is about as wide (std 0.94) as the spread of its means (0.26), so the training
targets the trainer samples from it (`latent_dist.sample()`, as SVD does) would be mostly noise unrelated to
the video, and SD's 0.18215 scaling factor would shrink the video's part of them to a twentieth of the
diffusion noise. A trained VAE has a sharp posterior and a scaling factor that gives unit-variance latents;
the test's VAE gets both. The motion is still learned slowly (the temporal layers start as the identity and
can only move the square through the frozen random spatial layers): 3 frames, lr 1e-2 and 300 steps of 4 clips
give a clear gap, which grows further with more steps.

Measured (2-core CPU): held-out loss 0.977 -> 0.418 in the true order, 0.977 -> 0.494 reversed: a 15.4% gap,
asserted above 8%; the test takes about 1-2 minutes.
"""

import numpy as np
import torch
from diffusers import UNetSpatioTemporalConditionModel
from tiny_shards import random_square, square_shards
from tiny_train import tiny_config, tiny_parts

from svd.model.conditioning import added_time_ids, unet_sample
from svd.train.components import build_components
from svd.train.loop import train

FRAMES = 3  # the first frame (given) and two that move, one latent pixel each
TIMESTEPS = (300, 500, 700)
STEPS = 300


def held_out() -> torch.Tensor:
    """32 clips the training never saw (another seed), (N, F, 3, H, W) in [-1, 1]."""
    rng = np.random.default_rng(1234)
    clips = np.stack([random_square(rng, FRAMES) for _ in range(32)])
    return torch.from_numpy(clips).permute(0, 1, 4, 2, 3).float() / 127.5 - 1


@torch.no_grad()
def held_out_losses(components, unet, frames: torch.Tensor) -> tuple[float, float]:
    """Mean loss over the clips and TIMESTEPS with fixed noise: (true frame order, reversed frame order).

    Both orders keep the first frame's conditioning; the reversed clip gets the noise reversed too, so a model
    that treats frames one by one sees exactly the same inputs, in another order.
    """
    generator = torch.Generator().manual_seed(0)
    vae = components.vae
    x0 = vae.encode(frames.flatten(0, 1)).latent_dist.mode() * vae.config.scaling_factor
    x0 = x0.reshape(*frames.shape[:2], *x0.shape[1:])
    condition = components.conditioner(frames[:, 0], 0.02, generator=generator)
    ids = added_time_ids(8.0, 127, 0.02, batch_size=len(frames))
    p = components.parameterisation
    losses = {False: [], True: []}
    for t in TIMESTEPS:
        levels = torch.full((len(frames),), t)
        noise = torch.randn(x0.shape, generator=generator)
        for reverse in (False, True):
            clean, eps = (x0.flip(1), noise.flip(1)) if reverse else (x0, noise)
            sample, timestep = p.unet_inputs(p.add_noise(clean, eps, levels), levels)
            output = unet(
                unet_sample(sample, condition["condition_latents"]),
                timestep,
                encoder_hidden_states=condition["encoder_hidden_states"],
                added_time_ids=ids,
            ).sample
            losses[reverse].append(p.loss(output, clean, eps, levels).mean().item())
    return float(np.mean(losses[False])), float(np.mean(losses[True]))


def test_temporal_layers_learn_which_way_the_square_moves(tmp_path):
    sd, parts = tiny_parts(tmp_path / "parts")
    shards = tmp_path / "shards"
    square_shards(shards, count=64, num_frames=FRAMES, per_shard=16)
    config = tiny_config(
        str(shards / "*.tar"),
        "model.random=null",
        f"model.base={sd}",
        f"model.image_parts={parts}",
        f"model.num_frames={FRAMES}",
        "data.stride=1",
        "data.fps=null",
        "data.num_workers=1",
        "data.shuffle_buffer=32",
        f"train.max_steps={STEPS}",
        "train.batch_size=4",
        "train.lr=1e-2",
        "train.warmup_steps=10",
        "train.ema_decay=null",
        f"train.checkpoint_every={STEPS}",
        "train.dropout={image: 0.0, text: 0.0, both: 0.0}",
        "validation.every=0",
        "log.every=50",
    )
    assert config.model.freeze == "temporal+io" and config.model.resolved_parameterisation() == "backbone"
    frames = held_out()
    start = build_components(config.model, tmp_path / "start")
    start.unet.eval()
    before, before_reversed = held_out_losses(start, start.unet, frames)

    result = train(config, tmp_path / "run")
    trained = UNetSpatioTemporalConditionModel.from_pretrained(result.final / "unet").eval()
    after, after_reversed = held_out_losses(start, trained, frames)
    gap = 1 - after / after_reversed
    print(
        f"held-out loss {before:.4f} -> {after:.4f} (true order), {before_reversed:.4f} -> {after_reversed:.4f} "
        f"(reversed); temporal gap {gap:.1%}"
    )
    # At the start the temporal layers are the identity: the model is the image model on each frame.
    assert abs(before - before_reversed) < 1e-4 * before
    # Training fits the clips...
    assert after < 0.6 * before
    # ...and the temporal layers learned the motion: the same frames going the wrong way score clearly worse.
    assert gap > 0.08
