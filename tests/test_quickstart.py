"""`svd quickstart DIR` as a new user runs it: one process, no download, image to video; and on the way the
README's main job (`svd curate` of the sample video with tiny.yaml) fills every score and caption of every kept
clip, with no error-level line from anyone."""

import json
import re
import subprocess
import sys

import av
import pyarrow.parquet as pq
import webdataset as wds


def test_quickstart_goes_from_a_sample_video_to_a_generated_one(tmp_path):
    folder = tmp_path / "quick start"
    done = subprocess.run(
        [sys.executable, "-m", "svd.cli", "quickstart", str(folder)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    steps = [line for line in done.stdout.splitlines() if re.match(r"^\d/4 ", line)]
    assert [line[:3] for line in steps] == ["1/4", "2/4", "3/4", "4/4"], done.stdout
    for line, path in zip(steps, ("sample.mp4", "curated/shards", "run/final", "video.mp4"), strict=True):
        assert str(folder / path) in line and (folder / path).exists(), line
    # No error-level line: neither ours nor Ray's core ("[time E pid tid] file.cc: ...") nor a traceback.
    output = done.stdout + done.stderr
    assert not re.search(r"^\[[^\]]* E \d+ \d+\]|^ERROR|Traceback", output, re.MULTILINE), output

    # Every stage ran on every clip that passed the early filters, and the kept clips' shard records hold three
    # captions, the shipped one and both scores.
    curated = folder / "curated"
    rows = pq.read_table(curated / "clips.parquet").to_pylist()
    for row in rows:
        assert row["motion_score"] is not None and 0 <= row["motion_bucket_id"] <= 255
        if not any(r["filter"] in ("min_motion", "max_text_area") for r in row["reject_reasons"]):
            assert row["text_area_ratio"] is not None and row["aesthetic_score"] is not None
            assert row["caption_coca_status"] == row["caption_vblip_status"] == row["caption_llm_status"] == "ok"
            assert row["caption"] and row["clip_score"] is not None
        assert row["kept"] == (not row["reject_reasons"])
    thresholds = json.loads((curated / "summary.json").read_text())["thresholds"]
    assert thresholds["drop_bottom_aesthetic"]["computed_from"] == sum(r["aesthetic_score"] is not None for r in rows)
    shards = sorted(str(path) for path in (curated / "shards").glob("*.tar"))
    samples = {sample["__key__"]: sample for sample in wds.WebDataset(shards, shardshuffle=False)}
    assert set(samples) == {row["key"] for row in rows if row["kept"]} != set()
    by_key = {row["key"]: row for row in rows}
    for key, sample in samples.items():
        record = json.loads(sample["json"])
        assert record["aesthetic_score"] == by_key[key]["aesthetic_score"]
        for field in ("caption_coca", "caption_vblip", "caption_llm", "caption"):
            assert isinstance(record[field], str) and record[field].strip(), (field, record)
        assert isinstance(record["aesthetic_score"], float) and isinstance(record["clip_score"], float)
        assert sample["txt"].decode() == record["caption"]

    with av.open(str(folder / "video.mp4")) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert (frames, stream.width, stream.height) == (4, 32, 32)  # tiny.yaml's model.num_frames, 32x32

    again = subprocess.run([sys.executable, "-m", "svd.cli", "quickstart", str(folder)], capture_output=True, text=True)
    assert again.returncode == 2 and "exists and is not empty" in again.stderr
