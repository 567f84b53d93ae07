"""`rtml cluster up --secure` on a second, throw-away local cluster: logins and ACLs hold.

The cluster runs beside the session's plain test cluster, on its own free ports, under its
own RTML_HOME (sharing only the jar cache) and name, and is always stopped and wiped.
"""

from __future__ import annotations

import json
import os
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from rtml.clients import create_missing_topics
from rtml.cluster import LocalCluster, get_status
from rtml.cluster.registry import Registry
from rtml.config import Settings
from rtml.poll import until
from rtml.topics import spec

TOPICS = ("predictions", "card-events")


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, dict]]:
    """A secure 3-node cluster with its registry; yields it and the environment that reaches it."""
    from rtml.cluster.ports import free_base_port

    home = tmp_path_factory.mktemp("secure") / "home"
    home.mkdir()
    shared = Settings.from_env().jar_cache  # fetched once for every cluster
    shared.mkdir(parents=True, exist_ok=True)
    (home / "jars").symlink_to(shared, target_is_directory=True)
    base = free_base_port(3)
    env = {
        "RTML_HOME": str(home),
        "RTML_CLUSTER_NAME": f"secure-{uuid.uuid4().hex[:8]}",
        "RTML_KAFKA_PORT": str(base),
        "RTML_REGISTRY_PORT": str(base + 200),
        "RTML_CONNECT_PORT": str(base + 300),
        "RTML_NODES": "3",
        **({"RTML_JAVA": os.environ["RTML_JAVA"]} if os.environ.get("RTML_JAVA") else {}),
    }
    cluster = LocalCluster(Settings.from_env(env))
    try:
        cluster.up(timeout=240, secure=True)  # a loaded machine starts JVMs slowly
        admin_settings = Settings.from_env(env)
        create_missing_topics(
            admin_settings,
            [NewTopic(name, 6, 3, config=spec(name).configs) for name in TOPICS],
        )
        yield cluster, env
    finally:
        cluster.down(wipe=True)


def _refused(conf: dict) -> tuple[KafkaError, list[KafkaError], float]:
    """Ask for metadata with `conf`: the error raised, the errors reported, the seconds taken."""
    seen: list[KafkaError] = []
    client = AdminClient({**conf, "socket.timeout.ms": 3000, "error_cb": seen.append})
    started = time.monotonic()
    with pytest.raises(KafkaException) as info:
        client.list_topics(timeout=5)
    took = time.monotonic() - started
    client.poll(1)  # serves the error callbacks
    return info.value.args[0], seen, took


def _write(settings: Settings, topic: str) -> str:
    """Write one record with acks=all: "stored", or the name of the error that refused it."""
    producer = Producer(
        settings.client_config(acks="all", enable_idempotence=True, message_timeout_ms=15000)
    )
    result: list[KafkaError | None] = []
    producer.produce(topic, b"secure-test", on_delivery=lambda err, _msg: result.append(err))
    if producer.flush(30):
        return "no delivery report within 30 s"
    return "stored" if result[0] is None else result[0].name()


def test_an_unauthenticated_client_is_refused_at_once(secure):
    cluster, _env = secure
    error, _seen, took = _refused({"bootstrap.servers": cluster.settings.bootstrap})
    # The broker hangs up on a client that does not start with a SASL handshake.
    assert error.code() == KafkaError._TRANSPORT
    assert took < 10
    logs = "".join(node.log_file.read_text() for node in cluster.nodes.values())
    assert "Unexpected Kafka request of type METADATA during SASL handshake" in logs


def test_a_wrong_password_is_refused(secure):
    cluster, _env = secure
    conf = {**cluster.settings.client_config(), "sasl.username": "serve", "sasl.password": "wrong"}
    error, seen, took = _refused(conf)
    assert error.code() == KafkaError._TRANSPORT and took < 10
    refused = [e for e in seen if e.code() == KafkaError._AUTHENTICATION]
    assert refused, seen
    assert "invalid credentials" in refused[0].str()


def test_the_prediction_service_writes_predictions_but_not_card_events(secure):
    _cluster, env = secure
    serve = Settings.from_env({**env, "RTML_SASL_USERNAME": "serve"})
    assert serve.client_config()["sasl.username"] == "serve"
    # A new login reaches every broker's metadata within moments; poll rather than assume.
    until(lambda: _write(serve, "predictions") == "stored", 60, "serve to write predictions")
    assert _write(serve, "card-events") == "TOPIC_AUTHORIZATION_FAILED"
    # It sees only the topics its ACLs name.
    visible = AdminClient(serve.client_config()).list_topics(timeout=10).topics
    assert "predictions" in visible and "card-events" not in visible


def test_the_admin_writes_both(secure):
    _cluster, env = secure
    admin = Settings.from_env(env)  # no login given: the cluster's credentials file says admin
    assert admin.client_config()["sasl.username"] == "admin"
    assert _write(admin, "predictions") == "stored"
    assert _write(admin, "card-events") == "stored"


def test_the_cluster_remembers_it_is_secure_and_its_secrets_are_private(secure):
    cluster, env = secure
    settings = Settings.from_env(env)
    status = get_status(settings)
    assert status.reachable and status.brokers_up == 3
    files = [
        settings.credentials_file,
        cluster.nodes[1].config_file,
        cluster.settings.cluster_dir / "registry" / "config" / "application.properties",
    ]
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    passwords = json.loads(settings.credentials_file.read_text())
    assert passwords["admin"] not in json.dumps(settings.to_env())


def test_the_registry_runs_as_its_own_principal(secure):
    cluster, _env = secure
    assert Registry(cluster.settings).status().up
    config = cluster.settings.cluster_dir / "registry" / "config" / "application.properties"
    assert 'username="registry"' in Path(config).read_text()
