"""`svd curate --address`: the job joins an existing multi-node Ray cluster and spreads its work over it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile

import pandas as pd
import psutil
import pyarrow.dataset
import pyarrow.parquet as pq
import pytest
import ray
import ray.data
from ray.cluster_utils import Cluster
from tiny_curation import CPU_STAGES, TINY, read_shards, videos

from curation.config import CurationConfig
from curation.config_io import load_config
from pipelines.curate import run_curation
from pipelines.layout import WORK_FOLDER


@pytest.fixture
def two_nodes():
    """Two Ray nodes on this machine (separate raylets, as on two hosts), 2 logical CPUs each."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_job_on_a_two_node_cluster_completes_and_uses_both(two_nodes, tmp_path):
    sources = videos(tmp_path, 4)
    # One output group per input: the shards and the parts of clips.parquet are written by four tasks.
    config = load_config(CurationConfig, TINY, [*CPU_STAGES, "ocr.enabled=false", "output.group_clips=1"])
    out = tmp_path / "out"
    result = run_curation(sources, out, config, address=two_nodes.address)
    assert not ray.is_initialized()  # the job left the cluster
    samples = read_shards(out)
    assert result.failed_inputs == 0 and result.clips == len(samples) > 0
    journal = (out / WORK_FOLDER / "inputs").glob("*.json")
    nodes = {json.loads(path.read_text())["node"] for path in journal}
    assert len(nodes) == 2, nodes
    writers = json.loads((out / "summary.json").read_text())["shard_writers"]
    assert sorted(writers) == sorted(path.name for path in (out / "shards").glob("*.tar"))
    assert set(writers.values()) == nodes  # tasks on both nodes wrote shards

    # The shards hold exactly the kept rows of clips.parquet, which the usual readers read as one table.
    table = pd.read_parquet(out / "clips.parquet")
    kept = table[table["kept"]]
    assert set(samples) == set(kept["key"])
    for key, row in kept.set_index("key").iterrows():
        record = json.loads(samples[key]["json"])
        assert record["num_frames"] == row["num_frames"] and record["source"] == row["source"]
    assert pyarrow.dataset.dataset(out / "clips.parquet", format="parquet").count_rows() == len(table)

    ray.init(address=two_nodes.address)
    assert sum(node["Alive"] for node in ray.nodes()) == 2  # the cluster kept running
    assert ray.data.read_parquet(str(out / "clips.parquet")).count() == len(table)


def ray_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ray.scripts.scripts", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def started_cluster(tmp_path_factory):
    """A head and a worker node started with `ray start`, as a user starts a cluster (loopback ports here), with
    token authentication; stopped by killing this cluster's processes only (`ray stop` would stop every Ray of
    this user on the machine). Yields (address, env: a HOME holding the token)."""
    home = tmp_path_factory.mktemp("home")
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must stay under 107 bytes
    env = {**os.environ, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_AUTH_MODE", None)
    port = free_port()
    common = ["--num-cpus", "2", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    try:
        # What a user's machine holds once any local Ray ran there (ray.init makes a token); `ray start --head`
        # then turns token authentication on.
        token = ray_cli("get-auth-token", "--generate", env=env)
        assert token.returncode == 0, token.stdout + token.stderr
        head = ray_cli("start", "--head", f"--port={port}", f"--temp-dir={temp_dir}", "--include-dashboard=false",
                       *common, env=env)  # fmt: skip
        assert head.returncode == 0, head.stdout + head.stderr
        assert "Token authentication is enabled" in head.stdout + head.stderr
        worker = ray_cli("start", f"--address=127.0.0.1:{port}", *common, env={**env, "RAY_AUTH_MODE": "token"})
        assert worker.returncode == 0, worker.stdout + worker.stderr
        yield f"127.0.0.1:{port}", env
    finally:
        for process in psutil.process_iter(["cmdline"]):
            if any(temp_dir in part or f":{port}" in part for part in process.info["cmdline"] or []):
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_svd_curate_joins_a_cluster_started_with_ray_start(started_cluster, tmp_path):
    address, env = started_cluster
    sources = videos(tmp_path, 4)
    command = [sys.executable, "-m", "svd.cli", "curate", *map(str, sources), "-c", str(TINY), "--address", address]
    command += [argument for override in [*CPU_STAGES, "output.group_clips=1"] for argument in ("--set", override)]

    # Without RAY_AUTH_MODE=token the cluster refuses the job: one line says what to set and where the token is.
    refused = subprocess.run([*command, "-o", str(tmp_path / "refused")], env=env, capture_output=True, text=True)
    assert refused.returncode == 1
    error_lines = [line for line in refused.stderr.splitlines() if line.startswith("Error")]
    assert len(error_lines) == 1 and "RAY_AUTH_MODE=token" in error_lines[0] and "~/.ray/auth_token" in error_lines[0]
    assert "Traceback" not in refused.stderr

    out = tmp_path / "out"
    done = subprocess.run(
        [*command, "-o", str(out)], env={**env, "RAY_AUTH_MODE": "token"}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert not [line for line in done.stderr.splitlines() if re.search(r"^\[.* E \d+ \d+\]|^ERROR", line)]
    samples = read_shards(out)
    assert len(samples) == pq.read_table(out / "clips.parquet").to_pandas()["kept"].sum() > 0
    writers = json.loads((out / "summary.json").read_text())["shard_writers"]
    assert len(set(writers.values())) == 2  # both nodes wrote shards
