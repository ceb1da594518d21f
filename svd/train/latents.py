"""VAE latents of training windows, and the optional on-disk cache of them (`data.latent_cache`).

The VAE encode is split in two: `posterior_moments` (the encoder's output, mean and log-variance, a pure
function of the pixels) and `sample_latents` (a draw from that posterior with the training generator, times
the scaling factor, as SVD trains). The cache stores moments, not samples: a run with the cache draws the
same numbers from the same generator and trains on bit-identical targets, and a cached window still gives a
new posterior sample every time it is seen.

Not cached: the conditioning frame's latent. SVD adds its noise augmentation to the frame's *pixels* and then
encodes them, with a new strength and noise every step (as the pipeline does at inference), so that latent is
encoded every step: one frame per video instead of `num_frames`. Its pixels, and the CLIP embedding's, still
come from decoding the clip.

An entry's key is a hash of everything its latents depend on: the clip's bytes (sha256: a re-curated clip with
the same key misses, the same clip in another shard or folder hits), the frame indices of the window, the
training resolution (resize and centre crop are deterministic), the weights of the VAE's encoder (their dtype
is the precision of the encode: it runs outside autocast), and `CACHE_VERSION`, to be raised when decoding or resizing changes. A window hits
only when it is drawn again: `data.windows_per_clip` limits each clip to that many windows so that they recur.

Entries are safetensors files, `CACHE/ab/abcd...ef.safetensors`, written under a temporary name in the same
folder and renamed, so workers and ranks reading while another rank writes, two ranks writing the same entry,
and a killed run never see half a file. An entry that cannot be read (truncated, not safetensors, another
window's) is a miss: it is encoded again and replaced, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from safetensors import SafetensorError
from safetensors.torch import safe_open, save_file

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: moments encoded outside autocast, in the VAE's own dtype


@torch.no_grad()
def posterior_moments(vae, frames: torch.Tensor) -> torch.Tensor:
    """(B, F, 3, H, W) pixels in [-1, 1] -> (B, F, 2C, h, w): the VAE posterior's mean and log-variance.

    Encoded in the VAE's own dtype even inside an autocast region, as sgm (first stage without autocast) and
    diffusers' pipeline (VAE upcast to encode) do: bf16 moments would put rounding noise into every target.
    """
    parameter = next(vae.parameters())
    flat = frames.flatten(0, 1).to(device=parameter.device, dtype=parameter.dtype)
    with torch.autocast(parameter.device.type, enabled=False):
        moments = vae.encode(flat).latent_dist.parameters
    return moments.reshape(*frames.shape[:2], *moments.shape[1:])


@torch.no_grad()
def sample_latents(vae, moments: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, F, 2C, h, w) moments -> (B, F, C, h, w) posterior samples x the VAE's scaling factor.

    The same operations and random draws as `vae.encode(frames).latent_dist.sample(generator)` on the frames.
    """
    latents = DiagonalGaussianDistribution(moments.flatten(0, 1)).sample(generator) * vae.config.scaling_factor
    return latents.reshape(*moments.shape[:2], *latents.shape[1:])


def encoder_identity(vae) -> str:
    """sha256 of what the moments depend on besides the pixels: the encoder's weights, dtypes included."""
    digest = hashlib.sha256(type(vae).__name__.encode())
    for name, tensor in sorted(vae.state_dict().items()):
        if name.startswith(("encoder.", "quant_conv.")):
            digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class LatentCache:
    """A folder of posterior moments, one safetensors file per (clip, window, resolution, encoder).

    Picklable (a path and a string), so DataLoader workers look entries up while the main process writes them.
    """

    def __init__(self, folder: str | Path, encoder: str) -> None:
        self.folder = Path(folder)
        self.encoder = encoder

    def key(self, clip: bytes, frames: Sequence[int], height: int, width: int) -> str:
        spec = {
            "version": CACHE_VERSION,
            "clip": hashlib.sha256(clip).hexdigest(),
            "frames": [int(index) for index in frames],
            "height": height,
            "width": width,
            "encoder": self.encoder,
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.safetensors"

    def load(self, key: str, num_frames: int) -> tuple[torch.Tensor | None, str]:
        """(moments, "hit"), or (None, "miss") when absent, or (None, "unreadable") with a warning."""
        path = self.path(key)
        if not path.is_file():
            return None, "miss"
        try:
            with safe_open(str(path), "pt") as entry:
                stored = (entry.metadata() or {}).get("key")
                moments = entry.get_tensor("moments")
        except (SafetensorError, OSError) as error:
            log.warning("latent cache: %s unreadable (%s); encoding it again", path, error)
            return None, "unreadable"
        if stored != key or moments.dim() != 4 or moments.shape[0] != num_frames:
            log.warning(
                "latent cache: %s holds another window (%s, %s); encoding it again", path, stored, moments.shape
            )
            return None, "unreadable"
        return moments, "hit"

    def save(self, key: str, moments: torch.Tensor, clip_key: str) -> None:
        """Write one entry atomically: a temporary file in the same folder, renamed over the entry."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
        try:
            save_file({"moments": moments.detach().cpu().contiguous()}, str(temporary), {"key": key, "clip": clip_key})
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)


@torch.no_grad()
def cached_moments(cache: LatentCache, batch: dict, vae, frames: torch.Tensor) -> torch.Tensor:
    """The batch's moments: those its workers found in the cache, the others encoded now and written to it."""
    moments = list(batch["moments"])
    missing = [index for index, found in enumerate(moments) if found is None]
    if missing:
        encoded = posterior_moments(vae, frames[missing])
        for index, entry in zip(missing, encoded, strict=True):
            cache.save(batch["cache_keys"][index], entry, batch["keys"][index])
            moments[index] = entry
    return torch.stack([entry.to(frames.device) for entry in moments])
