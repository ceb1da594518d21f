"""Offline test environment, and the tiny models several test modules share.

The shared models are session fixtures: each is built once per run, on first use, and only read by the tests
(those that need a changed model copy it first). The curation stages' tiny models are the product's own
(`curation.tiny_builders`, what `model: tiny` builds); the video models' are in `tiny_models`. Both are imported
on first use so that a run that needs none of them does not import open_clip, transformers or diffusers for them.
`model: tiny` builds into a cache folder: here a fresh one per run (SVD_TINY_MODELS), never the user's.
"""

import os
import tempfile

import pytest

# No model hub is reachable in tests: every model is built from a config inside the test.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ["SVD_TINY_MODELS"] = tempfile.mkdtemp(prefix="svd-tiny-models-")  # inherited by Ray workers


@pytest.fixture(scope="session")
def clip_model(tmp_path_factory) -> dict:
    """A tiny open_clip CLIP folder with aesthetic weights: {"folder", "aesthetic" (.pth), "state"}."""
    from curation.tiny_builders import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="session")
def coca_model(tmp_path_factory) -> str:
    """A tiny CoCa: the `caption.coca.model` value (`local-dir:FOLDER`)."""
    from curation.tiny_builders import save_tiny_coca

    return save_tiny_coca(tmp_path_factory.mktemp("coca"))


@pytest.fixture(scope="session")
def vblip_model(tmp_path_factory) -> str:
    """A tiny VideoBLIP folder: the `caption.vblip.model` value."""
    from curation.tiny_builders import save_tiny_vblip

    return save_tiny_vblip(tmp_path_factory.mktemp("vblip"))


@pytest.fixture(scope="session")
def llm_model(tmp_path_factory) -> str:
    """A tiny Qwen2-style chat model folder: the `caption.llm.model` value."""
    from curation.tiny_builders import save_tiny_llm

    return save_tiny_llm(tmp_path_factory.mktemp("llm"))


@pytest.fixture(scope="session")
def sd():
    """The tiny SD 2.x UNet (`tiny_models.sd_unet("sd2")`); tests inflate it (a copy), never change it."""
    from tiny_models import sd_unet

    return sd_unet("sd2")


@pytest.fixture(scope="module")
def square_shards_glob(tmp_path_factory) -> str:
    """Four clips of moving squares in one shard (`tiny_shards.square_shards`): a `data.shards` glob."""
    from tiny_shards import square_shards

    folder = tmp_path_factory.mktemp("shards")
    square_shards(folder, count=4, per_shard=4)
    return str(folder / "*.tar")
