"""The control room, rendered headless with Streamlit's AppTest against the live cluster."""

import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

HOME = str(Path(__file__).resolve().parents[2] / "lab_app" / "Home.py")


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_cluster_page_shows_three_brokers_and_the_controller(cluster_settings):
    at = AppTest.from_file(HOME, default_timeout=30).run()
    assert not at.exception
    metrics = _metrics(at)
    assert metrics["Brokers up"] == "3 / 3"
    assert metrics["Controller"].startswith("node ")
    assert metrics["Under-replicated partitions"] == "0"
    brokers = at.dataframe[0].value
    assert list(brokers["state"]) == ["UP", "UP", "UP"]
    partitions = at.dataframe[1].value
    assert "rtml-probe" in set(partitions["topic"])


def test_a_stopped_cluster_shows_how_to_start_it(monkeypatch):
    monkeypatch.setenv("RTML_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    at = AppTest.from_file(HOME, default_timeout=30).run()
    assert not at.exception
    assert "No broker answers at 127.0.0.1:1" in at.error[0].value
    assert "rtml cluster up" in at.code[0].value


@pytest.mark.skipif(os.environ.get("RTML_BOOTSTRAP_SERVERS") is not None, reason="local only")
def test_a_bad_setting_is_one_sentence(monkeypatch):
    monkeypatch.setenv("RTML_KAFKA_PORT", "abc")
    at = AppTest.from_file(HOME, default_timeout=30).run()
    assert not at.exception
    assert "RTML_KAFKA_PORT='abc'" in at.error[0].value
