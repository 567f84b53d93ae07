"""The background services on the live test cluster: up produces, kill crashes, restart
recovers, down leaves nothing, and `rtml down` stops the services first."""

import dataclasses
import os
import shutil
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from rtml import services, topics
from rtml.observe.throughput import end_offsets
from rtml.schemas import register_all
from rtml.services import ServiceError


@pytest.fixture(scope="module")
def settings(cluster_settings):
    """The test cluster with the catalogue and schemas and no service running (the control
    room's tests may have left the simulator up); every service stopped afterwards."""
    topics.apply(cluster_settings)
    register_all(cluster_settings)
    services.down(cluster_settings)
    yield cluster_settings
    services.down(cluster_settings)


def _transactions(settings) -> int:
    return end_offsets(settings, ["transactions"])["transactions"]


def _grows_by(settings, records: int, timeout: float = 60.0) -> float:
    """Poll until `records` more transactions are in the topic; return the records/s seen."""
    start, started = _transactions(settings), time.monotonic()
    while (now := _transactions(settings)) < start + records:
        assert time.monotonic() - started < timeout, f"only {now - start} transactions appeared"
        time.sleep(0.2)
    return (now - start) / (time.monotonic() - started)


def _gone(pid: int, timeout: float = 30.0) -> bool:
    """Poll until the process has exited (a zombie waiting to be reaped counts); a killed
    process may take a moment to finish exiting after its pid file stops matching."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def _simulator(settings) -> services.ServiceStatus:
    return {s.name: s for s in services.status(settings)}["simulator"]


def test_up_starts_the_simulator_and_transactions_flow_at_its_rate(settings):
    assert services.up(settings, ["simulator"]) == ["simulator"]
    sim = _simulator(settings)
    assert sim.state == "running" and sim.pid and sim.uptime is not None
    assert f"Emitting {settings.live_rate:g} transactions/s" in sim.log.read_text()
    argv = psutil.Process(sim.pid).cmdline()
    assert argv[1:5] == ["-m", "rtml", "simulate", "live"]
    # 100 records at 20/s take about 5 s; a token bucket allows no more than the rate.
    rate = _grows_by(settings, 100)
    assert 0.5 * settings.live_rate < rate < 1.5 * settings.live_rate


def test_up_again_changes_nothing(settings):
    pid = _simulator(settings).pid
    assert services.up(settings, ["simulator"]) == []
    assert _simulator(settings).pid == pid


def test_kill_is_a_crash_and_restart_recovers(settings):
    pid = _simulator(settings).pid
    services.kill(settings, "simulator")
    sim = _simulator(settings)
    assert sim.state == "exited" and not sim.alive
    assert _gone(pid)
    with pytest.raises(ServiceError, match="not running, so there is nothing to kill"):
        services.kill(settings, "simulator")

    services.restart(settings, "simulator")
    sim = _simulator(settings)
    assert sim.alive and sim.pid != pid
    assert _grows_by(settings, 20) > 0


def test_cli_status_and_logs_show_the_running_service(settings):
    env = {**os.environ, **settings.to_env()}
    status = subprocess.run(
        [sys.executable, "-m", "rtml", "services", "status"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    row = next(line for line in status.stdout.splitlines() if line.startswith("simulator"))
    assert row.split()[1:3] == ["running", str(_simulator(settings).pid)]
    logs = subprocess.run(
        [sys.executable, "-m", "rtml", "services", "logs", "simulator", "-n", "3"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"Emitting {settings.live_rate:g} transactions/s" in logs.stdout


def test_down_stops_cleanly_and_leaves_nothing(settings):
    sim = _simulator(settings)
    assert services.down(settings) == ["simulator"]
    assert _gone(sim.pid)
    assert _simulator(settings).state == "stopped"
    assert not services.service("simulator").process(settings).pid_file.exists()
    # SIGINT first: the simulator flushed and counted everything, as after Ctrl-C.
    last = sim.log.read_text().strip().splitlines()[-1]
    assert "stopped by Ctrl-C" in last
    produced = int(last.split("Produced ", 1)[1].split(" ", 1)[0].replace(",", ""))
    assert f"{produced:,} acknowledged" in last
    assert services.down(settings) == []


def test_rtml_down_stops_the_services_before_the_cluster(settings):
    # Another cluster folder whose clients reach the same brokers: its `rtml down` stops the
    # service it owns and finds no node of its own to stop, so the shared cluster stays up.
    other = dataclasses.replace(settings, cluster_name=f"test-svc-{uuid.uuid4().hex[:6]}")
    try:
        services.up(other, ["simulator"])
        pid = _simulator(other).pid
        env = {**os.environ, **other.to_env()}
        out = subprocess.run(
            [sys.executable, "-m", "rtml", "down", "--wipe"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.index("Service simulator stopped.") < out.index("Stopped 0 node(s)")
        assert _gone(pid)
        assert not other.cluster_dir.exists()
    finally:
        services.down(other)
        shutil.rmtree(other.cluster_dir, ignore_errors=True)


def test_a_service_that_fails_to_start_says_why_in_one_sentence(settings):
    broken = dataclasses.replace(
        settings,
        cluster_name=f"test-svc-{uuid.uuid4().hex[:6]}",
        schema_registry_url="http://127.0.0.1:1/apis/ccompat/v7",
    )
    try:
        with pytest.raises(ServiceError) as info:
            services.up(broken, ["simulator"])
        message = str(info.value)
        assert message.startswith("Service simulator exited while starting: No schema registry")
        assert "\n" not in message
        assert _simulator(broken).state == "exited"
    finally:
        services.down(broken)
        shutil.rmtree(broken.cluster_dir, ignore_errors=True)


def test_no_cluster_is_one_sentence_before_anything_starts(settings, tmp_path):
    nowhere = dataclasses.replace(settings, home=tmp_path, bootstrap_servers="127.0.0.1:1")
    with pytest.raises(ServiceError, match=r"^No broker answers at 127\.0\.0\.1:1: check"):
        services.up(nowhere)
    assert _simulator(nowhere).state == "stopped"
