"""`svd curate` as a Ray job, end to end: shards read back with webdataset, resume after SIGKILL, config checks."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time

import av
import psutil
import pyarrow.parquet as pq
import pytest
import ray
from tiny_curation import CPU_STAGES, TINY, config, read_shards, videos

from curation import progress
from curation.config import CurationConfig
from curation.config_io import load_config
from curation.errors import ModelLoadError
from curation.record import Column
from pipelines.curate import InputError, find_inputs, run_curation
from pipelines.layout import WORK_FOLDER
from pipelines.report import write_report


@pytest.fixture(scope="module")
def local_ray():
    # Logical CPUs: enough for every actor pool of the all-stages test to be placed at once.
    ray.init(num_cpus=10, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_job_writes_shards_equal_to_the_kept_rows(local_ray, tmp_path, monkeypatch, caplog):
    sources = videos(tmp_path, 2)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"")
    output = tmp_path / "out"
    job = config()
    job.report.timelines = 1  # of the two sources split, one is drawn
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal: progress comes as log lines
    monkeypatch.setattr(progress, "LOG_EVERY_SECONDS", 0.0)  # one after every video
    caplog.set_level(logging.INFO, logger="svd.progress")
    (tmp_path / "voice.m4a").write_bytes(b"not a video by its suffix")
    skipped: list[str] = []
    inputs = find_inputs([str(tmp_path)], skipped)
    assert inputs == [str(broken), *map(str, sources)] and skipped == [str(tmp_path / "voice.m4a")]
    assert "1 file(s) skipped (not a video by suffix: voice.m4a)" in caplog.text
    result = run_curation(inputs, output, job, skipped=skipped)

    table = pq.read_table(output / "clips.parquet").to_pylist()
    kept = {row["key"]: row for row in table if row["kept"]}
    assert result.clips == len(kept) == 6 and result.failed_inputs == 1
    samples = read_shards(output)
    assert set(samples) == set(kept)
    assert sorted(path.name for path in (output / "shards").iterdir()) == ["shard-000000.tar", "shard-000001.tar"]
    for key, sample in samples.items():
        record = json.loads(sample["json"])
        # every column but the path, the filter's state and what only the run needs (perceptual hashes, embeddings)
        assert record == {k: v for k, v in kept[key].items() if Column(k).in_shard}
        assert set(kept[key]) - set(record) == {"path", "kept", "reject_reasons", "perceptual_hash", "clip_embedding"}
        with av.open(io.BytesIO(sample["mp4"])) as clip:
            assert sum(1 for _ in clip.decode(video=0)) == record["num_frames"]
        assert sample["txt"].decode() == ""  # no captioner enabled: the shipped caption is empty

    errors = [json.loads(line) for line in (output / "errors.jsonl").read_text().splitlines()]
    assert errors == [{"input": str(broken), "error": "empty file (0 bytes)"}]
    summary = json.loads((output / "summary.json").read_text())["counts"]
    assert summary["inputs"] == 3 and summary["kept"] == 6 and summary["shards"] == 2
    assert summary["skipped_files"] == 1
    assert json.loads((output / "summary.json").read_text())["skipped_files"] == skipped

    # Ray Data's figures of each operator: a row per clip through the split and filing tasks, and one for the
    # broken input, which says why it has none.
    stages = json.loads((output / "summary.json").read_text())["stages"]
    assert list(stages) == ["FromItems", "FlatMap(split_on_node)", "MapBatches(file_rows)"]
    assert stages["FromItems"]["rows_out"] == 3
    assert stages["FlatMap(split_on_node)"]["rows_out"] == stages["MapBatches(file_rows)"]["rows_out"] == len(table) + 1
    split = stages["FlatMap(split_on_node)"]
    assert split["wall_s"] > 0 and split["cpu_s"] > 0 and split["rows_per_s"] > 0
    # Progress, a line per video: videos, their clips and clips per second, each operator's rows and rate.
    lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith("curate: ")]
    clips, rows = r"\d clips \([0-9.]+ clips/s\)", r"FlatMap\(split_on_node\) \d rows \([0-9.]+ rows/s\)"
    assert [re.match(rf"curate: (\d)/3 videos, {clips}; .*{rows}", line)[1] for line in lines[:3]] == ["1", "2", "3"]
    assert re.match(r"curate: done, 3 videos in [0-9.]+ s, 6 clips .*FlatMap\(split_on_node\) 7 rows", lines[3])
    assert len((output / "sources.jsonl").read_text().splitlines()) == 2
    for _ in ("the job's page", "svd report's"):
        page = (output / "report.html").read_text()
        assert "Where the footage went: 2 sources (1 more not shown)" in page
        assert page.count("class='timeline'") == 1
        write_report(output)


def test_changed_config_is_refused_unless_restart(local_ray, tmp_path):
    sources = videos(tmp_path, 1)
    output = tmp_path / "out"
    run_curation(sources, output, config())
    with pytest.raises(InputError, match=r"another config \(differs in split.min_seconds\).*--restart"):
        run_curation(sources, output, config(min_seconds=3.5))
    result = run_curation(sources, output, config(min_seconds=3.5), restart=True)
    assert result.clips == 0  # every 3 s shot is now too short, and the old shards are gone
    assert not list((output / "shards").glob("*.tar"))


def test_resume_after_the_driver_is_killed_equals_an_uninterrupted_run(local_ray, tmp_path):
    sources = videos(tmp_path, 5)
    # Clips one by one through OCR and filing: inputs finish apart.
    overrides = [*CPU_STAGES, "output.shard_max_samples=3", "ray.ocr.batch_size=1", "output.fragment_rows=1"]
    straight = tmp_path / "straight"
    run_curation(sources, straight, load_config(CurationConfig, TINY, overrides))
    clips = pq.read_table(straight / "clips.parquet").num_rows
    # Each stage that ran is named in one of Ray Data's operators (Ray fuses some), and each had every clip.
    stages = json.loads((straight / "summary.json").read_text())["stages"]
    for worker in ("split_on_node", "motion_stage", "OcrStage", "file_rows"):
        assert sum(worker in name for name in stages) == 1, (worker, list(stages))
    rows = {name: stage["rows_out"] for name, stage in stages.items()}
    assert rows.pop("FromItems") == len(sources) and set(rows.values()) == {clips}

    resumed = tmp_path / "resumed"
    command = [sys.executable, "-m", "svd.cli", "curate", *map(str, sources), "-o", str(resumed), "-c", str(TINY)]
    command += [argument for override in overrides for argument in ("--set", override)]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = resumed / WORK_FOLDER / "inputs"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and driver.poll() is None:
        if done.is_dir() and any(done.glob("*.json")):
            break
        time.sleep(0.05)
    assert driver.poll() is None, driver.stderr.read().decode()  # it must still be running to be killed
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    finished_before = len(list(done.glob("*.json")))
    assert 1 <= finished_before < len(sources)
    clips_before = sum(json.loads(path.read_text())["clips"] for path in done.glob("*.json"))
    assert not (resumed / "summary.json").exists()

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{finished_before} of {len(sources)} inputs already done" in rerun.stderr
    # Progress and summary.json's `stages` count what this run did: the inputs left, and their clips.
    left, left_clips = len(sources) - finished_before, clips - clips_before
    assert re.search(rf"curate: done, {left} videos in [0-9.]+ s, {left_clips} clips \([0-9.]+ clips/s\)", rerun.stderr)
    stages = json.loads((resumed / "summary.json").read_text())["stages"]
    assert stages["FromItems"]["rows_out"] == left and stages["MapBatches(file_rows)"]["rows_out"] == left_clips
    assert not list((resumed / "shards").glob("*.part"))
    names = sorted(path.name for path in (straight / "shards").iterdir())
    assert sorted(path.name for path in (resumed / "shards").iterdir()) == names
    for name in names:  # byte-identical: same clips, same records, same order, each exactly once
        assert (resumed / "shards" / name).read_bytes() == (straight / "shards" / name).read_bytes()
    assert pq.read_table(resumed / "clips.parquet").equals(pq.read_table(straight / "clips.parquet"))


@pytest.mark.parametrize(
    "override, words",
    [
        ("caption.coca.model=local-dir:/no/such/coca", "caption.coca: cannot load model 'local-dir:/no/such/coca'"),
        ("ocr.model_dir=/no/such/craft", "ocr"),
    ],
)
def test_a_model_that_cannot_load_stops_the_run_before_any_work(tmp_path, override, words):
    config = load_config(CurationConfig, TINY, ["caption.enabled=true", "caption.vblip.enabled=false", override])
    with pytest.raises(ModelLoadError, match=re.escape(words)):
        run_curation(videos(tmp_path, 1), tmp_path / "out", config)
    assert not (tmp_path / "out" / "clips").exists()


def test_a_worker_killed_during_a_model_stage_is_replaced_and_the_job_completes(local_ray, tmp_path):
    """SIGKILL the OCR actor's process mid-run: Ray restarts it and retries its batch; nothing is lost."""
    sources = videos(tmp_path, 4)
    config = load_config(CurationConfig, TINY, [*CPU_STAGES, "ray.ocr.batch_size=1"])
    straight = run_curation(sources, tmp_path / "straight", config)

    outcome: dict = {}
    job = threading.Thread(target=lambda: outcome.update(result=run_curation(sources, tmp_path / "killed", config)))
    job.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and job.is_alive() and time.monotonic() < deadline:
        for process in psutil.process_iter(["pid", "cmdline"]):
            if "OcrStage" in " ".join(process.info["cmdline"] or []):
                time.sleep(1.0)  # let it take a batch first
                process.send_signal(signal.SIGKILL)
                killed = process.info["pid"]
                break
        time.sleep(0.05)
    job.join(timeout=300)
    assert killed is not None, "the OCR actor was never seen running"
    assert "result" in outcome, "the job did not complete after its OCR worker was killed"
    assert outcome["result"].clips == straight.clips
    assert set(read_shards(tmp_path / "killed")) == set(read_shards(tmp_path / "straight"))


