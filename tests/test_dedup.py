"""Copies among a run's inputs (`dedup`): the same file under other folders and names is split once, and keys stay
unique in every output whatever the inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray
from tiny_curation import config, read_shards, videos

from curation.footage import source_path
from pipelines.copies import find_copies
from pipelines.curate import run_curation
from pipelines.selection import run_here


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
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
