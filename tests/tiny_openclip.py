"""A tiny randomly initialised open_clip CLIP and LAION aesthetic MLP, saved as the real loaders read them."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch
from safetensors.torch import save_file

from curation.scores.openclip import AestheticPredictor

WIDTH = 32  # the tiny model's embedding width
# A ViT and text transformer of 2 layers, 32 wide; the real BPE vocabulary, so open_clip's tokenizer works.
TINY_CLIP = {
    "model_cfg": {
        "embed_dim": WIDTH,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    },
    "preprocess_cfg": {
        "mean": [0.48145466, 0.4578275, 0.40821073],
        "std": [0.26862954, 0.26130258, 0.27577711],
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    },
}


def save_tiny_clip(folder: Path) -> dict:
    """A tiny CLIP folder (open_clip config + safetensors) and aesthetic weights as .pth and .safetensors:
    {"folder", "aesthetic" (the .pth), "state" (the aesthetic MLP's tensors)}."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(TINY_CLIP))
    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_CLIP["model_cfg"])
    save_file(model.state_dict(), folder / "open_clip_model.safetensors")
    torch.manual_seed(1)
    state = AestheticPredictor(WIDTH).state_dict()
    torch.save(state, folder / "aesthetic.pth")
    save_file(state, folder / "aesthetic.safetensors")
    return {"folder": folder, "aesthetic": folder / "aesthetic.pth", "state": state}
