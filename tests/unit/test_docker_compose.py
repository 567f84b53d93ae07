"""Static checks of the Docker route: docker-compose.yml, the Dockerfile and .dockerignore.

No Docker engine is needed. The file is parsed with PyYAML and checked for the shape of the
design (3 KRaft nodes, registry, Connect, AKHQ, control room), the durability defaults of the
local cluster, ports bound to 127.0.0.1 only, and RTML_* variables that rtml really reads.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from rtml.cluster.node import broker_defaults
from rtml.config import ENV_VARS, Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
KAFKA_NODES = ("kafka-1", "kafka-2", "kafka-3")
SERVICES = {*KAFKA_NODES, "schema-registry", "connect", "akhq", "control-room"}
# The durability settings of the design, as broker properties; the same on every node.
DURABILITY = {
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    "unclean.leader.election.enable": "false",
    "auto.create.topics.enable": "false",
    "num.partitions": "6",
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "group.initial.rebalance.delay.ms": "0",
}


# -- helpers ----------------------------------------------------------------------------------


def kafka_env_name(prop: str) -> str:
    """The apache/kafka image's variable for broker property `prop` (. -> _, _ -> __, - -> ___)."""
    return "KAFKA_" + prop.replace("_", "__").replace("-", "___").replace(".", "_").upper()


def environment(service: dict) -> dict[str, str]:
    """A service's environment as a dict of strings, from either compose form (map or list)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {
        str(k): "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
        for k, v in env.items()
    }


def port_binding(entry: object) -> tuple[str | None, str | None, str]:
    """(host ip, host port, container port) of one `ports:` entry; host ip None if unbound."""
    if isinstance(entry, dict):
        published = entry.get("published")
        return (
            entry.get("host_ip"),
            None if published is None else str(published),
            str(entry["target"]),
        )
    spec = str(entry).split("/", 1)[0]
    if spec.startswith("["):  # [::1]:8080:8080
        ip, _, rest = spec[1:].partition("]:")
        host_port, _, container = rest.rpartition(":")
        return ip, host_port or None, container
    parts = spec.split(":")
    if len(parts) == 3:
        return parts[0], parts[1] or None, parts[2]
    if len(parts) == 2:
        return None, parts[0], parts[1]
    return None, None, parts[0]


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """NAME://host:port,... as {NAME: (host, port)}."""
    out = {}
    for item in value.split(","):
        name, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port))
    return out


def internal_bootstrap(compose: dict) -> set[str]:
    """host:port of each broker's inter-broker listener, as the containers must use it."""
    out = set()
    for name in KAFKA_NODES:
        env = environment(compose["services"][name])
        host, port = listeners(env["KAFKA_ADVERTISED_LISTENERS"])[
            env["KAFKA_INTER_BROKER_LISTENER_NAME"]
        ]
        out.add(f"{host}:{port}")
    return out


