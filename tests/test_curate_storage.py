"""`svd curate` with INPUT and OUT behind URLs: the code path for non-local filesystems, run for real.

An FTP server (pyftpdlib, in this process) stands for remote storage: fsspec reaches it over TCP from the
driver and from every Ray worker, so nothing may assume that a source or an output is a local file. The
run is compared with the same run on a local OUT given as a file:// URL.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import ThreadedFTPServer
from tiny_curation import config, read_shards, videos

from pipelines.curate import find_inputs, run_curation
from pipelines.layout import WORK_FOLDER
from pipelines.report import write_report

PASSWORD = "s3cret-pw"


@pytest.fixture(scope="module")
def ftp(tmp_path_factory):
    """(the served folder, the server's base URL with credentials)."""
    root = tmp_path_factory.mktemp("ftp-root")
    authorizer = DummyAuthorizer()
    authorizer.add_user("curator", PASSWORD, str(root), perm="elradfmwMT")
    handler = type("Handler", (FTPHandler,), {"authorizer": authorizer})
    logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
    server = ThreadedFTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.2}, daemon=True)
    thread.start()
    yield root, f"ftp://curator:{PASSWORD}@127.0.0.1:{server.socket.getsockname()[1]}"
    server.close_all()


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_remote_inputs_and_output_give_the_local_result(ftp, local_ray, tmp_path):
    root, base = ftp
    (root / "videos").mkdir()
    sources = videos(root / "videos", 2)
    (root / "videos" / "broken.mp4").write_bytes(b"not a video at all")
    job = config()
    job.motion.enabled = True  # decodes the clip files back from OUT: on FTP, through a local copy
    job.output.clip_files = "rejected"  # the kept ones are removed from the remote OUT once in their shards

    remote_sources = find_inputs([f"{base}/videos"])
    assert remote_sources == [f"{base}/videos/{name}" for name in ("broken.mp4", "video 0.mp4", "video 1.mp4")]
    remote = run_curation(remote_sources, f"{base}/runs/out", job)
    local = run_curation([str(source) for source in sources], f"file://{tmp_path}/out", job)

    out = root / "runs" / "out"
    assert remote.clips == local.clips > 0
    assert remote.failed_inputs == 1
    assert not list(out.rglob("*.part")), "a half-written file was left on the remote OUT"
    # Keys name the input (its location), so the two runs' clips are matched by source file name and range.
    remote_rows = pq.read_table(out / "clips.parquet").to_pylist()
    local_rows = pq.read_table(tmp_path / "out" / "clips.parquet").to_pylist()

    def clip_of(row: dict) -> tuple:
        return row["source"].rsplit("/", 1)[-1], row["start_frame"], row["end_frame"]

    local_by_clip = {clip_of(row): row for row in local_rows}
    assert sorted(map(clip_of, remote_rows)) == sorted(local_by_clip)
    remote_samples, local_samples = read_shards(out), read_shards(tmp_path / "out")
    for row in remote_rows:
        local_row = local_by_clip[clip_of(row)]
        assert row["source"].startswith("ftp://127.0.0.1:") and row["source"].endswith(".mp4")
        assert row["motion_score"] == pytest.approx(local_row["motion_score"])
        assert (out / row["path"]).is_file() is not row["kept"]
        assert (row["key"] in remote_samples) is row["kept"] is (local_row["key"] in local_samples)
        if row["kept"]:
            assert remote_samples[row["key"]]["mp4"] == local_samples[local_row["key"]]["mp4"]
            assert remote_samples[row["key"]]["txt"] == local_samples[local_row["key"]]["txt"]
    errors = (out / "errors.jsonl").read_text()
    assert "broken.mp4" in errors
    for path in out.rglob("*"):  # a password in the URL never reaches the outputs
        if path.is_file() and path.suffix in (".json", ".jsonl", ".parquet", ".tar", ".yaml"):
            assert PASSWORD.encode() not in path.read_bytes(), path

    # The job wrote the report into the remote OUT, and `svd report` rebuilds it there.
    assert "data:image/jpeg;base64," in (out / "report.html").read_text()
    (out / "report.html").unlink()
    summary = write_report(f"{base}/runs/out", overrides=["filter.min_motion=1000"])
    assert summary.kept == remote.clips and summary.kept_with_overrides == 0
    assert PASSWORD not in summary.path and (out / "report.html").is_file()

    # The same command again resumes: nothing is redone, and the shards come out byte for byte the same.
    shards_before = {path.name: path.read_bytes() for path in (out / "shards").glob("*.tar")}
    journal = sorted((out / WORK_FOLDER / "inputs").iterdir())
    again = run_curation(remote_sources, f"{base}/runs/out", job)
    assert again.clips == remote.clips
    assert {path.name: path.read_bytes() for path in (out / "shards").glob("*.tar")} == shards_before
    assert sorted((out / WORK_FOLDER / "inputs").iterdir()) == journal


def test_a_missing_remote_source_is_an_error_row(ftp, local_ray, tmp_path):
    _, base = ftp
    result = run_curation([f"{base}/videos/nowhere.mp4"], tmp_path / "out", config())
    assert result.failed_inputs == 1
    errors = (tmp_path / "out" / "errors.jsonl").read_text()
    assert "nowhere.mp4" in errors and PASSWORD not in errors
    assert Path(tmp_path / "out" / "summary.json").is_file()
