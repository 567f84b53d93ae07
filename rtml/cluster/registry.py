"""The schema registry beside the brokers: Apicurio Registry, storing its schemas in Kafka.

With `kafkasql` storage every change is a record in the `kafkasql-journal` topic, so the
schemas live as long as the cluster does and survive a registry restart. The registry
answers HTTP before it has replayed that journal, so "up" means its readiness check
passes and a sentinel subject registered at first start is visible again.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import httpx
from confluent_kafka.admin import NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from rtml.clients import create_missing_topics
from rtml.cluster import security
from rtml.cluster.errors import ClusterError
from rtml.cluster.jars import ensure_registry
from rtml.cluster.java import find_java
from rtml.cluster.process import OwnedProcess
from rtml.config import Settings

# The journal is replayed in order at start-up, so it has one partition; nothing expires.
JOURNAL_TOPICS = ("kafkasql-journal", "kafkasql-snapshots", "registry-events")
SENTINEL = "rtml-registry-sentinel"
_SENTINEL_SCHEMA = json.dumps({"type": "record", "name": "Sentinel", "fields": []})


@dataclass(frozen=True)
class RegistryStatus:
    """Whether the schema registry answers, and how many subjects it holds."""

    url: str
    up: bool
    subjects: int = 0
    message: str = ""


class Registry:
    """The local Apicurio Registry process of the cluster described by `settings`."""

    def __init__(self, settings: Settings, log=print) -> None:
        if not settings.local or settings.schema_registry_url:
            raise ClusterError(
                "An external cluster or registry is configured (RTML_BOOTSTRAP_SERVERS or "
                "RTML_SCHEMA_REGISTRY_URL), so rtml runs no local registry."
            )
        self.settings = settings
        self.log = log
        self.dir = settings.cluster_dir / "registry"

    @property
    def management_port(self) -> int:
        """Quarkus's health endpoints, one above the API port (and on loopback too)."""
        return self.settings.registry_port + 1

    @property
    def process(self) -> OwnedProcess:
        """The registry's JVM, tracked by its pid file and a marker on its command line."""
        return OwnedProcess(self.dir / "registry.pid", marker=f"-Drtml.registry.dir={self.dir}")

    @property
    def log_file(self) -> Path:
        """The registry's console log."""
        return self.dir / "registry.log"

    def up(self, timeout: float = 180.0) -> None:
        """Start the registry (unless running) and wait until it serves the stored schemas."""
        started = time.monotonic()
        if not self.process.alive():
            java = find_java(self.settings.java, minimum=21)
            home = ensure_registry(self.settings, java, log=self.log)
            self._ensure_topics()
            self.dir.mkdir(parents=True, exist_ok=True)
            if self.settings.local_secure:
                password = security.read_credentials(self.settings)[security.REGISTRY]
                security.write_private(
                    self.dir / "config" / "application.properties",
                    security.registry_properties(password),
                )
            cmd = [
                str(java.path),
                "-Xms128m",
                "-Xmx384m",
                f"-Drtml.registry.dir={self.dir}",
                "-Dquarkus.http.host=127.0.0.1",
                f"-Dquarkus.http.port={self.settings.registry_port}",
                "-Dquarkus.management.host=127.0.0.1",
                f"-Dquarkus.management.port={self.management_port}",
                "-Dquarkus.http.access-log.enabled=false",
                "-jar",
                str(home / "quarkus-run.jar"),
            ]
            env = dict(os.environ)
            env.update(
                {
                    "APICURIO_STORAGE_KIND": "kafkasql",
                    "APICURIO_KAFKASQL_BOOTSTRAP_SERVERS": self.settings.bootstrap,
                }
            )
            self.process.start(cmd, log=self.log_file, cwd=self.dir, env=env)
            self.log(
                f"Schema registry starting: {self.settings.registry_url} (log {self.log_file})"
            )
        self._wait_ready(timeout)
        self.log(f"Schema registry up in {time.monotonic() - started:.1f} s.")

    def down(self) -> None:
        """Stop the registry (SIGTERM, then SIGKILL after 30 s)."""
        self.process.stop(timeout=30)

    def status(self) -> RegistryStatus:
        """Ask the registry for its subjects: up or not, with a sentence when not."""
        url = self.settings.registry_url
        try:
            subjects = self._client(timeout=3).get_subjects()
        except (OSError, httpx.HTTPError, SchemaRegistryError):
            return RegistryStatus(url, up=False, message=f"No schema registry answers at {url}.")
        return RegistryStatus(url, up=True, subjects=len(subjects))

    def _client(self, timeout: float) -> SchemaRegistryClient:
        return SchemaRegistryClient({"url": self.settings.registry_url, "timeout": timeout})

    def _ensure_topics(self) -> None:
        rf = min(3, self.settings.nodes)
        config = {"retention.ms": "-1", "min.insync.replicas": str(min(2, rf))}
        create_missing_topics(
            self.settings, [NewTopic(name, 1, rf, config=config) for name in JOURNAL_TOPICS]
        )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        health = f"http://127.0.0.1:{self.management_port}/health/ready"
        client = self._client(timeout=5)
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise ClusterError(
                    f"The schema registry exited while starting; its log ends with:\n{self._tail()}"
                )
            try:
                with urllib.request.urlopen(health, timeout=3):
                    pass
                if self._sentinel_marker.is_file():
                    client.get_latest_version(SENTINEL)
                else:
                    client.register_schema(SENTINEL, Schema(_SENTINEL_SCHEMA, "AVRO"))
                    self._sentinel_marker.write_text(SENTINEL + "\n")
                return
            except (OSError, httpx.HTTPError, SchemaRegistryError):
                time.sleep(0.5)
        raise ClusterError(
            f"The schema registry was not ready after {timeout:.0f} s; its log ends with:\n"
            f"{self._tail()}"
        )

    @property
    def _sentinel_marker(self) -> Path:
        """Written once the sentinel subject exists, so a restart knows to wait for it."""
        return self.dir / "sentinel-registered"

    def _tail(self, lines: int = 15) -> str:
        if not self.log_file.is_file():
            return "(no log)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
