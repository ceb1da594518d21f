"""The VAE latent cache (`data.latent_cache`): same targets as without it, the VAE skipped on hits, bad entries
recomputed; and the fixed windows (`data.windows_per_clip`) that make windows come back."""

import copy
import shutil

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
from safetensors.torch import load_file
from tiny_shards import encode, record, square_frames, write_shards
from tiny_train import tiny_config

from svd.train.data import window_start
from svd.train.latents import LatentCache, encoder_identity
from svd.train.loop import train

BATCH, FRAMES, STEPS = 2, 4, 6  # 12 examples from 8 clips: the second epoch starts within the run


@pytest.fixture
def spies(monkeypatch):
    """Record the frames every VAE encode gets and the `sample` every UNet forward gets, calling the real ones."""
    seen = {"encoded": [], "unet": []}
    encode, forward = AutoencoderKLTemporalDecoder.encode, UNetSpatioTemporalConditionModel.forward

    def encode_spy(self, x, *args, **kwargs):
        seen["encoded"].append(x.shape[0])
        return encode(self, x, *args, **kwargs)

    def forward_spy(self, sample, *args, **kwargs):
        seen["unet"].append(sample.detach().clone())
        return forward(self, sample, *args, **kwargs)

    monkeypatch.setattr(AutoencoderKLTemporalDecoder, "encode", encode_spy)
    monkeypatch.setattr(UNetSpatioTemporalConditionModel, "forward", forward_spy)
    return seen


