"""`caption_coca`: open_clip's CoCa captions the middle frame of each clip (as the SVD paper does).

The image is encoded once per frame; the text decoder then runs on the growing caption, under the decoding
of `caption.coca.generation` (see curation/caption_generation.py for why open_clip's `generate` is not
called). Start and end tokens are cut before the tokens are turned into text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import open_clip
import torch
from PIL import Image

from curation.captions.generation import check_frame, decode, loading
from curation.captions.text import Caption
from curation.config import CocaConfig, GenerationConfig
from curation.devices import OPEN_CLIP_PRECISION, resolve_device, resolve_dtype
from curation.errors import ModelLoadError

STAGE = "caption.coca"


@dataclass
class CocaCaptioner:
    """Captions single RGB frames with an open_clip CoCa model; load once per worker with `load`."""

    model: open_clip.CoCa
    preprocess: Callable
    tokenizer: Callable
    generation: GenerationConfig
    batch_size: int
    device: torch.device
    dtype: torch.dtype

    def __post_init__(self):
        # The text tower has `context_length` positions: the start token plus the generated ones.
        if self.generation.max_new_tokens + 1 > self.model.context_length:
            raise ValueError(
                f"{STAGE}.generation.max_new_tokens={self.generation.max_new_tokens} does not fit CoCa's context "
                f"of {self.model.context_length} tokens (start token included)"
            )
        self.model.eval()

    @classmethod
    def load(cls, config: CocaConfig) -> CocaCaptioner:
        """Load the configured model, or stop with ModelLoadError before any clip is processed."""
        device = resolve_device(config.device)
        dtype = resolve_dtype(device, config.precision)
        local = config.model.startswith("local-dir:")
        name = config.model if local else f"{config.model} ({config.pretrained})"
        with loading(STAGE, name, f"{STAGE}.model=local-dir:FOLDER or --set {STAGE}.pretrained"):
            model, _, preprocess = open_clip.create_model_and_transforms(
                config.model,
                pretrained=None if local else config.pretrained,
                precision=OPEN_CLIP_PRECISION[dtype],
                device=device,
            )
            tokenizer = open_clip.get_tokenizer(config.model)
        if not isinstance(model, open_clip.CoCa):
            raise ModelLoadError(STAGE, name, f"it is a {type(model).__name__}, not a CoCa model", f"{STAGE}.model")
        if not hasattr(tokenizer, "sot_token_id") or not hasattr(tokenizer, "eot_token_id"):
            reason = f"its {type(tokenizer).__name__} has no start/end token ids (open_clip's CLIP tokenizer does)"
            raise ModelLoadError(STAGE, name, reason, f"{STAGE}.model")
        return cls(model, preprocess, tokenizer, config.generation, config.batch_size, device, dtype)

    def __call__(self, frames: Sequence[np.ndarray]) -> list[Caption]:
        """One caption per frame (H x W x 3 RGB uint8), in order."""
        captions: list[Caption] = []
        for start in range(0, len(frames), self.batch_size):
            captions += self._caption_batch(frames[start : start + self.batch_size])
        return captions

    @torch.no_grad()
    def _caption_batch(self, frames: Sequence[np.ndarray]) -> list[Caption]:
        images = torch.stack([self.preprocess(Image.fromarray(check_frame(frame))) for frame in frames])
        encoded = self.model(images.to(self.device, self.dtype))
        latents, embeddings = encoded["image_features"], encoded["image_embs"]

        def step(tokens: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
            out = self.model(
                None, tokens, image_latent=latents[items], image_embs=embeddings[items], output_labels=False
            )
            return out["logits"][:, -1]

        sequences = decode(
            step,
            len(frames),
            self.tokenizer.sot_token_id,
            self.tokenizer.eot_token_id,
            self.generation,
            self.device,
        )
        return [Caption.from_generated(self.tokenizer.decode(tokens)) for tokens in sequences]
