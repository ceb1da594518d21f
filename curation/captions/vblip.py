"""`caption_vblip`: VideoBLIP captions the whole clip from frames sampled uniformly over it.

VideoBLIP (Yu et al., github.com/yukw777/VideoBLIP, checkpoints kpyu/video-blip-*) is BLIP-2 with one change:
the ViT encodes every frame on its own, the patch tokens of all frames are concatenated along the sequence
axis (time x patches), and the Q-Former cross-attends to that whole sequence, so its query tokens summarise
the clip rather than one image. The rest (language projection, OPT) is BLIP-2's. The model here is built on
transformers' `Blip2ForConditionalGeneration`, with the same modules and weight names, so the published
checkpoints load as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import AutoImageProcessor, AutoTokenizer, Blip2ForConditionalGeneration

from curation.captions.generation import check_frame, hf_generate_kwargs, loading, seeded
from curation.captions.text import Caption
from curation.config import GenerationConfig, VBlipConfig
from curation.devices import resolve_device, resolve_dtype

STAGE = "caption.vblip"


class VideoBlipForConditionalGeneration(Blip2ForConditionalGeneration):
    """BLIP-2 whose Q-Former reads all frames of a clip; `pixel_values` are (batch, time, 3, H, W)."""

    def frame_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """What the Q-Former cross-attends to: each frame through the ViT, patch tokens of all frames
        concatenated along the sequence axis. (batch, time, 3, H, W) -> (batch, time * patches, width)."""
        if pixel_values.ndim != 5:
            raise ValueError(f"expected pixel_values of shape (batch, time, 3, H, W), got {tuple(pixel_values.shape)}")
        batch, time = pixel_values.shape[:2]
        vision_dtype = self.vision_model.embeddings.patch_embedding.weight.dtype
        hidden = self.vision_model(pixel_values=pixel_values.flatten(0, 1).to(vision_dtype)).last_hidden_state
        return hidden.reshape(batch, time * hidden.shape[1], hidden.shape[2])

    def video_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The clip as `num_query_tokens` embeddings in the language model's input space."""
        tokens = self.frame_tokens(pixel_values)
        # transformers keeps the Q-Former and the queries in fp32 when loading in half precision.
        tokens = tokens.to(self.query_tokens.dtype)
        queries = self.query_tokens.expand(tokens.shape[0], -1, -1)
        mask = torch.ones(tokens.shape[:2], dtype=torch.long, device=tokens.device)
        output = self.qformer(query_embeds=queries, encoder_hidden_states=tokens, encoder_attention_mask=mask)
        return self.language_projection(output.last_hidden_state.to(self.language_projection.weight.dtype))

    @torch.no_grad()
    def generate(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **generate_kwargs,
    ) -> torch.Tensor:
        """The generated token ids (prompt excluded) after the video embeddings and the prompt `input_ids`."""
        video = self.video_features(pixel_values)
        prompt = self.get_input_embeddings()(input_ids)
        inputs_embeds = torch.cat([video.to(prompt.dtype), prompt], dim=1)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        video_mask = torch.ones(video.shape[:2], dtype=attention_mask.dtype, device=attention_mask.device)
        attention_mask = torch.cat([video_mask, attention_mask], dim=1)
        return self.language_model.generate(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, **generate_kwargs
        )


@dataclass
class VBlipCaptioner:
    """Captions clips, each given as `num_frames` RGB frames; load once per worker with `load`."""

    model: VideoBlipForConditionalGeneration
    image_processor: Callable
    tokenizer: Callable
    num_frames: int
    prompt: str
    generation: GenerationConfig
    batch_size: int
    device: torch.device

    def __post_init__(self):
        self.model.eval()

    @classmethod
    def load(cls, config: VBlipConfig) -> VBlipCaptioner:
        """Load the configured model, or stop with ModelLoadError before any clip is processed."""
        device = resolve_device(config.device)
        dtype = resolve_dtype(device, config.precision)
        with loading(STAGE, config.model, f"{STAGE}.model"):
            model = VideoBlipForConditionalGeneration.from_pretrained(config.model, dtype=dtype).to(device)
            image_processor = AutoImageProcessor.from_pretrained(config.model)
            tokenizer = AutoTokenizer.from_pretrained(config.model)
        return cls(
            model,
            image_processor,
            tokenizer,
            config.num_frames,
            config.prompt,
            config.generation,
            config.batch_size,
            device,
        )

    def __call__(self, clips: Sequence[Sequence[np.ndarray]]) -> list[Caption]:
        """One caption per clip; a clip is the `num_frames` frames at `curation.frame_sampling.uniform_frame_indices` (H x W x 3 RGB uint8)."""
        captions: list[Caption] = []
        for start in range(0, len(clips), self.batch_size):
            captions += self._caption_batch(clips[start : start + self.batch_size])
        return captions

    def pixel_values(self, clips: Sequence[Sequence[np.ndarray]]) -> torch.Tensor:
        """(batch, time, 3, H, W) model input for clips of `num_frames` frames each."""
        for clip in clips:
            if len(clip) != self.num_frames:
                raise ValueError(f"{STAGE}: expected {self.num_frames} frames per clip, got {len(clip)}")
        frames = [check_frame(frame) for clip in clips for frame in clip]
        flat = self.image_processor(images=frames, return_tensors="pt")["pixel_values"]
        return flat.reshape(len(clips), self.num_frames, *flat.shape[1:]).to(self.device)

    def _caption_batch(self, clips: Sequence[Sequence[np.ndarray]]) -> list[Caption]:
        # Every clip gets the same prompt, so the prompts need no padding; the video tokens have equal length.
        input_ids = self.tokenizer(self.prompt, return_tensors="pt").input_ids.to(self.device)
        input_ids = input_ids.expand(len(clips), -1)
        with seeded(self.generation.seed, self.device):
            output = self.model.generate(
                self.pixel_values(clips),
                input_ids,
                pad_token_id=self.tokenizer.pad_token_id,
                **hf_generate_kwargs(self.generation),
            )
        texts = self.tokenizer.batch_decode(output, skip_special_tokens=True)
        return [Caption.from_generated(text) for text in texts]