def run(shards, run_dir, spies, *overrides):
    spies["encoded"].clear()
    spies["unet"].clear()
    config = tiny_config(
        shards,
        f"train.max_steps={STEPS}",
        "train.checkpoint_every=100",
        "validation.every=0",
        "data.windows_per_clip=1",
        "data.num_workers=1",  # the cache is read in the worker
        *overrides,
    )
    result = train(config, run_dir)
    return result, list(spies["encoded"]), list(spies["unet"])


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Eight clips, all different (equal clips would share cache entries), in two shards."""
    folder = tmp_path_factory.mktemp("shards")
    clips = []
    for index in range(8):
        direction, y0 = (1, -1)[index % 2], 2 * (index // 2)
        frames = square_frames(1 if direction > 0 else 9, y0, direction, 8)
        clips.append((f"clip-{index}", encode(frames, 8.0), record(f"clip-{index}", frames, 8.0)))
    write_shards(folder, clips, per_shard=4)
    return str(folder / "*.tar")


def test_cached_latents_equal_fresh_ones_and_hits_skip_the_vae(shards, tmp_path, spies):
    plain, plain_encoded, plain_inputs = run(shards, tmp_path / "plain", spies)
    cache = f"data.latent_cache={tmp_path / 'cache'}"
    # No worker prefetching ahead in the cold run: a window seen again is always looked up after it was written.
    cold, cold_encoded, cold_inputs = run(shards, tmp_path / "cold", spies, cache, "data.num_workers=0")
    warm, warm_encoded, warm_inputs = run(shards, tmp_path / "warm", spies, cache)

    # The UNet sees bit-identical inputs (noisy targets and conditioning latents) and the losses are equal.
    for inputs in (cold_inputs, warm_inputs):
        assert len(inputs) == STEPS and all(torch.equal(a, b) for a, b in zip(plain_inputs, inputs, strict=True))
    assert cold.losses == plain.losses and warm.losses == plain.losses

    # Without the cache every step encodes its videos and conditioning frames; the first epoch of the cold run
    # fills the cache, its second epoch hits it; the warm run only encodes the noise-augmented conditioning frames.
    assert plain_encoded == [BATCH * FRAMES, BATCH] * STEPS
    assert cold.counts["latent_cache_miss"] == 8 and cold.counts["latent_cache_hit"] == STEPS * BATCH - 8
    assert sum(cold_encoded) == 8 * FRAMES + STEPS * BATCH
    assert warm.counts["latent_cache_hit"] == STEPS * BATCH and "latent_cache_miss" not in warm.counts
    assert warm_encoded == [BATCH] * STEPS
    assert len(list((tmp_path / "cache").glob("*/*.safetensors"))) == 8
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_truncated_or_empty_entries_are_encoded_again_and_replaced(shards, tmp_path, spies):
    cache = f"data.latent_cache={tmp_path / 'cache'}"
    plain, _, plain_inputs = run(shards, tmp_path / "plain", spies, "train.max_steps=4")
    run(shards, tmp_path / "fill", spies, cache, "train.max_steps=4")
    entries = sorted((tmp_path / "cache").glob("*/*.safetensors"))
    assert len(entries) == 8
    for index, entry in enumerate(entries):
        data = entry.read_bytes()
        entry.write_bytes(b"" if index == 0 else data[: len(data) // 2])

    again, encoded, inputs = run(shards, tmp_path / "again", spies, cache, "train.max_steps=4")
    assert again.counts["latent_cache_unreadable"] == 8 and sum(encoded) == 8 * FRAMES + 4 * BATCH
    assert again.losses == plain.losses and all(torch.equal(a, b) for a, b in zip(plain_inputs, inputs, strict=True))
    for entry in entries:
        assert load_file(entry)["moments"].shape[0] == FRAMES  # rewritten whole


def test_keys_change_with_the_clip_window_resolution_and_encoder(tmp_path):
    torch.manual_seed(0)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=[32, 64], down_block_types=["DownEncoderBlock2D"] * 2, latent_channels=4
    )
    identity = encoder_identity(vae)
    in_bf16 = encoder_identity(copy.deepcopy(vae).to(torch.bfloat16))
    assert identity == encoder_identity(vae) and identity != in_bf16
    cache = LatentCache(tmp_path, identity)
    key = cache.key(b"clip", [0, 1, 2], 16, 16)
    assert key == LatentCache(tmp_path, identity).key(b"clip", [0, 1, 2], 16, 16)
    others = [
        cache.key(b"other clip", [0, 1, 2], 16, 16),
        cache.key(b"clip", [1, 2, 3], 16, 16),
        cache.key(b"clip", [0, 1, 2], 16, 32),
        LatentCache(tmp_path, in_bf16).key(b"clip", [0, 1, 2], 16, 16),
    ]
    with torch.no_grad():
        vae.decoder.conv_out.weight.add_(1.0)  # the decoder does not change the latents...
    assert encoder_identity(vae) == identity
    with torch.no_grad():
        vae.encoder.conv_in.weight.add_(1.0)  # ...the encoder does
    others.append(LatentCache(tmp_path, encoder_identity(vae)).key(b"clip", [0, 1, 2], 16, 16))
    assert len({key, *others}) == 6

    moments = torch.randn(3, 8, 4, 4)
    cache.save(key, moments, "clip-key")
    found, status = cache.load(key, 3)
    assert status == "hit" and torch.equal(found, moments)
    assert cache.load(others[0], 3) == (None, "miss")
    cache.path(others[0]).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(cache.path(key), cache.path(others[0]))
    assert cache.load(others[0], 3) == (None, "unreadable")  # another window's entry under this name


def test_fixed_windows_come_back_and_cover_the_clip():
    rng = np.random.default_rng(0)
    assert {window_start(10, 1, rng) for _ in range(50)} == {5}
    assert {window_start(10, 2, rng) for _ in range(50)} == {2, 8}  # round(2.5), round(7.5)
    assert {window_start(10, 11, rng) for _ in range(500)} == set(range(11))
    assert {window_start(10, None, rng) for _ in range(500)} == set(range(11))


def test_bf16_training_encodes_targets_in_the_vaes_own_dtype(shards, tmp_path, spies):
    """Fix 3 of issue 18: under bf16 autocast the VAE still encodes in its own dtype (fp32), as sgm and diffusers'
    pipeline do: the cached moments are float32."""
    run(shards, tmp_path / "bf16", spies, f"data.latent_cache={tmp_path / 'cache'}", "train.precision=bf16")
    entries = sorted((tmp_path / "cache").glob("*/*.safetensors"))
    assert entries and all(load_file(entry)["moments"].dtype == torch.float32 for entry in entries)
