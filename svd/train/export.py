"""The final model in diffusers layout: RUN_DIR/final/.

Image-to-video: a complete `StableVideoDiffusionPipeline` folder (model_index.json, unet/, vae/,
image_encoder/, feature_extractor/, scheduler/) that `StableVideoDiffusionPipeline.from_pretrained` and
`svd generate --model` load.

Text-to-video (an inflated SD trained on captions): diffusers has no pipeline that drives an SVD-layout UNet
with text, so the folder holds the parts without a model_index.json: unet/ (UNetSpatioTemporalConditionModel),
and the frozen SD vae/, text_encoder/, tokenizer/ plus scheduler/ (an EulerDiscreteScheduler with the SD
backbone's timesteps and prediction type). Each loads with its class's `from_pretrained(final, subfolder=...)`;
`svd generate --prompt` samples it (svd/generate/text_generator.py).

Both carry `svd_train.json`: the conditioning, parameterisation, resolved model config and where the frozen
parts came from.

With a LoRA adapter (`model.lora.rank` > 0) the export is the adapter, `final/lora/` (a peft folder, see
`svd.model.lora`), to apply to the base with `svd generate --model BASE --lora RUN_DIR/final/lora`; with
`export.merge_lora` the folder also holds the model above with the adapter folded into its UNet.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from diffusers import StableVideoDiffusionPipeline

from svd.model.lora import merge_lora, save_adapter
from svd.train.components import Components


def export(
    components: Components, unet, output: Path, info: dict[str, Any], *, lora: bool = False, merge: bool = False
) -> Path:
    """Write `unet` (the trained weights, EMA where kept) with the frozen parts to `output`, complete or not at all;
    with `lora`, its adapter to `output/lora/`, and the model (adapter merged) only when `merge`."""
    staging = output.with_name(output.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if lora:
        save_adapter(unet, staging / "lora")
        if merge:
            merge_lora(unet)
    if not lora or merge:
        _write_model(components, unet, staging)
    (staging / "svd_train.json").write_text(
        json.dumps({**info, "frozen_parts_from": components.source}, indent=2, default=str)
    )
    shutil.rmtree(output, ignore_errors=True)
    staging.rename(output)
    return output


def _write_model(components: Components, unet, staging: Path) -> None:
    parts = components.parts
    if "image_encoder" in parts:
        pipeline = StableVideoDiffusionPipeline(
            vae=parts["vae"],
            image_encoder=parts["image_encoder"],
            unet=unet,
            scheduler=components.scheduler,
            feature_extractor=parts["feature_extractor"],
        )
        pipeline.save_pretrained(str(staging), safe_serialization=True)
    else:
        unet.save_pretrained(str(staging / "unet"), safe_serialization=True)
        parts["vae"].save_pretrained(str(staging / "vae"), safe_serialization=True)
        parts["text_encoder"].save_pretrained(str(staging / "text_encoder"), safe_serialization=True)
        parts["tokenizer"].save_pretrained(str(staging / "tokenizer"))
        components.scheduler.save_pretrained(str(staging / "scheduler"))
