"""Settings: every bad RTML_* value fails at once with one sentence naming the variable."""

import inspect
import re

import pytest

import rtml.config
from rtml.config import ENV_VARS, Settings
from rtml.errors import ConfigError


def test_defaults_are_the_local_lab_cluster():
    s = Settings.from_env({})
    assert s.local
    assert s.bootstrap == "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
    assert [s.controller_port(n) for n in s.node_ids] == [9192, 9193, 9194]
    assert s.impl == "solutions"
    assert s.ui_address == "127.0.0.1"


def test_ports_follow_the_base_port():
    s = Settings.from_env({"RTML_KAFKA_PORT": "19092", "RTML_NODES": "3"})
    assert s.bootstrap == "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"


def test_external_cluster_with_sasl():
    s = Settings.from_env(
        {
            "RTML_BOOTSTRAP_SERVERS": "pkc-1.example.cloud:9092",
            "RTML_SECURITY_PROTOCOL": "sasl_ssl",
            "RTML_SASL_MECHANISM": "PLAIN",
            "RTML_SASL_USERNAME": "key",
            "RTML_SASL_PASSWORD": "secret",
        }
    )
    assert not s.local
    conf = s.client_config(acks="all")
    assert conf["bootstrap.servers"] == "pkc-1.example.cloud:9092"
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.username"] == "key"
    assert conf["acks"] == "all"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"RTML_IMPL": "mine"}, "RTML_IMPL"),
        ({"RTML_KAFKA_PORT": "ninety"}, "RTML_KAFKA_PORT"),
        ({"RTML_KAFKA_PORT": "80"}, "RTML_KAFKA_PORT"),
        ({"RTML_NODES": "12"}, "RTML_NODES"),
        ({"RTML_KAFKA_HEAP": "lots"}, "RTML_KAFKA_HEAP"),
        ({"RTML_BOOTSTRAP_SERVERS": "localhost"}, "RTML_BOOTSTRAP_SERVERS"),
        ({"RTML_SECURITY_PROTOCOL": "TLS"}, "RTML_SECURITY_PROTOCOL"),
        ({"RTML_SASL_MECHANISM": "PLAIN"}, "RTML_SECURITY_PROTOCOL"),
        ({"RTML_UI_ADDRESS": "everywhere"}, "RTML_UI_ADDRESS"),
        ({"RTML_CLUSTER_NAME": "../etc"}, "RTML_CLUSTER_NAME"),
    ],
)
def test_bad_values_fail_with_one_sentence(env, needle):
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message
    assert message.endswith(".")


def test_every_variable_read_is_listed():
    source = inspect.getsource(rtml.config)
    read = set(re.findall(r'"(RTML_[A-Z_]+)"', source))
    assert read == set(ENV_VARS)
