"""The tiny training config (`configs/train/tiny.yaml`) the `svd train` tests run, pointed at test shards."""

from __future__ import annotations

from pathlib import Path

from curation.config_io import load_config
from svd.train.config import TrainConfig

TINY = Path(__file__).parents[1] / "configs" / "train" / "tiny.yaml"


def tiny_config(shards: str, *overrides: str) -> TrainConfig:
    """tiny.yaml on `shards` at 16x16, logging every step, then `overrides` (`--set` style)."""
    return load_config(
        TrainConfig, TINY, [f"data.shards={shards}", "data.height=16", "data.width=16", "log.every=1", *overrides]
    )
