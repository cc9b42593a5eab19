"""A two-node Ray cluster on 127.0.0.1 for the Ray backend's tests (marker `ray`; skipped
without the `ray` extra). With RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 a local
`ray.cluster_utils.Cluster` binds every node to loopback; without it Ray would bind the
machine's external interface, which tests must never use."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read when ray is imported: before that
pytest.importorskip("ray", reason="the Ray backend's tests need the ray extra: pip install -e '.[ray]'")

NODE_ARGS = {"num_cpus": 3, "object_store_memory": 100 * 1024 * 1024}


@dataclass
class LocalCluster:
    address: str
    node_ids: list[str]
    cluster: Any  # ray.cluster_utils.Cluster: to lose a node and add one back


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalCluster]:
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={**NODE_ARGS, "include_dashboard": False})
    session = cluster.head_node.session_name
    try:
        cluster.add_node(**NODE_ARGS)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        ray.shutdown()
        assert len(nodes) == 2
        assert cluster.address.startswith("127.0.0.1:")
        yield LocalCluster(cluster.address, nodes, cluster)
    finally:
        ray.shutdown()
        cluster.shutdown()
        left = _daemons_of(session)  # nothing of this cluster is left behind
        assert not left, left


def _daemons_of(session: str) -> set[int]:
    """This cluster's raylets and GCS server: each names the cluster's session on its command line
    (other clusters on the machine, e.g. another test run's, have sessions of their own)."""
    found = subprocess.run(
        ["pgrep", "-f", f"(raylet|gcs_server).*{session}"], capture_output=True, text=True
    ).stdout
    return {int(pid) for pid in found.split()}
