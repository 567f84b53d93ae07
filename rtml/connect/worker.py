"""The Kafka Connect worker beside the cluster: one distributed-mode JVM, managed over REST.

It runs `org.apache.kafka.connect.cli.ConnectDistributed` from the same cached Maven Central
jars as the brokers (connect-runtime, connect-file and the converters in infra/pom.xml are
all on its class path, so no `plugin.path` is needed). Distributed mode, even with a single
worker, keeps connector configs, source offsets and statuses in Kafka topics, so a restarted
worker picks up where it left off and a second worker could join the group `rtml-connect`.

The REST API listens on 127.0.0.1 only. With RTML_BOOTSTRAP_SERVERS set the worker still
runs here, as a client of that cluster (with its SASL/TLS settings): `rtml connect up` is an
explicit request, and nothing else starts it.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import KafkaException

from rtml.clients import admin
from rtml.cluster.jars import classpath, ensure_jars
from rtml.cluster.java import find_java
from rtml.cluster.node import LOG4J2
from rtml.cluster.process import OwnedProcess
from rtml.config import Settings
from rtml.connect.rest import ConnectClient, ConnectError

GROUP_ID = "rtml-connect"
CONFIG_TOPIC = "rtml-connect-configs"
OFFSET_TOPIC = "rtml-connect-offsets"
STATUS_TOPIC = "rtml-connect-status"
HEAP = "384m"
MAIN = "org.apache.kafka.connect.cli.ConnectDistributed"
# Connect logs every plugin it scans and every config it applies; keep the scanner quiet.
_LOG4J2_EXTRA = """\
logger.reflections.name = org.reflections
logger.reflections.level = ERROR
"""
_JAAS = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}

Log = Callable[[str], None]


@dataclass(frozen=True)
class WorkerStatus:
    """Whether the Connect worker answers, its version and its connectors."""

    url: str
    up: bool
    version: str = ""
    connectors: list[str] = field(default_factory=list)
    message: str = ""


def java_security(security: Mapping[str, str]) -> dict[str, str]:
    """librdkafka security settings (Settings.security) as Java client properties."""
    props: dict[str, str] = {}
    if "security.protocol" in security:
        props["security.protocol"] = security["security.protocol"]
    mechanism = security.get("sasl.mechanism")
    if mechanism:
        if mechanism not in _JAAS:
            raise ConnectError(
                f"The Connect worker supports SASL PLAIN and SCRAM, not {mechanism}: run Connect "
                "where your provider documents it, or use a PLAIN/SCRAM credential."
            )
        props["sasl.mechanism"] = mechanism
        user = _jaas_quote(security.get("sasl.username", ""))
        password = _jaas_quote(security.get("sasl.password", ""))
        props["sasl.jaas.config"] = (
            f'{_JAAS[mechanism]} required username="{user}" password="{password}";'
        )
    if "ssl.ca.location" in security:
        props["ssl.truststore.type"] = "PEM"
        props["ssl.truststore.location"] = security["ssl.ca.location"]
    return props


def _jaas_quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def worker_properties(settings: Settings) -> dict[str, str]:
    """The worker's configuration: REST on loopback, storage topics in the cluster."""
    # On an external cluster the broker's default replication factor (-1) is the right one.
    rf = str(min(3, settings.nodes)) if settings.local else "-1"
    port = str(settings.connect_port)
    props = {
        "bootstrap.servers": settings.bootstrap,
        "group.id": GROUP_ID,
        "listeners": f"http://127.0.0.1:{port}",
        "rest.advertised.host.name": "127.0.0.1",
        "rest.advertised.port": port,
        "config.storage.topic": CONFIG_TOPIC,
        "config.storage.replication.factor": rf,
        "offset.storage.topic": OFFSET_TOPIC,
        "offset.storage.replication.factor": rf,
        "offset.storage.partitions": "6",
        "status.storage.topic": STATUS_TOPIC,
        "status.storage.replication.factor": rf,
        "status.storage.partitions": "3",
        # Defaults for connectors that name no converters: string keys, schemaless JSON values.
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        # Commit source offsets and flush sink files every second, not every minute, so a
        # learner sees an audit file grow while watching.
        "offset.flush.interval.ms": "1000",
        # A worker killed with SIGKILL leaves its tasks assigned to a dead member; by
        # default the group waits 5 minutes before handing them to the restarted worker.
        "scheduled.rebalance.max.delay.ms": "10000",
    }
    security = java_security(settings.security)
    for prefix in ("", "producer.", "consumer.", "admin."):
        props.update({prefix + k: v for k, v in security.items()})
    return props


