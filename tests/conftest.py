"""Shared fixtures: a throw-away 3-node cluster for the whole session, always stopped.

Tests that need Kafka ask for `cluster_settings` (or `local_cluster` when they kill nodes).
The cluster starts on free ports under its own name, so it runs beside a learner's lab
cluster; its address is exported as RTML_* variables so subprocesses (the CLI, notebooks,
the control room) reach it too. With RTML_BOOTSTRAP_SERVERS set, that cluster is used and
nothing local starts.
"""

from __future__ import annotations

import atexit
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtml.cluster import LocalCluster, get_status
from rtml.cluster.ports import free_base_port
from rtml.config import Settings
from rtml.poll import until

FOLDER_MARKS = {"unit", "integration", "notebooks", "app", "chaos", "grading"}
# Whole folders whose tests take minutes; other long tests carry `pytest.mark.slow` themselves.
SLOW_FOLDERS = {"notebooks", "chaos"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by its folder (tests/unit -> unit, ...), so `-m` selects by kind."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        for mark in FOLDER_MARKS.intersection(parts):
            item.add_marker(getattr(pytest.mark, mark))
            if mark in SLOW_FOLDERS:
                item.add_marker(pytest.mark.slow)
    # Tests that kill nodes run last, so the others see a cluster nobody has disturbed.
    items.sort(key=lambda item: item.get_closest_marker("chaos") is not None)


@pytest.fixture(scope="session")
def cluster_settings() -> Iterator[Settings]:
    """Settings of a live cluster: a fresh local one, or the external one configured."""
    if os.environ.get("RTML_BOOTSTRAP_SERVERS"):
        yield Settings.from_env()
        return
    os.environ["RTML_CLUSTER_NAME"] = f"test-{uuid.uuid4().hex[:8]}"
    base = free_base_port(3)
    os.environ["RTML_KAFKA_PORT"] = str(base)
    os.environ["RTML_REGISTRY_PORT"] = str(base + 200)
    os.environ["RTML_CONNECT_PORT"] = str(base + 300)
    os.environ["RTML_NODES"] = "3"
    settings = Settings.from_env()
    cluster = LocalCluster(settings)

    def stop() -> None:
        cluster.down(wipe=True)

    atexit.register(stop)
    try:
        cluster.up()
        yield settings
    finally:
        stop()
        atexit.unregister(stop)


@pytest.fixture()
def free_base() -> int:
    """A base port for one more local cluster (brokers at base+i, controllers at base+100+i)."""
    return free_base_port(3)


@pytest.fixture()
def local_cluster(cluster_settings: Settings) -> Iterator[LocalCluster]:
    """The local test cluster, for tests that kill or stop nodes; whole again afterwards."""
    if not cluster_settings.local:
        pytest.skip("kills nodes, which needs the local cluster (RTML_BOOTSTRAP_SERVERS is set)")
    cluster = LocalCluster(cluster_settings)
    # Whole before (a node an earlier test or the machine left down would make this test's
    # kills mean something else) and whole again after.
    _make_whole(cluster, cluster_settings)
    yield cluster
    _make_whole(cluster, cluster_settings)


def _make_whole(cluster: LocalCluster, settings: Settings) -> None:
    """Restart every node that is not running and wait until every broker is registered."""
    for node_id in cluster.nodes:
        if not cluster.nodes[node_id].process.alive():
            cluster.restart(node_id)
    # A restarted broker registers again within a heartbeat or two; on a loaded machine the
    # controller may fence it once more first, so poll instead of asserting at once.
    until(
        lambda: get_status(settings).brokers_up == len(cluster.nodes),
        120,
        "every broker to be registered again",
        interval=1.0,
    )
