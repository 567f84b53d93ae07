"""Start, stop, crash and restart the lab's background services, and say how each is doing.

Each service runs detached (its own session, so it outlives the command or the control
room that started it) as an `OwnedProcess`: its pid file and log live in
<cluster dir>/services/NAME/, and rtml signals it only while pid, start time and command
line still match. A start returns once the service works (its log says so, or its output
topic grows), not when the process exists.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from rtml.clients import admin
from rtml.cluster.process import OwnedProcess
from rtml.cluster.security import service_env
from rtml.config import Settings, project_root
from rtml.observe import no_broker
from rtml.observe.throughput import ThroughputError, end_offsets
from rtml.services.catalogue import SERVICES, Service, ServiceError, selected, service

Log = Callable[[str], None]
# A service stopped with SIGINT ends as on Ctrl-C: it flushes and counts what it produced.
STOP_GRACE_S = 15.0


@dataclass(frozen=True)
class ServiceStatus:
    """One service now: `state` is running, exited (killed or crashed) or stopped."""

    name: str
    description: str
    state: str
    pid: int | None
    uptime: float | None  # seconds since it started, while it runs
    log: Path

    @property
    def alive(self) -> bool:
        """True when the service is running."""
        return self.state == "running"


def status(settings: Settings) -> list[ServiceStatus]:
    """Every service in the table, running or not."""
    out = []
    for svc in SERVICES:
        owned = svc.process(settings)
        proc = owned.process()
        pid = uptime = None
        if proc is not None:
            state, pid = "running", proc.pid
            try:
                uptime = max(0.0, time.time() - proc.create_time())
            except psutil.Error:
                uptime = None
        else:
            # A pid file without its process: it was killed or crashed (a stop removes it).
            state = "exited" if owned.pid_file.exists() else "stopped"
        out.append(
            ServiceStatus(svc.name, svc.description, state, pid, uptime, svc.log_file(settings))
        )
    return out


def up(
    settings: Settings, names: list[str] | None = None, timeout: float = 60.0, log: Log = print
) -> list[str]:
    """Start the services named (default: all) that are not running; return those started.

    Each is started and waited for in table order, so a later service finds the earlier
    ones working.
    """
    services = selected(names)
    todo = []
    for svc in services:
        pid = svc.process(settings).pid
        if pid is None:
            todo.append(svc)
        else:
            log(f"Service {svc.name} is already running (pid {pid}).")
    if todo:
        _check_cluster(settings)
    for svc in todo:
        _start(settings, svc, timeout, log)
    return [svc.name for svc in todo]


def down(settings: Settings, names: list[str] | None = None, log: Log = print) -> list[str]:
    """Stop the services named (default: all), in reverse start order; return those stopped."""
    stopped = []
    for svc in reversed(selected(names)):
        owned = svc.process(settings)
        if owned.alive():
            _stop(owned)
            stopped.append(svc.name)
            log(f"Service {svc.name} stopped.")
        owned.forget()
    return stopped


def kill(settings: Settings, name: str, log: Log = print) -> None:
    """SIGKILL one service, as a crash would: no flush, no goodbye; its pid file stays."""
    if not service(name).process(settings).kill():
        raise ServiceError(f"Service {name} is not running, so there is nothing to kill.")
    log(f"Service {name} killed (SIGKILL).")


def restart(settings: Settings, name: str, timeout: float = 60.0, log: Log = print) -> None:
    """Stop the service if it runs, start it again and wait until it works."""
    svc = service(name)
    owned = svc.process(settings)
    if owned.alive():
        _stop(owned)
    owned.forget()
    _check_cluster(settings)
    _start(settings, svc, timeout, log)


def log_tail(settings: Settings, name: str, lines: int = 40) -> str:
    """The last `lines` lines of the service's log."""
    path = service(name).log_file(settings)
    if not path.is_file():
        raise ServiceError(f"Service {name} has no log yet: start it with `rtml services up`.")
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _start(settings: Settings, svc: Service, timeout: float, log: Log) -> None:
    log_file = svc.log_file(settings)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    before = _output_total(settings, svc)
    argv = svc.argv(settings)
    with open(log_file, "a") as out:
        out.write(f"=== {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC: rtml {' '.join(argv[3:])}\n")
    offset = log_file.stat().st_size
    # The child reads exactly these settings, whatever this process's environment says.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTML_")}
    env.update(settings.to_env())
    env.update(service_env(settings, svc.name))  # a secure cluster: its own principal
    env["PYTHONUNBUFFERED"] = "1"  # its log shows each line when it is printed
    started = time.monotonic()
    pid = svc.process(settings).start(argv, log=log_file, cwd=project_root(), env=env)
    log(f"Service {svc.name} starting (pid {pid}), log {log_file}")
    _wait_ready(settings, svc, offset, before, timeout)
    log(f"Service {svc.name} up in {time.monotonic() - started:.1f} s: {svc.description}.")


def _wait_ready(
    settings: Settings, svc: Service, offset: int, before: int | None, timeout: float
) -> None:
    """Poll until the log says it works or its output grows; fail fast if it exits."""
    owned = svc.process(settings)
    log_file = svc.log_file(settings)
    client = admin(settings, timeout=3)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = _read_from(log_file, offset)
        if not owned.alive():
            raise ServiceError(f"Service {svc.name} exited while starting: {_why(text)}")
        if svc.ready_log and svc.ready_log in text:
            return
        if before is not None and (_output_total(settings, svc, client) or 0) > before:
            return
        time.sleep(0.5)
    _stop(owned)
    raise ServiceError(
        f"Service {svc.name} did not start working within {timeout:.0f} s, so it was stopped: "
        f"{_why(_read_from(log_file, offset))}"
    )


def _stop(owned: OwnedProcess) -> None:
    """SIGINT first, as Ctrl-C; then SIGTERM and SIGKILL for anything that did not stop."""
    if owned.signal(signal.SIGINT) and owned.wait_gone(STOP_GRACE_S):
        owned.forget()
        return
    owned.stop(timeout=10)


def _check_cluster(settings: Settings) -> None:
    try:
        admin(settings, timeout=5).list_topics(timeout=5)
    except KafkaException as exc:
        raise ServiceError(no_broker(settings)) from exc


def _output_total(
    settings: Settings, svc: Service, client: AdminClient | None = None
) -> int | None:
    """How many records the service's output topic holds now (None: unknown or none)."""
    if svc.output_topic is None:
        return None
    try:
        return end_offsets(settings, [svc.output_topic], client).get(svc.output_topic)
    except ThroughputError:
        return None


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _why(text: str) -> str:
    """The rtml error sentence the service printed, or the end of its log."""
    lines = text.strip().splitlines()
    said = [line.removeprefix("rtml: ") for line in lines if line.startswith("rtml: ")]
    if said:
        return said[-1]
    return "its log ends with:\n" + ("\n".join(lines[-15:]) or "(nothing)")
