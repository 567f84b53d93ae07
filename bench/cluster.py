"""Throw-away clusters for benchmarks, and what a topic holds.

A benchmark starts its own local 3-node cluster (with a schema registry) on free ports
under a name of its own, so it never touches a learner's lab cluster, and stops and
deletes it whatever happens. `log_end` and `stored_bytes` tell how many records a topic
holds and how many bytes they take, to check a run and to compare clients.
"""

from __future__ import annotations

import atexit
import glob
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from confluent_kafka import Consumer, TopicPartition

from rtml.cluster import LocalCluster
from rtml.cluster.node import Node
from rtml.cluster.ports import free_base_port
from rtml.config import Settings

# Settings that point rtml at an external cluster; a throw-away cluster ignores them.
_EXTERNAL_VARS = (
    "RTML_BOOTSTRAP_SERVERS",
    "RTML_SCHEMA_REGISTRY_URL",
    "RTML_SECURITY_PROTOCOL",
    "RTML_SASL_MECHANISM",
    "RTML_SASL_USERNAME",
    "RTML_SASL_PASSWORD",
    "RTML_SSL_CA_LOCATION",
)


def throwaway_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings of a fresh local 3-node cluster on free ports, under a name of its own."""
    env = {
        k: v
        for k, v in (os.environ if environ is None else environ).items()
        if k not in _EXTERNAL_VARS
    }
    base = free_base_port()
    env.update(
        RTML_CLUSTER_NAME=f"bench-{uuid.uuid4().hex[:8]}",
        RTML_KAFKA_PORT=str(base),
        RTML_REGISTRY_PORT=str(base + 200),
        RTML_CONNECT_PORT=str(base + 300),
        RTML_NODES="3",
    )
    return Settings.from_env(env)


@contextmanager
def throwaway_cluster(log: Callable[[str], None] = print) -> Iterator[Settings]:
    """A local cluster with a schema registry that is stopped and deleted whatever happens."""
    settings = throwaway_settings()
    cluster = LocalCluster(settings, log=log)

    def stop() -> None:
        cluster.down(wipe=True)

    atexit.register(stop)
    try:
        cluster.up()
        yield settings
    finally:
        stop()
        atexit.unregister(stop)


def log_end(settings: Settings, topic: str, timeout: float = 10.0) -> int:
    """The sum of the high watermarks of `topic`'s partitions: records acknowledged so far."""
    consumer = Consumer(settings.client_config(group_id=f"bench-{uuid.uuid4().hex[:8]}"))
    try:
        parts = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1]
            for p in parts
        )
    finally:
        consumer.close()


def stored_bytes(settings: Settings, topic: str) -> int | None:
    """Bytes of `topic`'s log segments per replica, read from a local cluster's disks.

    None for an external cluster. Every replica of a partition holds the same batches, so
    the mean over a partition's replicas is what one copy of it takes.
    """
    if not settings.local:
        return None
    replicas: dict[str, list[int]] = {}
    for node_id in settings.node_ids:
        for folder in Node(settings, node_id).data_dir.glob(f"{glob.escape(topic)}-*"):
            if folder.name[len(topic) + 1 :].isdigit():  # not another topic, not a deleted one
                size = sum(f.stat().st_size for f in folder.glob("*.log"))
                replicas.setdefault(folder.name, []).append(size)
    return round(sum(sum(sizes) / len(sizes) for sizes in replicas.values()))
