"""CLIP-based scores: aesthetics (LAION improved aesthetic predictor) and caption match (CLIP score).

One open_clip model is loaded once per worker and serves both: the image embeddings of a clip's first,
middle and last frames give `aesthetic_score` (the LAION MLP on each L2-normalised embedding, averaged
over the frames) before captioning, and, once a caption exists, `clip_score` (the mean cosine
similarity between those frame embeddings and the caption's text embedding). Keeping the frame
embeddings between the two steps means frames are decoded and encoded once.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from huggingface_hub import hf_hub_download
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from curation.config import AestheticConfig, ClipConfig
from curation.devices import OPEN_CLIP_PRECISION, resolve_device, resolve_dtype
from curation.errors import ModelLoadError

URL_SCHEMES = ("http", "https")
OPEN_CLIP_SCHEMES = ("hf-hub:", "local-dir:")  # model names that carry their own weights
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth")  # what open_clip looks for in a local folder


@dataclass(frozen=True)
class ImageScores:
    """What the image side gives per clip: its aesthetic score and the frame embeddings kept for clip_score."""

    aesthetic_score: float | None  # None when the aesthetic predictor is switched off
    embeddings: np.ndarray  # (frames, width) float32, L2-normalised


class AestheticPredictor(nn.Module):
    """The LAION improved aesthetic predictor (christophschuhmann/improved-aesthetic-predictor).

    The published MLP has no activations between its linear layers (they are commented out upstream);
    dropouts do nothing at inference. Module names match `sac+logos+ava1-l14-linearMSE.pth`
    (`layers.0.weight`, ..., `layers.7.bias`), so the real weights load as they are.
    """

    def __init__(self, width: int = 768) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(width, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    @property
    def width(self) -> int:
        return self.layers[0].in_features

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Scores (N,) for L2-normalised embeddings (N, width), roughly on AVA's 1-10 scale."""
        return self.layers(embeddings).squeeze(-1)


