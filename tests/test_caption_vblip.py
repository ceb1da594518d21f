"""VideoBLIP on a tiny random BLIP-2 (ViT, Q-Former, OPT), loaded through save_pretrained folders."""

import json

import numpy as np
import pytest
import torch
from transformers import Blip2ForConditionalGeneration

from curation.captions.text import EMPTY, OK
from curation.captions.vblip import VBlipCaptioner, VideoBlipForConditionalGeneration
from curation.config import GenerationConfig, VBlipConfig
from curation.errors import ModelLoadError
from curation.frame_sampling import uniform_frame_indices
from curation.tiny_builders import vblip_config

FRAMES = 4
GREEDY = GenerationConfig(max_new_tokens=8)


def captioner(
    model: str, generation: GenerationConfig = GREEDY, batch_size: int = 8, prompt: str = ""
) -> VBlipCaptioner:
    config = VBlipConfig(
        model=model, num_frames=FRAMES, prompt=prompt, generation=generation, batch_size=batch_size, device="cpu"
    )
    return VBlipCaptioner.load(config)


def clips(count: int, seed: int = 0) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[rng.integers(0, 256, (36, 48, 3), dtype=np.uint8) for _ in range(FRAMES)] for _ in range(count)]


@pytest.mark.parametrize(
    ("num_frames", "count", "expected"),
    [
        (100, 8, [0, 14, 28, 42, 56, 70, 84, 99]),
        (8, 8, list(range(8))),
        (3, 8, [0, 0, 0, 0, 1, 1, 1, 2]),
        (1, 4, [0, 0, 0, 0]),
        (10, 1, [4]),
        (2, 2, [0, 1]),
    ],
)
def test_uniform_frame_indices(num_frames, count, expected):
    assert uniform_frame_indices(num_frames, count) == expected


def test_uniform_frame_indices_refuses_nothing():
    with pytest.raises(ValueError, match="at least 1"):
        uniform_frame_indices(0, 8)


@pytest.mark.parametrize(
    "generation", [GREEDY, GenerationConfig(max_new_tokens=8, num_beams=3)], ids=["greedy", "beams"]
)
def test_batched_equals_one_by_one(vblip_model, generation):
    model = captioner(vblip_model, generation)
    videos = clips(4)
    batched = model(videos)
    assert [model([video])[0] for video in videos] == batched
    assert captioner(vblip_model, generation, batch_size=3)(videos) == batched
    # A random OPT often ends at once: those clips get the empty marker, the others a caption.
    assert all((caption.text is None) == (caption.status == EMPTY) for caption in batched)
    assert len({caption.text for caption in batched if caption.status == OK}) > 1


def test_sampling_is_deterministic_with_a_seed(vblip_model):
    sampled = GenerationConfig(max_new_tokens=8, do_sample=True, seed=1)
    videos = clips(3)
    first = captioner(vblip_model, sampled)(videos)
    assert captioner(vblip_model, sampled)(videos) == first
    assert captioner(vblip_model, sampled.model_copy(update={"seed": 2}))(videos) != first


def test_the_prompt_reaches_the_language_model(vblip_model):
    videos = clips(2)
    assert captioner(vblip_model, prompt="a video of")(videos) != captioner(vblip_model)(videos)


def test_every_frame_reaches_the_qformer(vblip_model):
    model = captioner(vblip_model)
    video = clips(1)[0]
    with torch.no_grad():
        pixels = model.pixel_values([video])
        tokens = model.model.frame_tokens(pixels)
        features = model.model.video_features(pixels)
        per_frame = tokens.shape[1] // FRAMES
        assert tokens.shape[1] == FRAMES * per_frame  # (time x patches) tokens: all frames side by side
        for changed in range(FRAMES):
            other = [frame.copy() for frame in video]
            other[changed] = 255 - other[changed]
            other_pixels = model.pixel_values([other])
            other_tokens = model.model.frame_tokens(other_pixels)
            for frame in range(FRAMES):
                window = slice(frame * per_frame, (frame + 1) * per_frame)
                same = torch.equal(tokens[:, window], other_tokens[:, window])
                assert same == (frame != changed)  # frame k's tokens, and only those, follow frame k
            assert not torch.allclose(model.model.video_features(other_pixels), features)


def test_weight_names_are_blip2s_so_published_checkpoints_load(vblip_model, tmp_path):
    config = vblip_config(vocab_size=300)
    assert VideoBlipForConditionalGeneration(config).state_dict().keys() == (
        Blip2ForConditionalGeneration(config).state_dict().keys()
    )
    # A checkpoint saved by plain BLIP-2 and named VideoBlip* (as kpyu/video-blip-* are) loads completely.
    torch.manual_seed(0)
    blip2 = Blip2ForConditionalGeneration(config).eval()
    blip2.save_pretrained(tmp_path)
    config_file = tmp_path / "config.json"
    config_json = json.loads(config_file.read_text())
    config_json["architectures"] = ["VideoBlipForConditionalGeneration"]
    config_file.write_text(json.dumps(config_json))
    loaded, info = VideoBlipForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    for name, tensor in blip2.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_clip_with_the_wrong_frame_count_is_refused(vblip_model):
    with pytest.raises(ValueError, match="caption.vblip: expected 4 frames per clip, got 3"):
        captioner(vblip_model)([clips(1)[0][:3]])


def test_a_model_that_cannot_be_loaded_stops_with_one_line(tmp_path):
    with pytest.raises(ModelLoadError) as error:
        VBlipCaptioner.load(VBlipConfig(model=str(tmp_path / "missing"), device="cpu"))
    message = str(error.value)
    assert message.startswith(f"caption.vblip: cannot load model '{tmp_path / 'missing'}'")
    assert message.endswith("--set caption.vblip.model=PATH (no model hub is needed then)")
    assert "\n" not in message
