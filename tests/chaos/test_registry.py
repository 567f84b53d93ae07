"""The schema registry keeps its schemas in Kafka: they survive a crash of the registry."""

import signal

from rtml.cluster.registry import SENTINEL, Registry
from rtml.schemas import register_all, registry_client


def test_schemas_survive_a_registry_crash(local_cluster, cluster_settings):
    ids = register_all(cluster_settings)
    registry = Registry(cluster_settings, log=lambda _: None)
    assert registry.process.signal(signal.SIGKILL)
    assert registry.process.wait_gone(10)
    assert not registry.status().up

    registry.up()  # waits until the journal is replayed (the sentinel is visible again)
    client = registry_client(cluster_settings)
    subjects = set(client.get_subjects())
    assert set(ids) | {SENTINEL} <= subjects
    for name, schema_id in ids.items():
        assert client.get_latest_version(name).schema_id == schema_id
