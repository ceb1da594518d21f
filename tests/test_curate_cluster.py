"""`svd curate --address`: the job joins an existing multi-node Ray cluster and spreads its work over it."""

from __future__ import annotations

import json

import pytest
import ray
from ray.cluster_utils import Cluster
from tiny_curation import TINY, read_shards, videos

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
    config = load_config(CurationConfig, TINY, ["ocr.enabled=false"])
    result = run_curation(sources, tmp_path / "out", config, address=two_nodes.address)
    assert result.failed_inputs == 0 and result.clips == len(read_shards(tmp_path / "out")) > 0
    journal = (tmp_path / "out" / WORK_FOLDER / "inputs").glob("*.json")
    nodes = {json.loads(path.read_text())["node"] for path in journal}
    assert len(nodes) == 2, nodes
    assert not ray.is_initialized()  # the job left the cluster...
    ray.init(address=two_nodes.address)
    assert sum(node["Alive"] for node in ray.nodes()) == 2  # ...and the cluster kept running
