"""`svd curate --address`: the job joins an existing multi-node Ray cluster and spreads its work over it."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.dataset
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
