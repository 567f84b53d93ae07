"""Connect worker and connector configurations as pure data, and the REST client's errors."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pandas as pd
import pytest

from rtml.cli import main
from rtml.config import Settings
from rtml.connect import DEFINITIONS, ConnectClient, ConnectError, Worker
from rtml.connect.connectors import (
    apicurio_url,
    audit_file,
    audit_lines,
    audit_sink,
    definition,
    reference_source,
    write_reference_file,
)
from rtml.connect.worker import java_security, worker_properties


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"RTML_HOME": str(tmp_path), "RTML_CONNECT_PORT": "18083", **env})


def test_the_worker_listens_on_loopback_only_and_stores_state_in_kafka(tmp_path):
    props = worker_properties(settings(tmp_path, RTML_NODES="1"))
    assert props["listeners"] == "http://127.0.0.1:18083"
    assert props["rest.advertised.host.name"] == "127.0.0.1"
    assert props["group.id"] == "rtml-connect"
    assert props["bootstrap.servers"] == "127.0.0.1:9092"
    for store in ("config", "offset", "status"):
        assert props[f"{store}.storage.replication.factor"] == "1"
    assert (props["offset.storage.partitions"], props["status.storage.partitions"]) == ("6", "3")


def test_storage_topics_get_three_replicas_locally_and_the_broker_default_elsewhere(tmp_path):
    assert worker_properties(settings(tmp_path))["config.storage.replication.factor"] == "3"
    external = settings(tmp_path, RTML_BOOTSTRAP_SERVERS="broker:9092")
    assert worker_properties(external)["config.storage.replication.factor"] == "-1"


def test_sasl_credentials_reach_every_client_of_the_worker(tmp_path):
    props = worker_properties(
        settings(
            tmp_path,
            RTML_BOOTSTRAP_SERVERS="broker:9092",
            RTML_SECURITY_PROTOCOL="SASL_SSL",
            RTML_SASL_MECHANISM="SCRAM-SHA-512",
            RTML_SASL_USERNAME="me",
            RTML_SASL_PASSWORD='p"w',
            RTML_SSL_CA_LOCATION="/etc/ca.pem",
        )
    )
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="me" password="p\\"w";'
    )
    for prefix in ("", "producer.", "consumer.", "admin."):
        assert props[prefix + "security.protocol"] == "SASL_SSL"
        assert props[prefix + "sasl.jaas.config"] == jaas
        assert props[prefix + "ssl.truststore.type"] == "PEM"


def test_oauth_is_refused_with_a_sentence():
    with pytest.raises(ConnectError, match="PLAIN and SCRAM"):
        java_security({"security.protocol": "SASL_SSL", "sasl.mechanism": "OAUTHBEARER"})


def test_the_registry_url_becomes_apicurios_own_api(tmp_path):
    assert apicurio_url(settings(tmp_path)) == "http://127.0.0.1:8080/apis/registry/v2"
    other = settings(tmp_path, RTML_SCHEMA_REGISTRY_URL="https://reg.example/apis/ccompat/v7")
    assert apicurio_url(other) == "https://reg.example/apis/registry/v2"
    confluent = settings(tmp_path, RTML_SCHEMA_REGISTRY_URL="https://psrc-1.confluent.cloud")
    with pytest.raises(ConnectError, match="not an Apicurio"):
        apicurio_url(confluent)


def _transform_chain(config: dict[str, str]) -> list[tuple[str, str]]:
    aliases = config["transforms"].split(",")
    return [(alias, config[f"transforms.{alias}.type"]) for alias in aliases]


def test_the_reference_source_keys_each_line_by_its_id_and_writes_avro(tmp_path):
    s = settings(tmp_path)
    config = reference_source(s, "terminals")
    assert config["connector.class"].endswith("FileStreamSourceConnector")
    assert config["topic"] == "terminals"
    assert config["file"] == str(s.cluster_dir / "connect" / "reference" / "terminals.jsonl")
    assert config["key.converter"].endswith("StringConverter")
    assert config["value.converter"] == "io.apicurio.registry.utils.converter.AvroConverter"
    assert config["value.converter.apicurio.registry.auto-register"] == "false"
    assert config["value.converter.apicurio.registry.as-confluent"] == "true"
    chain = _transform_chain(config)
    classes = [cls.rsplit(".", 1)[-1] for _, cls in chain]
    # The router parses the JSON; only then can the id move into the key.
    assert (
        classes.index("EventRouter")
        < classes.index("ValueToKey")
        < classes.index("ExtractField$Key")
    )
    assert config["transforms.key.fields"] == "terminal_id"
    assert config["transforms.keyId.field"] == "terminal_id"


def test_the_audit_sink_writes_under_the_cluster_and_renders_timestamps(tmp_path):
    s = settings(tmp_path)
    config = audit_sink(s, "predictions")
    assert config["topics"] == "predictions"
    assert config["file"] == str(s.cluster_dir / "connect" / "audit" / "predictions.log")
    converted = {config[f"transforms.{alias}.field"] for alias, _ in _transform_chain(config)}
    assert converted == {"tx_datetime", "appended_time", "feature_time", "predicted_time"}
    assert _transform_chain(audit_sink(s, "transactions")) == [
        ("iso_tx_datetime", "org.apache.kafka.connect.transforms.TimestampConverter$Value")
    ]


def test_only_defined_connectors_can_be_created():
    assert set(DEFINITIONS) == {
        "customers-source",
        "terminals-source",
        "transactions-audit",
        "predictions-audit",
    }
    with pytest.raises(ConnectError, match="customers-source, terminals-source"):
        definition("anything-else")


def test_the_cli_refuses_an_unknown_definition(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RTML_HOME", str(tmp_path))
    assert main(["connect", "create", "my-own-json"]) == 2
    assert "no connector definition 'my-own-json'" in capsys.readouterr().err


def test_reference_files_hold_the_schema_fields_in_order_at_full_precision(tmp_path):
    frame = pd.DataFrame({"y": [0.1 + 0.2], "terminal_id": [7], "x": [1 / 3], "extra": ["dropped"]})
    path = tmp_path / "terminals.jsonl"
    assert write_reference_file(frame, "terminals", path) == 1
    line = path.read_text().splitlines()[0]
    assert list(json.loads(line)) == ["terminal_id", "x", "y"]
    assert json.loads(line) == {"terminal_id": 7, "x": 1 / 3, "y": 0.1 + 0.2}


def test_a_reference_frame_without_an_id_is_refused(tmp_path):
    with pytest.raises(ConnectError, match="terminal_id"):
        write_reference_file(pd.DataFrame({"x": [1.0], "y": [2.0]}), "terminals", tmp_path / "t")


def test_rest_errors_carry_the_workers_message():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400, json={"error_code": 400, "message": "Connector configuration is invalid"}
        )

    client = ConnectClient("http://connect", transport=httpx.MockTransport(handler))
    with pytest.raises(ConnectError, match=r"\(400\): Connector configuration is invalid"):
        client.create("x", {})


def test_a_refusal_keeps_its_http_status():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"message": "No status found for connector x"})

    client = ConnectClient("http://connect", transport=httpx.MockTransport(handler))
    with pytest.raises(ConnectError, match="No status found") as refused:
        client.status("x")
    assert refused.value.status_code == 404


def test_a_rebalance_is_waited_out():
    answers = iter([409, 409, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(answers), json=["a"])

    client = ConnectClient("http://connect", transport=httpx.MockTransport(handler))
    assert client.connectors() == ["a"]


def test_no_worker_is_one_sentence_naming_the_fix():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    client = ConnectClient("http://127.0.0.1:1", transport=httpx.MockTransport(handler))
    with pytest.raises(ConnectError, match="rtml connect up"):
        client.connectors()


def test_a_taken_port_stops_the_worker_before_any_jvm_starts(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        worker = Worker(settings(tmp_path, RTML_CONNECT_PORT=str(port)), log=lambda _m: None)
        with pytest.raises(ConnectError, match="RTML_CONNECT_PORT"):
            worker.up(timeout=5)
    assert not worker.process.alive()


def test_stop_reset_and_create_stopped_use_the_kip_875_and_kip_980_endpoints():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.raw_path.decode(), request.content))
        if request.url.path.endswith("/offsets") and request.method == "GET":
            return httpx.Response(200, json={"offsets": [{"offset": {"position": 7}}]})
        return httpx.Response(200 if request.method == "POST" else 202, json={})

    client = ConnectClient("http://connect", transport=httpx.MockTransport(handler))
    client.create_stopped("a b", {"k": "v"})
    client.stop("a b")
    client.reset_offsets("a b")
    assert client.offsets("a b") == [{"offset": {"position": 7}}]
    assert [(m, path) for m, path, _ in seen] == [
        ("POST", "/connectors"),
        ("PUT", "/connectors/a%20b/stop"),
        ("DELETE", "/connectors/a%20b/offsets"),
        ("GET", "/connectors/a%20b/offsets"),
    ]
    body = json.loads(seen[0][2])
    assert body == {"name": "a b", "config": {"k": "v"}, "initial_state": "STOPPED"}


def test_audit_lines_counts_what_the_sink_wrote(tmp_path):
    s = settings(tmp_path)
    assert audit_lines(s, "transactions") == 0  # no file before the sink's first flush
    path = audit_file(s, "transactions")
    path.parent.mkdir(parents=True)
    path.write_text("Struct{transaction_id=1}\n" * 3)
    assert audit_lines(s, "transactions") == 3
