"""Inputs, configs and a shard reader for the `svd curate` job tests: generated source videos, the tiny
curation config, a config with every model stage off, and every sample of a run's shards."""

from __future__ import annotations

from pathlib import Path

import webdataset as wds

from curation.config import CurationConfig
from curation.synthetic import Shot, Transition, make_video

TINY = Path(__file__).parent.parent / "configs" / "curation" / "tiny.yaml"
# tiny.yaml without its model stages (CLIP, captions): for the tests about the job's machinery, which the tiny
# models would only slow down; tests/test_curate_job.py runs tiny.yaml whole.
CPU_STAGES = ["clip.enabled=false", "caption.enabled=false"]


def config(**split) -> CurationConfig:
    """The default config with motion, OCR, CLIP, captions and perceptual dedup off, the paper's PySceneDetect-only cascade
    (these tests are about the job; the default cascade's TransNetV2 has its own, and on a CPU it would
    double their time), `split` overrides, and small shards."""
    base = CurationConfig().model_dump()
    base["split"]["detectors"] = "paper"
    for stage in ("motion", "ocr", "clip", "caption"):
        base[stage]["enabled"] = False
    base["dedup"]["perceptual"]["enabled"] = False  # it would decode every clip; tests/test_dedup.py turns it on
    base["split"].update(split)
    base["output"]["shard_max_samples"] = 3  # several shards from a few clips: rollover is exercised
    return CurationConfig.model_validate(base)


def videos(folder: Path, count: int) -> list[Path]:
    """`count` 9-second videos `video N.mp4` of three shots (moving, static, pan; a cut and a dissolve)."""
    paths = []
    for index in range(count):
        timeline = [
            Shot("moving", 3.0, speed=1.0 + index),
            Transition("cut"),
            Shot("static", 3.0),
            Transition("dissolve", 0.5),
            Shot("pan", 3.0, speed=2.0),
        ]
        paths.append(make_video(folder / f"video {index}.mp4", timeline, seed=index, keyframe_seconds=0.5).path)
    return paths


def read_shards(output: Path) -> dict[str, dict]:
    """Every sample of every shard, read with the plain webdataset library."""
    shards = sorted(str(path) for path in (output / "shards").glob("*.tar"))
    samples = {}
    for sample in wds.WebDataset(shards, shardshuffle=False, empty_check=False):
        assert sample["__key__"] not in samples, "a clip is in the shards twice"
        samples[sample["__key__"]] = sample
    return samples
