"""One job at a time in OUT and RUN_DIR: a live holder (another real process) is named in one line, a stale lock
(a dead process, or a silent one on another host) is taken over with a line saying so."""

import json
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from fsspec.implementations.local import LocalFileSystem

from curation.run_lock import LOCK_FILE, STALE_SECONDS, FolderLocked, run_lock
from svd.cli import cli

CONFIGS = Path(__file__).parents[1] / "configs"
HOLD = """
import sys, time
from fsspec.implementations.local import LocalFileSystem
from curation.run_lock import run_lock
with run_lock(LocalFileSystem(), sys.argv[1], "OUT"):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """A second process holding tmp_path/held for as long as the test runs."""
    folder = tmp_path / "held"
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "held"
        yield folder, process
    finally:
        process.kill()
        process.wait()


def test_a_folder_held_by_a_live_job_is_refused_naming_it(holder):
    folder, process = holder
    with pytest.raises(FolderLocked) as refused:
        with run_lock(LocalFileSystem(), str(folder), "OUT"):
            pass
    message = str(refused.value)
    assert "\n" not in message and f"pid {process.pid}" in message and socket.gethostname() in message
    assert "started 20" in message  # the start time, ISO 8601
    assert (folder / LOCK_FILE).is_file()  # the holder's lock is left alone


def test_a_lock_left_by_a_dead_process_is_taken_over_and_released(tmp_path, caplog):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = tmp_path / LOCK_FILE
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout), "started": "then"}))
    caplog.set_level(logging.WARNING, logger="curation.run_lock")
    with run_lock(LocalFileSystem(), str(tmp_path), "OUT") as record:
        assert json.loads(lock.read_text())["token"] == record["token"]
    assert f"taking over the stale lock of {lock}" in caplog.text and "no longer running" in caplog.text
    assert not lock.exists()


@pytest.mark.parametrize(("silent_for", "taken"), [(STALE_SECONDS + 60, True), (5, False)])
def test_another_hosts_lock_is_stale_once_it_stops_beating(tmp_path, silent_for, taken):
    lock = tmp_path / LOCK_FILE
    other = {"host": "elsewhere", "pid": 1, "started": "then", "heartbeat": time.time() - silent_for}
    lock.write_text(json.dumps(other))
    if taken:
        with run_lock(LocalFileSystem(), str(tmp_path), "OUT"):
            pass
        assert not lock.exists()
    else:
        with pytest.raises(FolderLocked, match="host elsewhere, pid 1"):
            with run_lock(LocalFileSystem(), str(tmp_path), "OUT"):
                pass


def test_svd_curate_and_svd_train_refuse_a_folder_in_use_in_one_line(holder, tmp_path):
    folder, process = holder
    video = tmp_path / "sample.mp4"
    assert CliRunner().invoke(cli, ["sample-video", str(video)]).exit_code == 0
    for args in (
        ["curate", str(video), "-o", str(folder), "-c", str(CONFIGS / "curation" / "tiny.yaml")],
        ["train", "-c", str(CONFIGS / "train" / "tiny.yaml"), "-o", str(folder), "--set", f"data.shards={video}"],
    ):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert f"is in use by another job (host {socket.gethostname()}, pid {process.pid}" in result.output
        assert "Traceback" not in result.output and result.output.count("\n") == 1
