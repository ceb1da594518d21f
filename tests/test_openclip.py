"""CLIP scores on a tiny randomly initialised open_clip model, loaded through the production code path
(a local folder in open_clip's layout), checked against open_clip used directly."""

import json

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from curation.config import AestheticConfig, ClipConfig
from curation.errors import ModelLoadError
from curation.scores.openclip import AestheticPredictor, OpenClipScorer, preflight
from curation.tiny_builders import TINY_CLIP, WIDTH

# The tensor names of the published sac+logos+ava1-l14-linearMSE.pth.
LAION_KEYS = [f"layers.{i}.{kind}" for i in (0, 2, 4, 6, 7) for kind in ("weight", "bias")]


def config(clip_model, **overrides) -> ClipConfig:
    fields = {
        "model": str(clip_model["folder"]),
        "pretrained": None,
        "aesthetic": AestheticConfig(weights=str(clip_model["aesthetic"])),
        "device": "cpu",
    }
    return ClipConfig(**{**fields, **overrides})


@pytest.fixture(scope="module")
def scorer(clip_model) -> OpenClipScorer:
    return OpenClipScorer(config(clip_model))


@pytest.fixture(scope="module")
def reference(clip_model):
    """The same tiny model built by open_clip directly, with its own transform and tokenizer."""
    name = f"local-dir:{clip_model['folder']}"
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    return model.eval(), preprocess, open_clip.get_tokenizer(name)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8) for _ in range(5)]


def direct_image_embeddings(reference, frames) -> np.ndarray:
    model, preprocess, _ = reference
    with torch.no_grad():
        pixels = torch.stack([preprocess(Image.fromarray(frame)) for frame in frames])
        return F.normalize(model.encode_image(pixels), dim=-1).numpy()


def direct_aesthetic(state, embeddings: np.ndarray) -> np.ndarray:
    """The published MLP by hand: linear layers only (dropouts are off at inference)."""
    x = torch.from_numpy(embeddings)
    for i in (0, 2, 4, 6, 7):
        x = x @ state[f"layers.{i}.weight"].T + state[f"layers.{i}.bias"]
    return x.squeeze(-1).numpy()


def test_image_embeddings_match_open_clip(scorer, reference, frames):
    np.testing.assert_allclose(scorer.embed_images(frames), direct_image_embeddings(reference, frames), atol=1e-5)


def test_aesthetic_is_the_mlp_on_normalised_embeddings_averaged_over_frames(scorer, reference, clip_model, frames):
    clips = [frames[:3], frames[3:]]
    per_frame = direct_aesthetic(clip_model["state"], direct_image_embeddings(reference, frames))
    got = scorer.image_scores(clips)
    assert [result.aesthetic_score for result in got] == pytest.approx(
        [per_frame[:3].mean(), per_frame[3:].mean()], abs=1e-5
    )
    assert [result.embeddings.shape for result in got] == [(3, WIDTH), (2, WIDTH)]


def test_clip_score_is_the_mean_cosine_with_the_caption(scorer, reference, frames):
    model, _, tokenizer = reference
    captions = ["a red car on a road", "two dogs playing in the snow"]
    clips = [frames[:3], frames[3:]]
    with torch.no_grad():
        texts = F.normalize(model.encode_text(tokenizer(captions)), dim=-1).numpy()
    images = direct_image_embeddings(reference, frames)
    expected = [float((images[:3] @ texts[0]).mean()), float((images[3:] @ texts[1]).mean())]
    embeddings = [result.embeddings for result in scorer.image_scores(clips)]
    assert scorer.clip_scores(embeddings, captions) == pytest.approx(expected, abs=1e-5)
    # A clip whose captioning gave nothing has no score; the others are unchanged.
    partial = scorer.clip_scores([embeddings[0], embeddings[1]], [None, captions[1]])
    assert partial[0] is None and partial[1] == pytest.approx(expected[1], abs=1e-5)


def test_batched_equals_one_by_one(clip_model, frames):
    batched = OpenClipScorer(config(clip_model, batch_size=4))
    single = OpenClipScorer(config(clip_model, batch_size=1))
    clips = [frames[:2], frames[2:3], frames[3:]]
    captions = ["a cat", "a long caption about a mountain lake at dawn", "text"]
    together = batched.image_scores(clips)
    alone = [single.image_scores([clip])[0] for clip in clips]
    for a, b in zip(together, alone, strict=True):
        assert a.aesthetic_score == pytest.approx(b.aesthetic_score, abs=1e-5)
        np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-5)
    embeddings = [result.embeddings for result in together]
    one_by_one = [single.clip_scores([e], [c])[0] for e, c in zip(embeddings, captions, strict=True)]
    assert batched.clip_scores(embeddings, captions) == pytest.approx(one_by_one, abs=1e-5)


