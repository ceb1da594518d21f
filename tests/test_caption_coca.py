"""CoCa captions on a tiny random open_clip CoCa, loaded through the real `local-dir:` path."""

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from curation.captions.coca import CocaCaptioner
from curation.captions.text import EMPTY, OK, Caption
from curation.config import CocaConfig, GenerationConfig
from curation.errors import ModelLoadError
from curation.frame_sampling import middle_frame_index

GREEDY = GenerationConfig(max_new_tokens=10)


def captioner(model: str, generation: GenerationConfig = GREEDY, batch_size: int = 32) -> CocaCaptioner:
    return CocaCaptioner.load(CocaConfig(model=model, generation=generation, batch_size=batch_size, device="cpu"))


def frames(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # Different sizes and aspect ratios: the preprocessing resizes and crops each frame on its own.
    return [rng.integers(0, 256, (24 + 8 * (index % 3), 40 + 4 * index, 3), dtype=np.uint8) for index in range(count)]


@pytest.mark.parametrize(
    "generation", [GREEDY, GenerationConfig(max_new_tokens=10, num_beams=3)], ids=["greedy", "beams"]
)
def test_batched_equals_one_by_one(coca_model, generation):
    model = captioner(coca_model, generation)
    images = frames(5)
    batched = model(images)
    assert [model([image])[0] for image in images] == batched
    assert all(caption.status == OK and caption.text for caption in batched)
    assert len({caption.text for caption in batched}) > 1  # the captions depend on the image
    # Chunked by batch_size, same answer.
    assert captioner(coca_model, generation, batch_size=2)(images) == batched


def test_captions_hold_no_start_or_end_tokens(coca_model):
    for caption in captioner(coca_model)(frames(4)):
        assert "start_of_text" not in caption.text and "end_of_text" not in caption.text
        assert caption.text == caption.text.strip()


def test_sampling_is_deterministic_with_a_seed(coca_model):
    sampled = GenerationConfig(max_new_tokens=10, do_sample=True, seed=1)
    images = frames(4)
    first = captioner(coca_model, sampled)(images)
    assert captioner(coca_model, sampled)(images) == first
    assert captioner(coca_model, sampled.model_copy(update={"seed": 2}))(images) != first


def test_a_model_that_ends_at_once_gives_the_empty_marker(coca_model, tmp_path):
    # Make the end token win every step: constant decoder features, aligned with the end token's column.
    folder = tmp_path / "mute"
    source = coca_model.removeprefix("local-dir:")
    weights = load_file(f"{source}/open_clip_model.safetensors")
    weights["text_decoder.ln_final.weight"] = torch.zeros_like(weights["text_decoder.ln_final.weight"])
    weights["text_decoder.ln_final.bias"] = torch.ones_like(weights["text_decoder.ln_final.bias"])
    weights["text_decoder.text_projection"][:, 49407] = 1.0
    folder.mkdir()
    save_file(weights, folder / "open_clip_model.safetensors")
    shutil.copy(f"{source}/open_clip_config.json", folder)
    assert captioner(f"local-dir:{folder}")(frames(2)) == [Caption(None, EMPTY)] * 2
    # With a minimum length the same model has to say something.
    forced = GenerationConfig(max_new_tokens=10, min_new_tokens=3)
    assert all(caption.status == OK for caption in captioner(f"local-dir:{folder}", forced)(frames(2)))


def test_too_many_tokens_for_the_context(coca_model):
    with pytest.raises(ValueError, match="max_new_tokens=30 does not fit CoCa's context of 24 tokens"):
        captioner(coca_model, GenerationConfig(max_new_tokens=30))


def test_bad_frame_is_refused(coca_model):
    with pytest.raises(ValueError, match=r"expected an H x W x 3 uint8 RGB frame, got shape \(8, 8\)"):
        captioner(coca_model)([np.zeros((8, 8), np.uint8)])


@pytest.mark.parametrize(
    ("model", "pretrained"),
    [
        ("local-dir:/nonexistent/coca", None),
        ("coca_ViT-L-14", "/nonexistent/coca.pt"),
        ("coca_ViT-L-14", "mscoco_finetuned_laion2B-s13B-b90k"),  # the hub is off in tests
    ],
)
def test_a_model_that_cannot_be_loaded_stops_with_one_line(model, pretrained):
    with pytest.raises(ModelLoadError) as error:
        CocaCaptioner.load(CocaConfig(model=model, pretrained=pretrained, device="cpu"))
    message = str(error.value)
    assert message.startswith(f"caption.coca: cannot load model '{model}")
    assert "--set caption.coca.model=local-dir:FOLDER or --set caption.coca.pretrained=PATH" in message
    assert "\n" not in message


def test_middle_frame_index():
    assert [middle_frame_index(count) for count in (1, 2, 3, 4, 9)] == [0, 0, 1, 1, 4]
    with pytest.raises(ValueError):
        middle_frame_index(0)
