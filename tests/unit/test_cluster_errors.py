"""Clear errors from the cluster manager before anything starts."""

import base64
import socket
import uuid

import pytest

from rtml.cluster import ClusterError, LocalCluster, manager
from rtml.cluster.java import find_java
from rtml.cluster.node import Node
from rtml.config import Settings


def test_a_taken_port_names_the_port_and_the_fix(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        settings = Settings.from_env({"RTML_HOME": str(tmp_path), "RTML_KAFKA_PORT": str(port)})
        with pytest.raises(ClusterError, match=rf"Port {port} on 127\.0\.0\.1 .* RTML_KAFKA_PORT"):
            LocalCluster(settings, log=lambda _: None).up()


def test_a_missing_java_is_named(tmp_path):
    with pytest.raises(ClusterError, match=r"RTML_JAVA=.* does not run as java"):
        find_java(tmp_path / "no-java")


def test_the_pip_installed_jdk_is_found():
    java = find_java()
    assert java.major >= 17
    assert java.path.exists()


def test_node_config_has_the_durability_defaults(tmp_path):
    settings = Settings.from_env({"RTML_HOME": str(tmp_path), "RTML_KAFKA_PORT": "30000"})
    props = Node(settings, 2).properties()
    assert props["node.id"] == "2"
    assert props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"
    assert props["unclean.leader.election.enable"] == "false"
    assert props["auto.create.topics.enable"] == "false"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:30001,CONTROLLER://127.0.0.1:30101"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:30100,2@127.0.0.1:30101,3@127.0.0.1:30102"
    )


def test_cluster_ids_are_kafka_shaped_and_never_look_like_an_option(monkeypatch):
    # The first draw starts with "-" (kafka-storage would take it for an option).
    draws = iter([uuid.UUID(bytes=b"\xfb" + bytes(15)), uuid.UUID(bytes=bytes(range(16)))])
    monkeypatch.setattr(manager.uuid, "uuid4", lambda: next(draws))
    cid = manager.new_cluster_id()
    assert cid == base64.urlsafe_b64encode(bytes(range(16))).decode().rstrip("=")
    assert len(cid) == 22 and not cid.startswith("-")
