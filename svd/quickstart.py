"""`svd quickstart DIR`: the whole path, image to video, on a fresh machine in a few minutes of CPU.

1. a sample video (`svd sample-video`);
2. `svd curate` of it with configs/curation/tiny.yaml: every stage, with tiny random models;
3. `svd train` of configs/train/tiny.yaml on its shards, for a few steps;
4. `svd generate` with the trained model, from the first frame of a curated clip.
Each step prints what it wrote. The models are random and tiny: the video shows that the machinery works end to
end, not what a trained SVD does.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import webdataset as wds

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TRAIN_STEPS = 10


class QuickstartError(ValueError):
    """DIR or the repository's configs cannot be used: one line."""


@dataclass
class QuickstartOutputs:
    sample: Path
    curated: Path
    run: Path
    frame: Path
    video: Path


def quickstart(folder: Path, echo: Callable[[str], None] = print) -> QuickstartOutputs:
    from transformers.utils import logging as transformers_logging

    from curation.config import CurationConfig
    from curation.config_io import load_config
    from curation.synthetic import make_video, sample_timeline
    from pipelines.curate import run_curation
    from svd.generate.options import SampleSettings
    from svd.generate.run import generate
    from svd.train.config import TrainConfig
    from svd.train.loop import train

    transformers_logging.disable_progress_bar()  # its "Writing model shards" bar at the export says nothing here
    if folder.exists() and any(folder.iterdir()):
        raise QuickstartError(f"{folder}: exists and is not empty; give a new folder")
    for config in (CONFIGS / "curation" / "tiny.yaml", CONFIGS / "train" / "tiny.yaml"):
        if not config.is_file():
            raise QuickstartError(f"{config}: missing; svd quickstart runs from a clone of the repository")
    folder.mkdir(parents=True, exist_ok=True)

    # 1. A sample video.
    sample = make_video(folder / "sample.mp4", sample_timeline(), seed=0)
    echo(f"1/4 sample video: {sample.path} ({sample.num_frames} frames, {len(sample.shots)} shots)")
    # 2. Curate it with every stage on tiny models.
    curated = folder / "curated"
    result = run_curation([sample.path], curated, load_config(CurationConfig, CONFIGS / "curation" / "tiny.yaml"))
    shards = sorted((curated / "shards").glob("*.tar"))
    echo(
        f"2/4 curated: {curated / 'shards'} ({result.clips} clips in {len(shards)} shards; report {curated / 'report.html'})"
    )
    if not shards:
        raise QuickstartError(f"{curated}: the filter kept no clip, so there is nothing to train on")
    # 3. Train the tiny image-to-video model on the shards.
    overrides = [f"data.shards={curated / 'shards'}/*.tar", f"train.max_steps={TRAIN_STEPS}", "data.num_workers=0"]
    overrides += [f"train.checkpoint_every={TRAIN_STEPS}", f"validation.every={TRAIN_STEPS}", "log.tensorboard=false"]
    trained = train(load_config(TrainConfig, CONFIGS / "train" / "tiny.yaml", overrides), folder / "run")
    echo(f"3/4 trained: {trained.final} ({trained.step} steps; validation video in {trained.run_dir / 'validation'})")
    # 4. Generate a video from the first frame of a curated clip.
    frame = folder / "frame.png"
    first_frame(shards[0]).save(frame)
    video = folder / "video.mp4"
    settings = SampleSettings(height=32, width=32, steps=4, fps=8)
    generate([str(frame)], output=str(video), model=str(trained.final), settings=settings, seed=0)
    echo(f"4/4 generated: {video} from {frame}")
    return QuickstartOutputs(sample.path, curated, trained.run_dir, frame, video)


def first_frame(shard: Path):
    """The first frame (PIL image) of the first clip of a shard, read back with webdataset."""
    sample = next(iter(wds.WebDataset(str(shard), shardshuffle=False)))
    with av.open(io.BytesIO(sample["mp4"])) as container:
        return next(container.decode(video=0)).to_image()
