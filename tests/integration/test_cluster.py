"""The live test cluster: status, Kafka's own tools, and clear failures."""

import os
import subprocess
import sys

import pytest

from rtml.cluster import ClusterError, LocalCluster, get_status
from rtml.cluster.manager import PROBE_TOPIC
from rtml.config import Settings


def rtml(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rtml", *args], capture_output=True, text=True, timeout=120
    )


def test_status_shows_every_broker_and_the_probe_topic(cluster_settings):
    status = get_status(cluster_settings)
    assert status.reachable
    assert status.brokers_up == 3
    assert status.controller in {1, 2, 3}
    probe = [p for p in status.partitions if p.topic == PROBE_TOPIC]
    assert probe and all(len(p.replicas) == 3 and len(p.isr) == 3 for p in probe)
    assert status.under_replicated == 0 and status.offline == 0


def test_cli_status_reports_controller_and_isr(cluster_settings):
    out = rtml("cluster", "status")
    assert out.returncode == 0, out.stderr
    assert "brokers: 3 of 3 up" in out.stdout
    assert "controller: node" in out.stdout
    assert PROBE_TOPIC in out.stdout and "0 under-replicated" in out.stdout
    if cluster_settings.local:
        assert f"schema registry: {cluster_settings.registry_url} UP" in out.stdout


def test_kafkas_topic_tool_describes_the_probe_topic(cluster_settings):
    out = rtml("kafka", "topics", "--describe", "--topic", PROBE_TOPIC)
    assert out.returncode == 0, out.stderr
    assert "ReplicationFactor: 3" in out.stdout
    assert "min.insync.replicas=2" in out.stdout


def test_cluster_wide_defaults_are_in_force(cluster_settings):
    out = rtml(
        "kafka", "configs", "--describe", "--entity-type", "brokers", "--entity-name", "1", "--all"
    )
    assert out.returncode == 0, out.stderr
    for setting in (
        "default.replication.factor=3",
        "min.insync.replicas=2",
        "unclean.leader.election.enable=false",
        "auto.create.topics.enable=false",
    ):
        assert setting in out.stdout


def test_a_node_that_cannot_start_shows_its_log(cluster_settings, free_base, tmp_path):
    """A JVM that dies at start-up is reported with the last lines of its log."""
    if not cluster_settings.local:
        pytest.skip("starts a local node")
    env = {k: v for k, v in os.environ.items() if k.startswith("RTML_")}
    env.update(
        {
            "RTML_CLUSTER_NAME": "broken",
            "RTML_HOME": str(tmp_path),
            "RTML_KAFKA_PORT": str(free_base),
            "RTML_KAFKA_HEAP": "99999g",
        }
    )
    cluster = LocalCluster(Settings.from_env(env), log=lambda _: None)
    # Reuse the session's jar cache so this test does not run Maven again.
    cluster._jars = LocalCluster(cluster_settings).jars
    try:
        with pytest.raises(ClusterError, match=r"Node \d exited .* log ends with") as info:
            cluster.up(timeout=60)
        assert "heap" in str(info.value).lower() or "memory" in str(info.value).lower()
    finally:
        cluster.down(wipe=True)