def test_identical_frames_give_identical_embeddings(scorer, frames):
    embeddings = scorer.embed_images([frames[0], frames[1], frames[0].copy(), frames[0]])
    np.testing.assert_array_equal(embeddings[0], embeddings[2])
    np.testing.assert_array_equal(embeddings[0], embeddings[3])
    assert not np.allclose(embeddings[0], embeddings[1])


def test_aesthetic_layout_matches_the_published_weights():
    assert list(AestheticPredictor().state_dict()) == LAION_KEYS
    assert AestheticPredictor().width == 768


def test_aesthetic_loads_from_safetensors(clip_model, scorer, frames):
    other = OpenClipScorer(
        config(clip_model, aesthetic=AestheticConfig(weights=str(clip_model["folder"] / "aesthetic.safetensors")))
    )
    embeddings = scorer.embed_images(frames)
    np.testing.assert_allclose(other.aesthetic_scores(embeddings), scorer.aesthetic_scores(embeddings), atol=1e-6)


def test_aesthetic_can_be_switched_off(clip_model, frames):
    scorer = OpenClipScorer(config(clip_model, aesthetic=AestheticConfig(enabled=False, weights=None)))
    assert scorer.image_scores([frames[:2]])[0].aesthetic_score is None


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (None, "clip.aesthetic.weights is not set"),
        ("missing.pth", "no such file"),
        ("http://127.0.0.1:9/sac%2Blogos%2Bava1-l14-linearMSE.pth", "download failed"),
    ],
)
def test_aesthetic_weights_that_cannot_load_stop_the_run(clip_model, tmp_path, monkeypatch, weights, message):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty download cache
    if weights == "missing.pth":
        weights = str(tmp_path / weights)
    with pytest.raises(ModelLoadError) as error:
        OpenClipScorer(config(clip_model, aesthetic=AestheticConfig(weights=weights)))
    assert message in str(error.value)
    assert str(error.value).startswith("clip: cannot load model")
    assert "--set clip.aesthetic.weights=PATH" in str(error.value)


def test_aesthetic_width_must_match_the_clip_model(clip_model, tmp_path):
    path = tmp_path / "l14.pth"
    torch.save(AestheticPredictor(768).state_dict(), path)
    with pytest.raises(ModelLoadError, match="takes 768-wide embeddings but the CLIP model gives 32"):
        OpenClipScorer(config(clip_model, aesthetic=AestheticConfig(weights=str(path))))


def test_aesthetic_file_of_another_kind_is_refused(clip_model, tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(ModelLoadError, match="not a state dict of the LAION aesthetic MLP"):
        OpenClipScorer(config(clip_model, aesthetic=AestheticConfig(weights=str(path))))


def test_clip_folder_that_is_not_there(clip_model, tmp_path):
    with pytest.raises(ModelLoadError) as error:
        OpenClipScorer(config(clip_model, model=f"local-dir:{tmp_path / 'nope'}"))
    assert str(error.value).startswith("clip: cannot load model 'local-dir:")
    assert "--set clip.model=PATH" in str(error.value)


def test_clip_without_weights_is_refused(clip_model, tmp_path):
    with pytest.raises(ModelLoadError, match="randomly initialised CLIP"):
        OpenClipScorer(config(clip_model, model="ViT-B-32", pretrained=None))
    (tmp_path / "open_clip_config.json").write_text(json.dumps(TINY_CLIP))  # a config but no weights
    with pytest.raises(ModelLoadError, match="no weights"):
        OpenClipScorer(config(clip_model, model=str(tmp_path)))


def test_default_model_offline_stops_with_one_message(clip_model):
    # The paper's ViT-L-14/openai is not in any cache here and the hub is offline (tests/conftest.py).
    with pytest.raises(ModelLoadError) as error:
        OpenClipScorer(config(clip_model, model="ViT-L-14", pretrained="openai"))
    assert str(error.value).startswith("clip: cannot load model 'ViT-L-14'")
    assert "\n" not in str(error.value)


def test_preflight_checks_weights_without_building_the_model(clip_model, tmp_path, monkeypatch):
    preflight(config(clip_model))  # a good folder and aesthetic file: no error
    preflight(config(clip_model, enabled=False, model="ViT-L-14", pretrained="openai"))  # a stage switched off
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = tmp_path / "l14.pth"
    torch.save(AestheticPredictor(768).state_dict(), path)
    failing = [
        (config(clip_model, aesthetic=AestheticConfig(weights=str(path))), "takes 768-wide embeddings"),
        (config(clip_model, model="ViT-L-14", pretrained="openai"), "cannot load model 'ViT-L-14'"),
        (
            config(clip_model, model="ViT-L-14", pretrained=str(tmp_path / "none.pt")),
            "neither a tag of ViT-L-14 nor a file",
        ),
        (config(clip_model, model="ViT-Nope", pretrained="openai"), "no open_clip model config named 'ViT-Nope'"),
        (config(clip_model, aesthetic=AestheticConfig(weights=None)), "clip.aesthetic.weights is not set"),
    ]
    for bad, message in failing:
        with pytest.raises(ModelLoadError, match=message):
            preflight(bad)
