import av
import numpy as np
import pytest

from curation.video_io import _scaled_bgr


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080), (200, 120)])
def test_scaled_frame_matches_ffmpeg_area_scaling(size):
    """Our 4:2:0 fast path gives what FFmpeg's area scaler gives, on a picture with edges and gradients."""
    width, height = size
    x, y = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
    rgb = np.stack([x * 255, y * 255, ((x * 7).astype(int) % 2) * 200 + 20], axis=-1).astype(np.uint8)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    ours = _scaled_bgr(frame, 128, 72).astype(np.float32)
    ffmpeg = frame.reformat(width=128, height=72, format="bgr24", interpolation="AREA").to_ndarray()
    assert ours.shape == (72, 128, 3)
    assert np.abs(ours - ffmpeg).mean() < 3.0