class Worker:
    """The local Connect worker of the cluster described by `settings`."""

    def __init__(self, settings: Settings, log: Log = print) -> None:
        self.settings = settings
        self.log = log
        self.dir = settings.cluster_dir / "connect"

    @property
    def process(self) -> OwnedProcess:
        """The worker's JVM, tracked by its pid file and a marker on its command line."""
        return OwnedProcess(self.dir / "connect.pid", marker=f"-Drtml.connect.dir={self.dir}")

    @property
    def config_file(self) -> Path:
        """The worker's `worker.properties`."""
        return self.dir / "worker.properties"

    @property
    def log_file(self) -> Path:
        """Connect's own log (log4j2)."""
        return self.dir / "logs" / "connect.log"

    @property
    def console_file(self) -> Path:
        """What the JVM printed (start-up failures land here)."""
        return self.dir / "logs" / "console.log"

    @property
    def client(self) -> ConnectClient:
        """A REST client for this worker."""
        return ConnectClient(self.settings.connect_url)

    def up(self, timeout: float = 180.0) -> None:
        """Start the worker (unless it runs) and wait until it has joined its group."""
        started = time.monotonic()
        log_start = self.log_file.stat().st_size if self.log_file.is_file() else 0
        if not self.process.alive():
            self._check_port()
            self._check_cluster()
            java = find_java(self.settings.java)
            jars = ensure_jars(self.settings, java, log=self.log)
            self.write_config()
            cmd = [
                str(java.path),
                f"-Xms{HEAP}",
                f"-Xmx{HEAP}",
                "-Djava.awt.headless=true",
                f"-Drtml.connect.dir={self.dir}",
                f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
                f"-Dkafka.logs.dir={self.log_file.parent}",
                "-cp",
                classpath(jars),
                MAIN,
                str(self.config_file),
            ]
            env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
            self.process.start(cmd, log=self.console_file, cwd=self.dir, env=env)
            self.log(f"Kafka Connect starting: {self.settings.connect_url} (log {self.log_file})")
        self._wait_ready(timeout, log_start)
        self.log(f"Kafka Connect up in {time.monotonic() - started:.1f} s.")

    def down(self) -> bool:
        """Stop the worker cleanly (its tasks stop, offsets are committed); True if it ran."""
        running = self.process.alive()
        self.process.stop(timeout=60)
        return running

    def status(self) -> WorkerStatus:
        """Up means healthy: started, joined its group, and listing its connectors."""
        url = self.settings.connect_url
        client = ConnectClient(url, timeout=5)
        try:
            version = str(client.info().get("version", ""))
        except ConnectError:
            return WorkerStatus(url, up=False, message=f"No Kafka Connect worker answers at {url}.")
        try:
            client.health()
            names = client.connectors()
        except ConnectError as exc:
            return WorkerStatus(url, up=False, version=version, message=str(exc))
        return WorkerStatus(url, up=True, version=version, connectors=names)

    def write_config(self) -> None:
        """Write worker.properties (owner-only: it may hold SASL credentials) and log4j2."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        text = "# Written by `rtml connect up`; edits are overwritten at the next start.\n"
        text += "".join(f"{k}={v}\n" for k, v in worker_properties(self.settings).items())
        self.config_file.touch(mode=0o600)
        self.config_file.write_text(text)
        (self.dir / "log4j2.properties").write_text(
            LOG4J2.format(log=self.log_file) + _LOG4J2_EXTRA
        )

    def log_tail(self, lines: int = 15) -> str:
        """The last `lines` lines of the worker's console and log files, for error messages."""
        out: list[str] = []
        for path in (self.console_file, self.log_file):
            if path.is_file():
                text = path.read_text(errors="replace").strip().splitlines()
                if text:
                    out.append(f"--- {path} ---")
                    out.extend(text[-lines:])
        return "\n".join(out) or "(no log)"

    def _check_port(self) -> None:
        port = self.settings.connect_port
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                raise ConnectError(
                    f"Port {port} on 127.0.0.1 is already in use, so Kafka Connect cannot listen "
                    "there: stop whatever holds it, or set RTML_CONNECT_PORT to a free port."
                ) from None

    def _check_cluster(self) -> None:
        try:
            admin(self.settings, timeout=5).list_topics(timeout=10)
        except KafkaException:
            raise ConnectError(
                f"No Kafka cluster answers at {self.settings.bootstrap}, and Connect keeps its "
                "state there: start it with `rtml cluster up` (or fix RTML_BOOTSTRAP_SERVERS)."
            ) from None

    def _wait_ready(self, timeout: float, log_start: int) -> None:
        # GET /connectors answers while the worker is still reading its topics; /health
        # says "healthy" only once it has started and joined the group.
        deadline = time.monotonic() + timeout
        client = ConnectClient(self.settings.connect_url, timeout=5)
        while time.monotonic() < deadline:
            if not self.process.alive():
                said = "\n".join(self._error(log_start)) or self.log_tail()
                raise ConnectError(f"Kafka Connect exited while starting; its log says:\n{said}")
            fatal = self._error(log_start, "Uncaught exception in herder work thread")
            if fatal:
                # The herder thread died but the JVM lingers without a REST server: stop it.
                self.process.stop(timeout=30)
                raise ConnectError(
                    "Kafka Connect failed while starting and was stopped; its log says:\n"
                    + "\n".join(fatal)
                )
            try:
                client.health()
                return
            except ConnectError:
                time.sleep(0.5)
        raise ConnectError(
            f"Kafka Connect was not healthy at {self.settings.connect_url} within {timeout:.0f} s; "
            f"its log ends with:\n{self.log_tail()}"
        )

    def _error(self, start: int, containing: str = "") -> list[str]:
        """The last ERROR line (containing `containing`) since byte `start` of the log, and the
        exception line that follows it, which names the cause."""
        try:
            with open(self.log_file, "rb") as f:
                f.seek(start)
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return []
        hits = [i for i, line in enumerate(lines) if " ERROR " in line and containing in line]
        if not hits:
            return []
        after = lines[hits[-1] + 1 : hits[-1] + 40]
        causes = [line for line in after if not line.startswith(("\t", " ", "["))]
        return [lines[hits[-1]], *causes[:1]]
