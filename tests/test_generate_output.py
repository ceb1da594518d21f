"""Output writers: mp4 / gif / PNG folder decode to what was written; nothing half-written is left behind."""

from pathlib import Path

import av
import numpy as np
import PIL.Image
import pytest

from svd.generate import output
from svd.generate.output import check_writable, condition_path, output_kind, to_uint8, write_image, write_video

FPS = 7


def frames(count=5, height=32, width=48) -> np.ndarray:
    ramp = np.linspace(0, 255, width, dtype=np.float32)
    video = np.zeros((count, height, width, 3), dtype=np.uint8)
    for k in range(count):
        video[k, ..., 0] = ramp
        video[k, ..., 1] = 40 * k
        video[k, ..., 2] = 128
    return video


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)


def test_mp4_decodes_to_every_frame_at_the_size_and_fps(tmp_path):
    path = write_video(frames(), tmp_path / "v.mp4", FPS)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert stream.codec_context.name == "h264"
        assert float(stream.average_rate) == FPS
    assert len(decoded) == 5 and decoded[0].shape == (32, 48, 3)
    assert np.abs(decoded[3].astype(int) - frames()[3]).mean() < 3  # crf 18: close to the input
    assert leftovers(tmp_path) == []


def test_gif_has_every_frame_at_the_size_and_about_the_fps(tmp_path):
    path = write_video(frames(), tmp_path / "v.gif", FPS)
    with PIL.Image.open(path) as gif:
        assert gif.n_frames == 5 and gif.size == (48, 32)
        assert abs(gif.info["duration"] - 1000 / FPS) <= 10  # hundredths of a second in the file
    assert leftovers(tmp_path) == []


def test_png_folder_holds_numbered_frames_and_is_replaced_on_a_rerun(tmp_path):
    path = write_video(frames(), tmp_path / "frames", FPS)
    names = sorted(p.name for p in path.iterdir())
    assert names == [f"frame-{k:04d}.png" for k in range(5)]
    assert np.array_equal(np.asarray(PIL.Image.open(path / names[2])), frames()[2])
    write_video(frames(count=3), path, FPS)
    assert len(list(path.iterdir())) == 3
    assert leftovers(tmp_path) == []


def test_a_failing_writer_leaves_nothing(tmp_path, monkeypatch):
    def broken(frames, staging, fps):
        staging.write_bytes(b"half a video")
        raise RuntimeError("encoder crashed")

    monkeypatch.setattr(output, "write_mp4", broken)
    (tmp_path / "old.mp4").write_bytes(b"previous video")
    with pytest.raises(RuntimeError):
        write_video(frames(), tmp_path / "old.mp4", FPS)
    with pytest.raises(RuntimeError):
        write_video(frames(), tmp_path / "new.mp4", FPS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.mp4"]
    assert (tmp_path / "old.mp4").read_bytes() == b"previous video"


def test_kinds_condition_paths_and_refusals(tmp_path):
    assert [output_kind(p) for p in ("a.mp4", "b.GIF", "frames")] == ["mp4", "gif", "png"]
    with pytest.raises(ValueError, match=r"unsupported output type '\.avi'"):
        output_kind("a.avi")
    assert condition_path(tmp_path / "cat.mp4") == tmp_path / "cat.condition.png"
    assert condition_path(tmp_path / "frames") == tmp_path / "frames.condition.png"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds other files than PNG frames"):
        check_writable(tmp_path / "docs")
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        check_writable(tmp_path / "dir.mp4")


def test_uint8_rounding_and_condition_image(tmp_path):
    assert to_uint8(np.array([-0.5, 0.0, 0.5, 1.0, 2.0])).tolist() == [0, 0, 128, 255, 255]
    image = PIL.Image.fromarray(frames()[0])
    write_image(image, tmp_path / "c.png")
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / "c.png")), frames()[0])