class OpenClipScorer:
    """An open_clip model (and the aesthetic MLP) loaded once; every method works on batches."""

    def __init__(self, config: ClipConfig) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(self.device, config.precision)
        self.model, self.preprocess, self.tokenizer = _load_open_clip(config, self.device, self.dtype)
        self.width = int(self.model.visual.output_dim)
        self.aesthetic = None
        if config.aesthetic.enabled:
            self.aesthetic = load_aesthetic(config.aesthetic, self.width).to(self.device)

    def image_scores(self, clips: Sequence[Sequence[np.ndarray]]) -> list[ImageScores]:
        """Per clip (a list of RGB frames): aesthetic score (mean over frames) and the frame embeddings."""
        if any(len(frames) == 0 for frames in clips):
            raise ValueError("a clip needs at least one frame for CLIP")
        embeddings = self.embed_images([frame for frames in clips for frame in frames])
        aesthetic = self.aesthetic_scores(embeddings) if self.aesthetic is not None else None
        results, start = [], 0
        for frames in clips:
            end = start + len(frames)
            score = float(aesthetic[start:end].mean()) if aesthetic is not None else None
            results.append(ImageScores(score, embeddings[start:end]))
            start = end
        return results

    def clip_scores(self, frame_embeddings: Sequence[np.ndarray], captions: Sequence[str | None]) -> list[float | None]:
        """Per clip: mean cosine similarity between its frame embeddings and its caption's embedding.

        A clip without a caption (None) gets None: there is nothing to match.
        """
        if len(frame_embeddings) != len(captions):
            raise ValueError(f"{len(frame_embeddings)} clips but {len(captions)} captions")
        captioned = [i for i, caption in enumerate(captions) if caption is not None]
        texts = self.embed_texts([captions[i] for i in captioned])
        scores: list[float | None] = [None] * len(captions)
        for i, text in zip(captioned, texts, strict=True):
            scores[i] = float((frame_embeddings[i] @ text).mean())
        return scores

    @torch.inference_mode()
    def embed_images(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """L2-normalised image embeddings (N, width), float32, through the model's own preprocessing."""
        out = []
        for start in range(0, len(frames), self.config.batch_size):
            chunk = frames[start : start + self.config.batch_size]
            pixels = torch.stack([self.preprocess(Image.fromarray(frame)) for frame in chunk])
            features = self.model.encode_image(pixels.to(self.device, self.dtype))
            out.append(F.normalize(features.float(), dim=-1).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.width), np.float32)

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised text embeddings (N, width), float32; long texts are truncated by the tokenizer."""
        out = []
        for start in range(0, len(texts), self.config.batch_size):
            tokens = self.tokenizer(list(texts[start : start + self.config.batch_size]))
            features = self.model.encode_text(tokens.to(self.device))
            out.append(F.normalize(features.float(), dim=-1).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.width), np.float32)

    @torch.inference_mode()
    def aesthetic_scores(self, embeddings: np.ndarray) -> np.ndarray:
        """The aesthetic MLP on each (already normalised) embedding, in float32."""
        if self.aesthetic is None:
            raise ValueError("the aesthetic predictor is switched off (clip.aesthetic.enabled=false)")
        x = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32)).to(self.device)
        return self.aesthetic(x).cpu().numpy()


def preflight(config: ClipConfig) -> None:
    """Check, and fetch into the caches, every weight file the stage needs, without building the model.

    For the driver: a missing or mismatched model stops the run before any clip is processed, while the
    model itself loads on the workers. Checks what `OpenClipScorer` would refuse, and the aesthetic MLP's
    width against the CLIP embedding width.
    """
    if not config.enabled:
        return
    name, pretrained = _model_source(config)
    try:
        if name.startswith("local-dir:"):
            path = Path(name.removeprefix("local-dir:")) / "open_clip_config.json"
            model_cfg = json.loads(path.read_text(encoding="utf-8"))["model_cfg"]
        elif name.startswith("hf-hub:"):
            repo = name.removeprefix("hf-hub:")
            model_cfg = json.loads(Path(hf_hub_download(repo, "open_clip_config.json")).read_text())["model_cfg"]
            open_clip.pretrained.download_pretrained_from_hf(repo)
        else:
            model_cfg = open_clip.get_model_config(name)
            if model_cfg is None:
                raise ValueError(f"no open_clip model config named {name!r}")
            tag = open_clip.get_pretrained_cfg(name, pretrained)
            if tag:
                open_clip.download_pretrained(tag)
            elif not Path(pretrained).is_file():
                raise ValueError(f"clip.pretrained {pretrained!r} is neither a tag of {name} nor a file")
    except (RuntimeError, OSError, ValueError, KeyError) as error:
        raise ModelLoadError("clip", name, str(error).splitlines()[0], "clip.model") from None
    if config.aesthetic.enabled:
        load_aesthetic(config.aesthetic, int(model_cfg["embed_dim"]))


def load_aesthetic(config: AestheticConfig, width: int) -> AestheticPredictor:
    """The MLP from a local .pth/.pt/.safetensors file or a URL (downloaded once to torch's hub cache).

    Refuses to run without weights: a random MLP would give scores that look real and mean nothing.
    """
    key = "clip.aesthetic.weights"
    if not config.weights:
        raise ModelLoadError("clip", "aesthetic predictor", "clip.aesthetic.weights is not set", key)
    path = Path(config.weights)
    if urlparse(config.weights).scheme in URL_SCHEMES:
        path = _download(config.weights)
    if not path.is_file():
        raise ModelLoadError("clip", config.weights, "no such file", key)
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "layers.0.weight" not in state:
            raise ValueError("not a state dict of the LAION aesthetic MLP (no layers.0.weight)")
        expected = state["layers.0.weight"].shape[1]
        if expected != width:
            raise ValueError(
                f"the predictor takes {expected}-wide embeddings but the CLIP model gives {width}; "
                "the LAION predictor was trained on ViT-L-14 (768)"
            )
        predictor = AestheticPredictor(width)
        predictor.load_state_dict(state)
    except (RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError, SafetensorError) as error:
        raise ModelLoadError("clip", config.weights, str(error), key) from None
    return predictor.float().eval()


def _download(url: str) -> Path:
    path = Path(torch.hub.get_dir()) / "checkpoints" / unquote(Path(urlparse(url).path).name)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(path), progress=False)
    except OSError as error:  # urllib's URLError (no network, 404) is an OSError
        raise ModelLoadError("clip", url, f"download failed ({error})", "clip.aesthetic.weights") from None
    return path


def _model_source(config: ClipConfig) -> tuple[str, str | None]:
    """(open_clip model name, pretrained): a folder in `model` is read as open_clip's `local-dir:` schema.

    Refuses what would silently give a randomly initialised CLIP.
    """
    name = config.model
    if Path(name).is_dir():
        name = f"local-dir:{name}"
    own_weights = name.startswith(OPEN_CLIP_SCHEMES)
    if not own_weights and not config.pretrained:
        raise ModelLoadError(
            "clip", name, "clip.pretrained is null: a randomly initialised CLIP gives meaningless scores", "clip.model"
        )
    folder = Path(name.removeprefix("local-dir:"))
    if (
        name.startswith("local-dir:")
        and folder.is_dir()
        and not any(p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir())
    ):
        # open_clip would only log a warning and go on with random weights.
        raise ModelLoadError("clip", name, f"no weights ({', '.join(WEIGHT_SUFFIXES)}) in {folder}", "clip.model")
    return name, None if own_weights else config.pretrained


def _load_open_clip(config: ClipConfig, device: torch.device, dtype: torch.dtype):
    """(model, preprocess, tokenizer), on `device` in `dtype`."""
    name, pretrained = _model_source(config)
    # OpenAI's weights were trained with QuickGELU; the plain ViT-L-14 config uses GELU, and open_clip only
    # warns about the mismatch. Take the activation from the weights' own config.
    tag = open_clip.get_pretrained_cfg(name, pretrained) if pretrained else {}
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name,
            pretrained=pretrained,
            precision=OPEN_CLIP_PRECISION[dtype],
            device=device,
            force_quick_gelu=bool(tag.get("quick_gelu", False)),
        )
        tokenizer = open_clip.get_tokenizer(name)
    except (RuntimeError, OSError, ValueError, KeyError) as error:
        raise ModelLoadError("clip", name, str(error).splitlines()[0], "clip.model") from None
    return model.eval(), preprocess, tokenizer
