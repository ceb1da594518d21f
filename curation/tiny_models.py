"""Tiny models for a fresh machine: `model: tiny` in a curation config.

`clip.model: tiny`, `caption.coca.model: tiny`, `caption.vblip.model: tiny` and `caption.llm.model: tiny` stand
for seeded, randomly initialised models of the real architectures (an open_clip CLIP with an aesthetic MLP of its
width, an open_clip CoCa, a VideoBLIP, a Qwen2-style chat model), a few layers 32 wide, built in code by
`curation.tiny_builders` with no download. Each is built once per machine into a cache folder (`SVD_TINY_MODELS`,
default ~/.cache/svd-toolkit/tiny-models) and read by the stage's real loader, so the stage runs exactly as with
downloaded weights; every node of a cluster builds the same weights from the same seed. `resolve_tiny` turns the
`tiny` values of a config into those folders: the job calls it on the driver (for its preflight) and in each
worker that loads a model. With `clip.model: tiny`, the default `clip.aesthetic.weights` (LAION's, for ViT-L-14)
becomes the tiny MLP too (`clip.aesthetic.weights: tiny` says so explicitly).

**They give random captions and scores.** They exercise the machinery (every stage, the filter, the shards, the
report) on a fresh machine, not the quality of anything. The tests use these same models.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from curation.config import AESTHETIC_URL, CurationConfig

TINY = "tiny"  # the config value that names these models
VERSION = 1  # bump when a builder changes: caches of other versions are not read
CACHE_ENV = "SVD_TINY_MODELS"
KINDS = ("clip", "coca", "vblip", "llm")


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "svd-toolkit" / "tiny-models")


def uses_tiny(config: CurationConfig) -> bool:
    """Whether a stage that runs names a tiny model."""
    return bool(_tiny_stages(config))


def resolve_tiny(config: CurationConfig) -> CurationConfig:
    """`config` with the `tiny` model of every stage that runs replaced by its folder on this machine (built here
    first if needed)."""
    stages = _tiny_stages(config)
    if not stages:
        return config
    data = config.model_dump()
    if "clip" in stages:
        folder = tiny_folder("clip")
        if config.clip.model == TINY:
            data["clip"]["model"] = str(folder)
        if config.clip.aesthetic.weights in (TINY, AESTHETIC_URL):
            data["clip"]["aesthetic"]["weights"] = str(folder / "aesthetic.safetensors")
    if "coca" in stages:
        data["caption"]["coca"]["model"] = f"local-dir:{tiny_folder('coca')}"
    for kind in ("vblip", "llm"):
        if kind in stages:
            data["caption"][kind]["model"] = str(tiny_folder(kind))
    return CurationConfig.model_validate(data)


def tiny_folder(kind: str) -> Path:
    """The folder of tiny model `kind` (clip, coca, vblip, llm), built on first use. Several processes may ask at
    once: each builds into a staging folder of its own, and the first to rename it wins."""
    from curation import tiny_builders

    folder = cache_root() / f"{kind}-v{VERSION}"
    if (folder / "complete").is_file():
        return folder
    builder = {
        "clip": tiny_builders.save_tiny_clip,
        "coca": tiny_builders.save_tiny_coca,
        "vblip": tiny_builders.save_tiny_vblip,
        "llm": tiny_builders.save_tiny_llm,
    }[kind]
    staging = folder.with_name(f".{folder.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        builder(staging)
        (staging / "complete").write_text("", encoding="utf-8")
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            staging.rename(folder)
        except OSError:  # another process renamed its copy first
            if not (folder / "complete").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _tiny_stages(config: CurationConfig) -> set[str]:
    caption = config.caption
    named = {
        "clip": config.clip.enabled
        and (config.clip.model == TINY or (config.clip.aesthetic.enabled and config.clip.aesthetic.weights == TINY)),
        "coca": caption.enabled and caption.coca.enabled and caption.coca.model == TINY,
        "vblip": caption.enabled and caption.vblip.enabled and caption.vblip.model == TINY,
        # A server names its own models: `tiny` means the local one only.
        "llm": caption.enabled and caption.llm.enabled and caption.llm.backend == "local" and caption.llm.model == TINY,
    }
    return {kind for kind, tiny in named.items() if tiny}