def test_inputs_may_be_file_urls_and_unknown_schemes_are_one_line(tmp_path):
    source = videos(tmp_path, 1)[0]
    (tmp_path / "list.txt").write_text(f"# one video\n{source.as_uri()}\n")
    expected = [str(source)]
    assert find_inputs([source.as_uri(), f"file://{tmp_path}", str(tmp_path / "list.txt")]) == expected
    with pytest.raises(InputError, match=r"^nosuch://bucket/videos: .*nosuch"):
        find_inputs(["nosuch://bucket/videos"])
    with pytest.raises(InputError, match=r"missing.mp4: no such file or folder"):
        find_inputs([f"file://{tmp_path}/missing.mp4"])


def test_kept_clips_live_in_their_shards_and_the_report_needs_no_clip_file(local_ray, tmp_path):
    sources = videos(tmp_path, 3)
    job = config()
    job.motion.enabled = True
    job.filter.drop_bottom_motion = 0.5  # some clips rejected, some kept
    job.output.clip_files = "rejected"
    out = tmp_path / "out"
    run_curation(sources[:2], out, job)

    rows = pq.read_table(out / "clips.parquet").to_pylist()
    assert {row["kept"] for row in rows} == {True, False}
    for row in rows:  # a kept clip is stored once, in its shard; a rejected one stays to be looked at
        assert (out / row["path"]).is_file() is not row["kept"]
    assert set(read_shards(out)) == {row["key"] for row in rows if row["kept"]}

    # The contact sheets show the thumbnails saved while splitting: no clip file is read.
    for path in (out / "clips").glob("*.mp4"):
        path.unlink()
    write_report(out)
    page = (out / "report.html").read_text()
    assert page.count("class='card'") == page.count("data:image/jpeg;base64,") == len(rows)

    # The kept clips are gone from clips/: a finished OUT cannot take more inputs, and says so.
    with pytest.raises(InputError, match=r"holds the finished run of other inputs.*clip_files=rejected.*--restart"):
        run_curation(sources, out, job)


def test_a_finished_run_that_keeps_every_clip_file_takes_more_inputs(local_ray, tmp_path):
    sources = videos(tmp_path, 3)
    job = config()
    job.output.clip_files = "all"
    grown, straight = tmp_path / "grown", tmp_path / "straight"
    run_curation(sources[:2], grown, job)
    result = run_curation(sources, grown, job)
    assert result.clips == run_curation(sources, straight, job).clips == 9
    names = sorted(path.name for path in (straight / "shards").glob("*.tar"))
    assert sorted(path.name for path in (grown / "shards").glob("*.tar")) == names
    for name in names:
        assert (grown / "shards" / name).read_bytes() == (straight / "shards" / name).read_bytes()
    assert pq.read_table(grown / "clips.parquet").equals(pq.read_table(straight / "clips.parquet"))
