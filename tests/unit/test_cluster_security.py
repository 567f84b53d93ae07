"""The secure profile's pure parts: principals and ACLs from the access table, passwords,
broker properties, how Settings learns its login, and the generated docs table."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from rtml.cluster import security
from rtml.cluster.node import Node
from rtml.cluster.registry import JOURNAL_TOPICS
from rtml.config import LOCAL_ADMIN, Settings
from rtml.errors import ConfigError
from rtml.services.catalogue import NAMES
from rtml.topics import CATALOGUE

ROOT = Path(__file__).resolve().parents[2]


def _allowed(principal: str) -> set[tuple[ResourceType, str, ResourcePatternType, AclOperation]]:
    return {
        (b.restype, b.name, b.resource_pattern_type, b.operation)
        for b in security.acl_bindings(security.access(principal))
    }


def test_every_lab_service_has_a_principal_of_its_own():
    assert set(NAMES) <= {a.principal for a in security.ACCESS}
    assert len(set(security.PRINCIPALS)) == len(security.PRINCIPALS)
    assert LOCAL_ADMIN in security.PRINCIPALS


def test_every_topic_granted_is_in_the_catalogue_or_the_registry_journal():
    known = {t.name for t in CATALOGUE} | set(JOURNAL_TOPICS)
    for a in security.ACCESS:
        assert set(a.reads) | set(a.writes) <= known, a.principal


def test_the_table_agrees_with_the_services_own_names():
    from rtml.cards import decisions, notifications, projection, requests, service
    from rtml.dlq import dlq_topic
    from rtml.features import app
    from rtml.model.update import TOPIC as MODELS
    from rtml.serve import models
    from rtml.serve import service as serve
    from rtml.simulate.producer import TOPICS

    expected = {
        "serve": (
            {serve.FEATURES, MODELS},
            {serve.PREDICTIONS, dlq_topic(models.STAGE)},
            serve.GROUP,
        ),
        "cards": (
            # Besides its stage inputs it reads its own events back (`read_events`).
            {service.COMMANDS, requests.QUERIES, service.EVENTS},
            {service.EVENTS, requests.REPLIES, dlq_topic(service.STAGE)},
            service.GROUP,
        ),
        "decisions": (
            {decisions.PREDICTIONS},
            {service.COMMANDS, dlq_topic(decisions.STAGE)},
            decisions.GROUP,
        ),
        "notifications": (
            {service.EVENTS},
            {notifications.NOTIFICATIONS, dlq_topic(notifications.STAGE)},
            notifications.GROUP,
        ),
        "projections": ({projection.TOPIC}, {dlq_topic(projection.STAGE)}, projection.GROUP),
        "simulator": (set(), set(TOPICS), None),
    }
    for principal, (reads, writes, group) in expected.items():
        a = security.access(principal)
        assert (set(a.reads), set(a.writes), a.group) == (reads, writes, group), principal
    features = security.access("features")
    assert features.group == app.GROUP
    assert {app.LABELLED, dlq_topic(app.STAGE)} <= set(features.writes)


def test_the_prediction_service_may_write_predictions_and_nothing_of_the_cards():
    allowed = _allowed("serve")
    literal = ResourcePatternType.LITERAL
    assert (ResourceType.TOPIC, "predictions", literal, AclOperation.WRITE) in allowed
    assert (ResourceType.TOPIC, "features", literal, AclOperation.READ) in allowed
    assert (ResourceType.TOPIC, "features", literal, AclOperation.WRITE) not in allowed
    assert not {b for b in allowed if b[1].startswith("card")}
    prefixed = ResourcePatternType.PREFIXED
    assert (ResourceType.GROUP, "rtml-serve", prefixed, AclOperation.READ) in allowed
    assert (ResourceType.TRANSACTIONAL_ID, "rtml-serve", prefixed, AclOperation.WRITE) in allowed
    # Nothing cluster-wide, nothing that deletes or alters.
    assert {b[3] for b in allowed} <= {
        AclOperation.READ,
        AclOperation.WRITE,
        AclOperation.DESCRIBE_CONFIGS,
    }


def test_only_the_feature_app_creates_topics_and_only_its_own():
    for a in security.ACCESS:
        creates = {b[1] for b in _allowed(a.principal) if b[3] == AclOperation.ALL}
        assert creates == set(a.owns)
        assert all(prefix.endswith(f"__{a.group}") for prefix in a.owns)
    assert security.access("features").owns


def test_an_unknown_principal_is_one_sentence():
    with pytest.raises(security.ClusterError) as info:
        security.access("nobody")
    assert "no principal 'nobody'" in str(info.value) and "serve" in str(info.value)


def test_passwords_are_private_stable_and_distinct(tmp_path):
    settings = Settings(home=tmp_path, cluster_name="s")
    first = security.ensure_credentials(settings)
    path = settings.credentials_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert set(first) == set(security.PRINCIPALS)
    assert len(set(first.values())) == len(first)
    assert all(len(p) >= 32 for p in first.values())
    assert security.ensure_credentials(settings) == first
    tools = security.client_properties_file(settings)
    assert stat.S_IMODE(tools.stat().st_mode) == 0o600
    assert f'username="admin" password="{first["admin"]}"' in tools.read_text()


def test_a_secure_node_listens_with_sasl_only_on_loopback(tmp_path):
    plain = Settings(home=tmp_path, cluster_name="s", kafka_port=19092)
    security.ensure_credentials(plain)
    props = Node(plain.as_principal(), 2).properties()
    assert props["listeners"] == ("SASL_PLAINTEXT://127.0.0.1:19093,CONTROLLER://127.0.0.1:19193")
    assert "PLAINTEXT:PLAINTEXT" not in props["listener.security.protocol.map"]
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["super.users"] == "User:admin"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    # The plain profile is untouched.
    assert Node(plain, 2).properties()["listeners"].startswith("PLAINTEXT://127.0.0.1:19093")


def test_the_secure_config_file_is_private(tmp_path):
    settings = Settings(home=tmp_path, cluster_name="s")
    security.ensure_credentials(settings)
    node = Node(settings.as_principal(), 1)
    node.write_config()
    assert stat.S_IMODE(node.config_file.stat().st_mode) == 0o600


def test_format_adds_only_the_admin_and_the_registry_logs_in_as_itself():
    passwords = {"admin": "a" * 32, "registry": "r" * 32}
    assert security.format_args(passwords) == [
        "--add-scram",
        f"SCRAM-SHA-512=[name=admin,password={'a' * 32}]",
    ]
    text = security.registry_properties(passwords["registry"])
    assert f'username="registry" password="{"r" * 32}"' in text
    assert "a" * 32 not in text


def test_settings_log_in_as_admin_when_the_local_cluster_is_secure(tmp_path):
    env = {"RTML_HOME": str(tmp_path), "RTML_CLUSTER_NAME": "s"}
    assert Settings.from_env(env).security == {}  # plain by default
    passwords = security.ensure_credentials(Settings.from_env(env))
    admin = Settings.from_env(env)
    assert admin.local_secure
    assert admin.client_config()["sasl.username"] == "admin"
    assert admin.client_config()["sasl.password"] == passwords["admin"]
    assert admin.client_config()["security.protocol"] == "SASL_PLAINTEXT"
    serve = Settings.from_env({**env, "RTML_SASL_USERNAME": "serve"})
    assert serve.client_config()["sasl.password"] == passwords["serve"]


def test_a_child_process_gets_the_principal_but_never_the_password(tmp_path):
    env = {"RTML_HOME": str(tmp_path), "RTML_CLUSTER_NAME": "s"}
    passwords = security.ensure_credentials(Settings.from_env(env))
    settings = Settings.from_env(env)
    child = {**settings.to_env(), **security.service_env(settings, "serve")}
    assert child["RTML_SASL_USERNAME"] == "serve"
    assert not set(passwords.values()) & set(child.values())
    assert "RTML_SASL_PASSWORD" not in child
    assert Settings.from_env(child).client_config()["sasl.username"] == "serve"
    assert Settings.from_env(settings.to_env()) == settings
    assert security.service_env(Settings(home=tmp_path, cluster_name="plain"), "serve") == {}


def test_an_unknown_principal_in_the_environment_fails_with_one_sentence(tmp_path):
    env = {"RTML_HOME": str(tmp_path), "RTML_CLUSTER_NAME": "s"}
    security.ensure_credentials(Settings.from_env(env))
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**env, "RTML_SASL_USERNAME": "mallory"})
    assert "RTML_SASL_USERNAME='mallory'" in str(info.value)
    assert "\n" not in str(info.value)


def test_an_external_cluster_ignores_local_credentials(tmp_path):
    env = {"RTML_HOME": str(tmp_path), "RTML_CLUSTER_NAME": "s"}
    security.ensure_credentials(Settings.from_env(env))
    external = Settings.from_env({**env, "RTML_BOOTSTRAP_SERVERS": "b1.example.com:9092"})
    assert external.security == {} and not external.local_secure


def test_the_docs_table_is_generated_from_the_access_table():
    assert security.markdown_table() in (ROOT / "docs" / "external-clusters.md").read_text(), (
        "docs/external-clusters.md is stale: paste `rtml cluster acls` into it"
    )


def test_the_credentials_file_is_json_of_principals(tmp_path):
    settings = Settings(home=tmp_path, cluster_name="s")
    security.ensure_credentials(settings)
    assert set(json.loads(settings.credentials_file.read_text())) == set(security.PRINCIPALS)
