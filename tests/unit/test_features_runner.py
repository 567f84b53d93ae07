"""The feature-app runner without a cluster: a failed start is reported and cleaned up."""

import socket
import sys

import pytest

from rtml.config import Settings
from rtml.features.errors import FeatureError
from rtml.features.runner import FeatureRun, fresh_topics, state_dir


def _closed_port() -> int:
    """A port below the ephemeral range that nothing listens on."""
    for port in range(21000, 32000, 37):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def test_an_app_that_cannot_start_is_reported_with_its_own_words(monkeypatch, tmp_path):
    monkeypatch.setenv("RTML_HOME", str(tmp_path))
    monkeypatch.setenv("RTML_BOOTSTRAP_SERVERS", f"127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("RTML_SCHEMA_REGISTRY_URL", f"http://127.0.0.1:{_closed_port()}")
    settings = Settings.from_env()
    with FeatureRun(settings, grace_ms=1500) as run, pytest.raises(FeatureError) as failed:
        assert "--grace" in run.argv and "1.500" in run.argv
        run.wait_for("features", 1, timeout=120)
    assert not run.running
    assert run.proc is not None and run.proc.returncode != 0
    message = str(failed.value)
    assert "stopped before features had 1 records" in message
    # The child's own one-sentence error is part of the report.
    assert "127.0.0.1" in message.split("its output:", 1)[1]
    assert run.log.is_file() and run.log.is_relative_to(tmp_path)


def test_stop_before_start_is_harmless(tmp_path):
    run = FeatureRun(Settings.from_env({"RTML_HOME": str(tmp_path)}))
    assert run.stop() is None
    assert run.group.startswith("rtml-features-")


def test_state_lives_under_the_cluster_folder_per_group(tmp_path):
    settings = Settings.from_env({"RTML_HOME": str(tmp_path)})
    path = state_dir(settings, "g1")
    assert path.name == "g1" and path.is_relative_to(settings.cluster_dir)


def test_only_catalogue_topics_are_recreated(tmp_path):
    settings = Settings.from_env({"RTML_HOME": str(tmp_path)})
    with pytest.raises(FeatureError, match="not in the topic catalogue"):
        fresh_topics(settings, ["transactions", "__consumer_offsets"])


def test_a_second_start_is_refused_and_the_first_process_kept(tmp_path):
    run = FeatureRun(Settings.from_env({"RTML_HOME": str(tmp_path)}))
    # A stand-in child that runs until signalled, so no cluster is needed.
    run.argv = [sys.executable, "-c", "import time; time.sleep(120)"]
    with run:
        first = run.proc
        assert first is not None
        with pytest.raises(FeatureError, match="already running"):
            run.start()
        assert run.proc is first and run.running
    assert first.returncode is not None
