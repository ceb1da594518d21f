"""The installed `svd` console script, run as users run it."""

import subprocess
import sys

import pytest

from svd import __version__


def svd(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(["svd", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_version():
    result = svd("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"svd {__version__}"


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ((), ["curate", "train", "generate", "WebDataset"]),
        (("curate",), ["single-shot clips", "clips.parquet", "errors.jsonl", "--set", "--address", "Exit code"]),
        (("train",), ["temporal layers", "--resume", "RUN_DIR/final"]),
        (("generate",), ["Stable Video Diffusion", "--model", ".gif"]),
        (("sample-video",), ["dissolve", "--seed"]),
    ],
)
def test_help_describes_each_command(command, words):
    result = svd(*command, "--help")
    assert result.returncode == 0, result.stderr
    for word in words:
        assert word in result.stdout


def test_unknown_option_is_a_usage_error():
    result = svd("curate", "--frobnicate")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "svd.cli", "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_sample_video_has_the_promised_structure(tmp_path):
    import av

    result = svd("sample-video", "demo video.mp4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with av.open(str(tmp_path / "demo video.mp4")) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert (stream.width, stream.height, round(float(stream.average_rate))) == (128, 96, 24)
    assert frames == 732
    assert "6 shots" in result.stdout
