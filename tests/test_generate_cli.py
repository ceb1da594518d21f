"""`svd generate` from the command line on a tiny random SVD checkpoint folder: outputs, --json, errors."""

import json

import av
import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner
from tiny_generate import FRAMES, random_image, save_tiny_svd

from svd.cli import cli

FAST = ["--height", "32", "--width", "32", "--steps", "2", "--seed", "3"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_tiny_svd(tmp_path_factory.mktemp("tiny-svd"))


@pytest.fixture
def image(tmp_path):
    return random_image(tmp_path / "cat.png")


def svd_generate(*args, cwd=None):
    runner = CliRunner()
    if cwd is None:
        return runner.invoke(cli, ["generate", *map(str, args)])
    with runner.isolated_filesystem(temp_dir=cwd):
        return runner.invoke(cli, ["generate", *map(str, args)])


def files(folder) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_mp4_with_json_summary(model, tmp_path, image):
    result = svd_generate(tmp_path / "cat.png", "-o", tmp_path / "out" / "cat.mp4", "--model", model, *FAST, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["seed"] == 3 and summary["settings"]["num_frames"] == FRAMES  # the UNet config's frame count
    assert summary["settings"]["fps"] == 7 and summary["settings"]["steps"] == 2
    assert summary["videos"] == [
        {
            "image": str(tmp_path / "cat.png"),
            "output": str(tmp_path / "out" / "cat.mp4"),
            "seed": 3,
            "frames": FRAMES,
            "condition": str(tmp_path / "out" / "cat.condition.png"),
        }
    ]
    assert {"load", "encode", "sample", "decode", "write", "total", "seconds_per_video"} <= set(summary["timings"])
    with av.open(str(tmp_path / "out" / "cat.mp4")) as container:
        stream = container.streams.video[0]
        count = sum(1 for _ in container.decode(stream))
        assert (count, stream.width, stream.height, float(stream.average_rate)) == (FRAMES, 32, 32, 7.0)
    assert PIL.Image.open(tmp_path / "out" / "cat.condition.png").size == (32, 32)
    assert files(tmp_path / "out") == {"cat.mp4", "cat.condition.png"}


def test_gif_and_png_frames_with_settings(model, tmp_path, image):
    args = [*FAST, "--model", model, "--num-frames", "2", "--fps", "10", "--motion-bucket-id", "60"]
    result = svd_generate(tmp_path / "cat.png", "-o", tmp_path / "cat.gif", *args, "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "cat.gif")  # the output path, printed at the end
    with PIL.Image.open(tmp_path / "cat.gif") as gif:
        assert (gif.n_frames, gif.size, gif.info["duration"]) == (2, (32, 32), 100)
    result = svd_generate(tmp_path / "cat.png", "-o", tmp_path / "frames", *args, "--decode-chunk-size", "1")
    assert result.exit_code == 0, result.output
    frames = sorted((tmp_path / "frames").iterdir())
    assert [p.name for p in frames] == ["frame-0000.png", "frame-0001.png"]
    assert PIL.Image.open(frames[0]).size == (32, 32)
    assert (tmp_path / "frames.condition.png").is_file()


def test_a_folder_of_images_in_batches(model, tmp_path):
    (tmp_path / "in").mkdir()
    for k, name in enumerate(["a.png", "b.jpg", "c.png"]):
        random_image(tmp_path / "in" / name, seed=k)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    args = [tmp_path / "in", "-o", tmp_path / "videos", "--format", "gif", "--batch-size", "2", "--json"]
    result = svd_generate(*args, "--model", model, *FAST, "--num-frames", "2")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [(v["output"], v["seed"]) for v in summary["videos"]] == [
        (str(tmp_path / "videos" / f"{name}.gif"), seed) for name, seed in (("a", 3), ("b", 4), ("c", 5))
    ]
    assert len(files(tmp_path / "videos")) == 6
    # Image b made alone with its own seed is the same video: batches do not change results.
    alone = svd_generate(
        tmp_path / "in" / "b.jpg", "-o", tmp_path / "b.gif", "--model", model, *FAST[:-1], "4", "--num-frames", "2"
    )
    assert alone.exit_code == 0, alone.output
    with PIL.Image.open(tmp_path / "b.gif") as one, PIL.Image.open(tmp_path / "videos" / "b.gif") as batched:
        assert np.abs(np.asarray(one.convert("RGB"), int) - np.asarray(batched.convert("RGB"), int)).max() <= 1


def test_default_output_name_and_size_rounding(model, tmp_path, image):
    result = svd_generate(
        tmp_path / "cat.png", "--model", model, "--height", "30", "--width", "37", "--steps", "2", "--seed", "1",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "height 30 is not a multiple of 4: using 32" in result.stderr
    assert "width 37 is not a multiple of 4: using 36" in result.stderr
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]  # the isolated working directory
    assert files(folder) == {"cat.mp4", "cat.condition.png"}
    assert PIL.Image.open(folder / "cat.condition.png").size == (36, 32)


def one_line_error(result, *words):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("missing image", ["nope.png", "no such image file or folder"]),
        ("unreadable image", ["broken.png", "cannot be read as an image"]),
        ("empty folder", ["no images in this folder"]),
        ("model without parts", ["not an SVD checkpoint folder", "image_encoder/", "scheduler/"]),
        ("text-to-video model", ["text-to-video model"]),
        ("too small", ["height 1: too small", "multiple of 4"]),
        ("bad output type", ["unsupported output type '.avi'"]),
        ("several images to one file", ["with several images, -o names a folder"]),
        ("guidance reversed", ["min_guidance 3.0 is above max_guidance 2.0"]),
        ("default model offline", ["stabilityai/stable-video-diffusion-img2vid-xt", "--model"]),
        ("bad device", ["device nonsense"]),
    ],
)
def test_bad_inputs_give_one_line_and_write_nothing(model, tmp_path, image, case, words):
    (tmp_path / "broken.png").write_text("not a png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "half" / "unet").mkdir(parents=True)
    (tmp_path / "t2v" / "text_encoder").mkdir(parents=True)
    (tmp_path / "t2v" / "unet").mkdir()
    cat, out = tmp_path / "cat.png", tmp_path / "out.mp4"
    args = {
        "missing image": [tmp_path / "nope.png", "-o", out, "--model", model],
        "unreadable image": [cat, tmp_path / "broken.png", "-o", tmp_path / "o", "--model", model],
        "empty folder": [tmp_path / "empty", "--model", model],
        "model without parts": [cat, "-o", out, "--model", tmp_path / "half"],
        "text-to-video model": [cat, "-o", out, "--model", tmp_path / "t2v"],
        "too small": [cat, "-o", out, "--model", model, "--height", "1"],
        "bad output type": [cat, "-o", tmp_path / "out.avi", "--model", model],
        "several images to one file": [cat, cat, "-o", out, "--model", model],
        "guidance reversed": [cat, "-o", out, "--model", model, "--min-guidance", "3", "--max-guidance", "2"],
        "default model offline": [cat, "-o", out],
        "bad device": [cat, "-o", out, "--model", model, "--device", "nonsense"],
    }[case]
    before = files(tmp_path)
    one_line_error(svd_generate(*args, "--steps", "2"), *words)
    assert files(tmp_path) == before