def properties(text: str) -> dict[str, str]:
    """A Java .properties text (key=value lines, # comments) as a dict."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def nodes(compose: dict) -> dict[str, dict[str, str]]:
    return {name: environment(compose["services"][name]) for name in KAFKA_NODES}


# -- the file and its services ------------------------------------------------------------------


def test_compose_parses_and_has_every_service(compose: dict) -> None:
    assert isinstance(compose, dict)
    assert set(compose["services"]) == SERVICES


def test_images_are_pinned(compose: dict) -> None:
    services = compose["services"]
    for name in (*KAFKA_NODES, "connect"):
        assert services[name]["image"] == "apache/kafka:4.1.1", name
    assert services["schema-registry"]["image"] == "apicurio/apicurio-registry:3.3.3"
    for name, service in services.items():
        if "image" in service:
            repo, _, tag = service["image"].rpartition(":")
            assert repo and tag and tag != "latest", f"{name}: pin an image version"


# -- the KRaft cluster --------------------------------------------------------------------------


def test_three_kraft_nodes_form_one_quorum(nodes: dict[str, dict[str, str]]) -> None:
    ids = {name: int(env["KAFKA_NODE_ID"]) for name, env in nodes.items()}
    assert sorted(ids.values()) == [1, 2, 3], "node ids must be distinct: 1, 2, 3"
    assert {env["KAFKA_PROCESS_ROLES"] for env in nodes.values()} == {"broker,controller"}
    cluster_ids = {env["CLUSTER_ID"] for env in nodes.values()}
    assert len(cluster_ids) == 1, f"one cluster, one CLUSTER_ID: {cluster_ids}"
    (cluster_id,) = cluster_ids
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id), "CLUSTER_ID is a base64 UUID"
    voters = {env["KAFKA_CONTROLLER_QUORUM_VOTERS"] for env in nodes.values()}
    assert len(voters) == 1, f"every node needs the same voters: {voters}"
    # Each voter is id@service:controller-port of the node with that id.
    parsed = {}
    for voter in voters.pop().split(","):
        node_id, _, address = voter.partition("@")
        host, _, port = address.rpartition(":")
        parsed[int(node_id)] = (host, int(port))
    for name, env in nodes.items():
        controller = listeners(env["KAFKA_LISTENERS"])[env["KAFKA_CONTROLLER_LISTENER_NAMES"]]
        assert parsed[ids[name]] == (name, controller[1]), name


def test_durability_defaults_on_every_node(nodes: dict[str, dict[str, str]]) -> None:
    for name, env in nodes.items():
        for prop, value in DURABILITY.items():
            var = kafka_env_name(prop)
            assert env.get(var) == value, f"{name}: {var} should be {value!r}, is {env.get(var)!r}"


def test_nodes_match_the_local_cluster_defaults(nodes: dict[str, dict[str, str]]) -> None:
    """The Docker route runs the broker defaults of `rtml cluster up` (rtml/cluster/node.py)."""
    local = broker_defaults(3)
    assert {k: local[k] for k in DURABILITY} == DURABILITY
    for name, env in nodes.items():
        for prop, value in local.items():
            assert env.get(kafka_env_name(prop)) == value, f"{name}: {prop} differs from local"


def test_listeners_internal_for_containers_external_on_loopback(
    compose: dict, nodes: dict[str, dict[str, str]]
) -> None:
    host_ports = set()
    for name, env in nodes.items():
        advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
        bound = listeners(env["KAFKA_LISTENERS"])
        internal = advertised[env["KAFKA_INTER_BROKER_LISTENER_NAME"]]
        assert internal[0] == name, f"{name}: the internal listener advertises the service name"
        external = [(n, hp) for n, hp in advertised.items() if hp[0] == "127.0.0.1"]
        assert len(external) == 1, f"{name}: one external listener on 127.0.0.1"
        listener, (_, port) = external[0]
        published = [port_binding(p) for p in compose["services"][name]["ports"]]
        # The advertised port must be the published host port, mapped to the listener's port.
        assert ("127.0.0.1", str(port), str(bound[listener][1])) in published, name
        host_ports.add(port)
        protocols = dict(
            p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
        )
        assert set(protocols) == set(bound), f"{name}: every listener needs a protocol"
    assert host_ports == {9092, 9093, 9094}


def test_node_data_lives_in_named_volumes(compose: dict, nodes: dict[str, dict[str, str]]) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, env in nodes.items():
        mounts = dict(v.split(":")[:2] for v in compose["services"][name]["volumes"])
        by_target = {target: source for source, target in mounts.items()}
        source = by_target.get(env["KAFKA_LOG_DIRS"])
        assert source in declared, f"{name}: KAFKA_LOG_DIRS must be a named volume"
        used.add(source)
    assert len(used) == 3, "each node needs its own volume"


def test_brokers_have_healthchecks_from_the_image_scripts(
    compose: dict, nodes: dict[str, dict[str, str]]
) -> None:
    for name in KAFKA_NODES:
        test = compose["services"][name]["healthcheck"]["test"]
        command = " ".join(test) if isinstance(test, list) else test
        assert "/opt/kafka/bin/" in command, name
        internal_port = listeners(nodes[name]["KAFKA_LISTENERS"])[
            nodes[name]["KAFKA_INTER_BROKER_LISTENER_NAME"]
        ][1]
        assert f":{internal_port}" in command, f"{name}: check the broker's own listener"


# -- security: nothing listens beyond loopback --------------------------------------------------


def test_every_published_port_is_bound_to_loopback(compose: dict) -> None:
    published = set()
    for name, service in compose["services"].items():
        assert service.get("network_mode") != "host", f"{name}: host networking bypasses ports"
        for entry in service.get("ports", []):
            host_ip, host_port, _ = port_binding(entry)
            assert host_ip == "127.0.0.1", f"{name}: {entry!r} must be 127.0.0.1:HOST:CONTAINER"
            published.add(host_port)
    # Brokers, registry, AKHQ, Connect, control room: the ports the docs tell people to open.
    assert published == {"9092", "9093", "9094", "8080", "8081", "8083", "8501"}


@pytest.mark.parametrize(
    ("entry", "bound"),
    [
        ("127.0.0.1:9092:9092", True),
        ("127.0.0.1:8081:8080/tcp", True),
        ({"target": 8501, "published": 8501, "host_ip": "127.0.0.1"}, True),
        ("9092:9092", False),
        ("8080", False),
        (9092, False),
        ("0.0.0.0:9092:9092", False),
        ("[::]:9092:9092", False),
        ({"target": 8501, "published": 8501}, False),
    ],
)
def test_port_check_rejects_unbound_forms(entry: object, bound: bool) -> None:
    assert (port_binding(entry)[0] == "127.0.0.1") is bound


# -- rtml settings in the compose file ----------------------------------------------------------


def test_only_known_rtml_variables(compose: dict) -> None:
    text_vars = set(re.findall(r"\bRTML_[A-Z0-9_]+", COMPOSE.read_text()))
    env_vars = {
        key
        for service in compose["services"].values()
        for key in environment(service)
        if key.startswith("RTML_")
    }
    assert env_vars, "the control room is configured through RTML_* variables"
    unknown = (text_vars | env_vars) - set(ENV_VARS)
    assert not unknown, f"not in rtml.config.ENV_VARS: {sorted(unknown)}"


def test_control_room_settings_reach_the_cluster(compose: dict) -> None:
    service = compose["services"]["control-room"]
    env = environment(service)
    servers = env["RTML_BOOTSTRAP_SERVERS"].split(",")
    assert len(servers) == 3
    assert set(servers) == internal_bootstrap(compose)
    settings = Settings.from_env(env)  # a bad value raises ConfigError here
    assert not settings.local
    assert settings.bootstrap == env["RTML_BOOTSTRAP_SERVERS"]
    assert ("127.0.0.1", str(settings.ui_port), str(settings.ui_port)) in [
        port_binding(p) for p in service["ports"]
    ]


def test_control_room_runs_the_ui_after_healthy_brokers(compose: dict) -> None:
    service = compose["services"]["control-room"]
    command = service["command"]
    assert (command.split() if isinstance(command, str) else command) == [
        "rtml",
        "ui",
        "--headless",
    ]
    assert service["build"]["context"] == "."
    depends = service["depends_on"]
    for name in KAFKA_NODES:
        assert depends[name]["condition"] == "service_healthy", name


def test_registry_url_is_apicurio_confluent_api(compose: dict) -> None:
    services = compose["services"]
    url = urlparse(environment(services["control-room"])["RTML_SCHEMA_REGISTRY_URL"])
    assert url.path.endswith("/apis/ccompat/v7")
    assert url.hostname == "schema-registry"
    registry_ports = {port_binding(p)[2] for p in services["schema-registry"]["ports"]}
    assert str(url.port) in registry_ports


def test_registry_keeps_schemas_in_the_cluster(compose: dict) -> None:
    env = environment(compose["services"]["schema-registry"])
    assert env["APICURIO_STORAGE_KIND"] == "kafkasql"
    assert set(env["APICURIO_KAFKASQL_BOOTSTRAP_SERVERS"].split(",")) == internal_bootstrap(compose)


def test_connect_is_a_distributed_worker_with_replicated_topics(compose: dict) -> None:
    service = compose["services"]["connect"]
    command = service["command"]
    assert command[0] == "/opt/kafka/bin/connect-distributed.sh"
    (mount,) = [c for c in service["configs"] if c["target"] == command[1]]
    conf = properties(compose["configs"][mount["source"]]["content"])
    assert set(conf["bootstrap.servers"].split(",")) == internal_bootstrap(compose)
    assert conf["group.id"]
    for kind in ("config", "offset", "status"):
        assert conf[f"{kind}.storage.topic"], kind
        assert conf[f"{kind}.storage.replication.factor"] == "3", kind
    port = urlparse(conf["listeners"]).port
    assert ("127.0.0.1", str(port), str(port)) in [port_binding(p) for p in service["ports"]]
    assert "connect-file" in conf["plugin.path"]


def test_akhq_sees_the_cluster_registry_and_connect(compose: dict) -> None:
    env = environment(compose["services"]["akhq"])
    connections = yaml.safe_load(env["AKHQ_CONFIGURATION"])["akhq"]["connections"]
    (conn,) = connections.values()
    assert set(conn["properties"]["bootstrap.servers"].split(",")) == internal_bootstrap(compose)
    registry = environment(compose["services"]["control-room"])["RTML_SCHEMA_REGISTRY_URL"]
    assert conn["schema-registry"]["url"] == registry
    assert [urlparse(c["url"]).hostname for c in conn["connect"]] == ["connect"]


# -- the control room image ---------------------------------------------------------------------


def test_dockerfile_builds_a_non_root_control_room() -> None:
    text = DOCKERFILE.read_text()
    instructions = [
        line.split(None, 1) for line in text.splitlines() if re.match(r"^[A-Z]+\s", line)
    ]
    first = {kind: arg.strip() for kind, arg in reversed(instructions)}
    last = {kind: arg.strip() for kind, arg in instructions}
    assert first["FROM"] == "python:3.11-slim"
    assert re.search(r"pip install \.(\s|$)", text), "install the package from pyproject.toml"
    assert last["USER"] not in {"root", "0"}, "run as a non-root user"
    assert json.loads(last["CMD"]) == ["rtml", "ui", "--headless"]


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = {
        line.strip().strip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".rtml", ".git"} <= patterns
