"""Copies among a run's inputs (`dedup`): the same file under other folders and names is split once, and keys stay
unique in every output whatever the inputs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray
from tiny_curation import config, read_shards, videos
from video_copies import COPIES, FPS, decode, encoded

from curation.footage import source_path
from pipelines.copies import find_copies
from pipelines.curate import run_curation
from pipelines.selection import run_here


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)  # split, motion, the CLIP pool
    yield
    ray.shutdown()


def inputs_with_copies(folder: Path) -> tuple[list[Path], dict[str, str]]:
    """Real footage and a generated video, each with copies in other folders and under other names; and which
    input each copy duplicates (the first of its content in input order)."""
    for name in "abcde":
        (folder / name).mkdir()
    real = shutil.copy(source_path("carphone"), folder / "a" / "clip.mp4")
    generated = shutil.copy(videos(folder, 1)[0], folder / "d" / "video.mp4")
    same_real = [shutil.copy(real, folder / "b" / "clip.mp4"), shutil.copy(real, folder / "c" / "renamed.mp4")]
    same_generated = shutil.copy(generated, folder / "e" / "clip.mp4")  # the name of another input's copy
    inputs = [Path(real), same_real[0], Path(generated), same_real[1], Path(same_generated)]
    copies = {str(same_real[0]): str(real), str(same_real[1]): str(real), str(same_generated): str(generated)}
    return inputs, copies


def test_copies_are_found_by_size_then_content(tmp_path):
    inputs, copies = inputs_with_copies(tmp_path)
    sources = [str(path) for path in inputs]
    assert find_copies(sources, run_here) == copies
    # The same size, other bytes: not a copy. A file that cannot be read: left to the split stage.
    different = tmp_path / "a" / "same size.mp4"
    data = bytearray(Path(inputs[0]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    different.write_bytes(bytes(data))
    missing = str(tmp_path / "missing.mp4")
    assert find_copies([*sources, str(different), missing], run_here) == copies
    assert find_copies(sources[::-1], run_here)[str(inputs[0])] == str(inputs[3])  # the first in input order


def test_a_copy_is_not_split_again_and_names_its_original(local_ray, tmp_path):
    inputs, copies = inputs_with_copies(tmp_path)
    out = tmp_path / "out"
    result = run_curation(inputs, out, config())
    rows = pq.read_table(out / "clips.parquet").to_pylist()
    assert {row["source"] for row in rows} == {str(inputs[0]), str(inputs[2])}
    assert len({row["key"] for row in rows}) == len(rows) > 2
    assert set(read_shards(out)) == {row["key"] for row in rows if row["kept"]}
    lines = [json.loads(line) for line in (out / "sources.jsonl").read_text().splitlines()]
    assert {line["source"]: line.get("duplicate_of") for line in lines} == {
        str(path): copies.get(str(path)) for path in inputs
    }
    assert result.counts["duplicate_inputs"] == 3 and result.counts["failed_inputs"] == 0
    summary = json.loads((out / "summary.json").read_text())["counts"]
    assert summary["duplicate_inputs"] == 3 and summary["inputs"] == 5
    assert "the same file as" in (out / "report.html").read_text()


def test_without_dedup_every_copy_is_split_and_keys_stay_unique(local_ray, tmp_path):
    """Before keys named their input, a/clip.mp4 and b/clip.mp4 gave the same keys: the shard held its members
    twice and webdataset refused to read it."""
    inputs, _ = inputs_with_copies(tmp_path)
    job = config()
    job.dedup.enabled = False
    out = tmp_path / "out"
    run_curation(inputs, out, job)
    rows = pq.read_table(out / "clips.parquet").to_pylist()
    assert {row["source"] for row in rows} == {str(path) for path in inputs}
    assert len({row["key"] for row in rows}) == len(rows)
    clips_of = {
        path: sorted((r["start_frame"], r["end_frame"]) for r in rows if r["source"] == str(path)) for path in inputs
    }
    assert clips_of[inputs[0]] == clips_of[inputs[1]] == clips_of[inputs[3]]  # the same clips, other keys
    assert set(read_shards(out)) == {row["key"] for row in rows if row["kept"]}  # read_shards: no key twice
    assert json.loads((out / "summary.json").read_text())["counts"].get("duplicate_inputs", 0) == 0


def test_copies_of_a_shot_leave_one_clip_and_name_the_others(local_ray, tmp_path):
    """Real footage (carphone, one shot) and copies of it that no byte compare finds, beside a generated video of
    three other shots: one carphone clip is kept, every copy is rejected as its duplicate, the other shots stay."""
    frames = decode(source_path("carphone"))
    inputs = [Path(shutil.copy(source_path("carphone"), tmp_path / "carphone.mp4"))]
    for name in ("re-encoded at crf 40", "half size", "cropped by 5%", "letterboxed"):
        change, crf = COPIES[name]
        path = tmp_path / f"copy {name}.mp4"
        encoded(path, [change(frame) for frame in frames], crf)
        inputs.append(path)
    encoded(tmp_path / "trimmed.mp4", frames[FPS:])  # the same shot, a second later
    inputs += [tmp_path / "trimmed.mp4", *videos(tmp_path, 1)]
    job = config()
    job.dedup.perceptual.enabled = True
    job.dedup.keep = ["num_frames"]  # the longest copy stays: the original (the trimmed one is shorter)
    out = tmp_path / "out"
    run_curation(inputs, out, job)

    rows = pq.read_table(out / "clips.parquet").to_pylist()
    carphone = [row for row in rows if "video" not in row["source"]]
    assert len(carphone) == 6 and all(row["perceptual_hash"] for row in carphone)
    kept = [row for row in carphone if row["kept"]]
    assert [row["source"] for row in kept] == [str(inputs[0])]
    for row in carphone:
        if not row["kept"]:
            [reason] = row["reject_reasons"]
            assert reason["filter"] == "duplicate" and reason["of"] == kept[0]["key"]
            assert 0.5 <= reason["similarity"] <= 1.0
    others = [row for row in rows if "video" in row["source"]]
    assert others and all(row["kept"] for row in others)  # three distinct shots: none a copy of another
    assert set(read_shards(out)) == {row["key"] for row in rows if row["kept"]}
    summary = json.loads((out / "summary.json").read_text())["counts"]
    assert summary["rejected_by_duplicate"] == 5
    # report.html: the copies side by side, the clip that stays first; a sheet of the clips rejected as copies.
    page = (out / "report.html").read_text()
    copies = re.search(r"<section id='copies'>.*?</section>", page, re.S).group(0)
    shown = re.findall(r"<figure class='card' data-key='([^']*)'", copies)
    assert shown[0] == kept[0]["key"] and sorted(shown[1:]) == sorted(r["key"] for r in carphone if not r["kept"])
    assert "<div class='stays'>" in copies and copies.count(f"duplicate of {kept[0]['key']}") == 5
    assert "id='sheet-rejected-duplicate'" in page


def test_semantic_copies_by_the_clip_embeddings_of_a_tiny_clip(local_ray, tmp_path, clip_model):
    """With a tiny CLIP (random weights: every clip lands within 0.99 of every other, only the same picture within
    0.9999), an input copied
    byte for byte and not caught before splitting (`dedup.exact` off) gives clips whose embeddings are the same:
    each is rejected as the copy of the other input's clip; a different video's clips stay."""
    first, other = videos(tmp_path, 2)
    (tmp_path / "copy").mkdir()
    copy = Path(shutil.copy(first, tmp_path / "copy" / first.name))
    job = config()
    job.clip = job.clip.model_validate(
        {
            "model": str(clip_model["folder"]),
            "pretrained": None,
            "device": "cpu",
            "aesthetic": {"weights": str(clip_model["folder"] / "aesthetic.safetensors")},
        }
    )
    job.filter.drop_bottom_aesthetic = None  # the tiny model's aesthetic scores are noise: keep every clip to compare
    job.dedup.exact = False
    job.dedup.perceptual.enabled = False
    job.dedup.semantic.min_cosine = 0.9999  # the tiny CLIP's distinct shots measured at most 0.9995 apart
    out = tmp_path / "out"
    run_curation([first, copy, other], out, job)
    rows = pq.read_table(out / "clips.parquet").to_pylist()
    assert all(row["clip_embedding"] for row in rows) and all(row["perceptual_hash"] is None for row in rows)
    by_clip = {}
    for row in rows:
        by_clip.setdefault((Path(row["source"]).name, row["start_frame"]), []).append(row)
    for (name, _), pair in by_clip.items():
        if name == first.name:  # the clip and its copy: one stays
            assert len(pair) == 2 and sorted(row["kept"] for row in pair) == [False, True]
            kept, copied = sorted(pair, key=lambda row: not row["kept"])
            [reason] = copied["reject_reasons"]
            assert reason["filter"] == "duplicate" and reason["of"] == kept["key"] and reason["similarity"] >= 0.9999
        else:
            assert [(row["kept"], row["reject_reasons"]) for row in pair] == [(True, [])]
