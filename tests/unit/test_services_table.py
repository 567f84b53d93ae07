"""The background services as a table: argv from settings, allow-listed names, no broker."""

import json
import sys

import pytest

from rtml.cli import main
from rtml.config import Settings
from rtml.errors import ConfigError
from rtml.services import NAMES, SERVICES, ServiceError, service, status
from rtml.services.catalogue import selected
from rtml.services.cli import render_status


@pytest.fixture()
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("RTML_HOME", str(tmp_path))
    return Settings.from_env({"RTML_HOME": str(tmp_path), "RTML_LIVE_RATE": "35"})


def test_every_service_is_python_dash_m_rtml_with_a_readiness_check(settings):
    assert NAMES == (
        "features",
        "serve",
        "cards",
        "projections",
        "notifications",
        "decisions",
        "simulator",
    )
    for svc in SERVICES:
        argv = svc.argv(settings)
        assert argv[:3] == [sys.executable, "-m", "rtml"]
        assert all(isinstance(a, str) for a in argv)
        assert svc.marker(settings) in " ".join(argv)
        assert svc.ready_log or svc.output_topic
        assert svc.description


def test_the_feature_app_and_the_prediction_service_run_before_the_simulator(settings):
    assert service("features").argv(settings)[3:5] == ["features", "run"]
    assert service("serve").argv(settings)[3:] == ["serve", "run"]
    assert service("serve").marker(settings) == "rtml serve run"
    assert NAMES.index("features") < NAMES.index("serve") < NAMES.index("simulator")
    # Readers of card-commands and card-events start before the decision service writes them.
    assert NAMES.index("cards") < NAMES.index("decisions") < NAMES.index("simulator")
    assert service("cards").marker(settings) == "rtml cards service"


def test_the_simulator_emits_at_the_configured_rate_without_a_progress_bar(settings):
    argv = service("simulator").argv(settings)
    assert argv[3:5] == ["simulate", "live"]
    assert argv[argv.index("--rate") + 1] == "35"
    assert "--no-progress" in argv
    fractional = Settings.from_env({"RTML_LIVE_RATE": "2.5"})
    assert "2.5" in service("simulator").argv(fractional)


def test_pid_and_log_files_live_under_the_cluster_folder(settings, tmp_path):
    svc = service("simulator")
    folder = tmp_path / "clusters" / "lab" / "services" / "simulator"
    assert svc.dir(settings) == folder
    assert svc.log_file(settings).parent == folder
    assert svc.process(settings).pid_file.parent == folder


def test_an_unknown_service_is_one_sentence_naming_the_services():
    with pytest.raises(ServiceError) as info:
        service("rm -rf /")
    assert str(info.value) == (
        "There is no service 'rm -rf /': the services are features, serve, cards, "
        "projections, notifications, decisions, simulator."
    )
    with pytest.raises(ServiceError):
        selected(["simulator", "miner"])


def test_selection_keeps_table_order_and_defaults_to_all():
    assert selected(None) == list(SERVICES)
    assert selected([]) == list(SERVICES)
    assert selected(["simulator", "simulator"]) == [service("simulator")]


def test_status_without_pid_files_is_stopped_and_a_stale_one_is_exited(settings):
    states = {s.name: s for s in status(settings)}
    assert set(states) == set(NAMES)
    only = states["simulator"]
    assert (only.name, only.state, only.pid, only.alive) == ("simulator", "stopped", None, False)
    pid_file = service("simulator").process(settings).pid_file
    pid_file.parent.mkdir(parents=True)
    # A pid file left by a killed service; the pid is ours, but the marker is not in our args.
    pid_file.write_text(json.dumps({"pid": 1, "created": 0.0, "marker": "rtml simulate live"}))
    only = {s.name: s for s in status(settings)}["simulator"]
    assert only.state == "exited"
    assert "exited: killed or crashed" in render_status([only])


def test_cli_refuses_unknown_names_and_explains_a_kill_of_nothing(settings, capsys):
    with pytest.raises(SystemExit) as info:
        main(["services", "kill", "miner"])
    assert info.value.code == 2
    assert "invalid choice: 'miner'" in capsys.readouterr().err
    assert main(["services", "kill", "simulator"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "rtml: Service simulator is not running, so there is nothing to kill."
    assert main(["services", "up", "miner"]) == 2
    assert "There is no service 'miner'" in capsys.readouterr().err
    assert main(["services", "logs", "simulator"]) == 2
    assert "has no log yet" in capsys.readouterr().err


def test_cli_status_and_down_need_no_cluster(settings, capsys):
    assert main(["services", "status"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["SERVICE", "STATE", "PID", "UPTIME", "LOG"]
    assert "simulator" in out and "stopped" in out
    assert main(["services", "down"]) == 0
    assert "No service was running." in capsys.readouterr().out


@pytest.mark.parametrize("value", ["0", "-5", "fast", "nan", "inf", "100001"])
def test_bad_live_rates_fail_with_one_sentence(value):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"RTML_LIVE_RATE": value})
    message = str(info.value)
    assert message.startswith(f"RTML_LIVE_RATE={value!r} is not a rate")
    assert "\n" not in message and message.endswith(".")


def test_live_rate_defaults_to_20_per_second():
    assert Settings.from_env({}).live_rate == 20.0
    assert Settings.from_env({"RTML_LIVE_RATE": "0.5"}).live_rate == 0.5


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"RTML_KAFKA_PORT": "19092", "RTML_CLUSTER_NAME": "test-1", "RTML_LIVE_RATE": "7.25"},
        {
            "RTML_BOOTSTRAP_SERVERS": "b1.example.com:9092,b2.example.com:9092",
            "RTML_SECURITY_PROTOCOL": "SASL_SSL",
            "RTML_SASL_MECHANISM": "SCRAM-SHA-512",
            "RTML_SASL_USERNAME": "u",
            "RTML_SASL_PASSWORD": "p",
            "RTML_SCHEMA_REGISTRY_URL": "https://registry.example.com",
            "RTML_JAVA": "/opt/java/bin/java",
            "RTML_IMPL": "labs",
        },
    ],
)
def test_a_service_gets_exactly_the_settings_of_its_starter(env):
    settings = Settings.from_env(env)
    assert Settings.from_env(settings.to_env()) == settings
