"""Start, stop, kill and restart the local 3-node KRaft cluster.

Everything runs from jars fetched once from Maven Central and the JDK pip installed; the
manager owns each JVM through its pid file and never signals a process it did not start.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic

from rtml.clients import admin, create_missing_topics, durable_producer
from rtml.cluster import security
from rtml.cluster.errors import ClusterError
from rtml.cluster.jars import classpath, ensure_jars
from rtml.cluster.java import Java, find_java
from rtml.cluster.node import Node
from rtml.cluster.registry import Registry
from rtml.cluster.status import get_status
from rtml.config import Settings

PROBE_TOPIC = "rtml-probe"
Log = Callable[[str], None]


def new_cluster_id() -> str:
    """16 random bytes in URL-safe base64 without padding, as Kafka's own ids are.

    One in 64 of those starts with "-", which kafka-storage's argument parser reads as an
    option (the format fails); Kafka's own generator draws again in that case, and so do we.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


class LocalCluster:
    """The local cluster described by `settings` (ports, node count, run folder)."""

    def __init__(self, settings: Settings, log: Log = print) -> None:
        if not settings.local:
            raise ClusterError(
                f"RTML_BOOTSTRAP_SERVERS is set ({settings.bootstrap_servers}), so rtml uses that "
                "cluster and manages no local one: unset it to run the local cluster."
            )
        self.settings = settings
        self.log = log
        if settings.credentials_file.is_file():
            # A secure cluster: the manager's own clients (readiness, probe, status) are admin.
            self._secure()
        else:
            self.nodes = {n: Node(settings, n) for n in settings.node_ids}
        self._java: Java | None = None
        self._jars: Path | None = None

    # -- pieces ---------------------------------------------------------------------------------

    @property
    def java(self) -> Java:
        """The JDK that runs every node, found once."""
        if self._java is None:
            self._java = find_java(self.settings.java)
        return self._java

    @property
    def jars(self) -> Path:
        """The folder of Kafka's jars, fetched from Maven Central on first use."""
        if self._jars is None:
            self._jars = ensure_jars(self.settings, self.java, log=self.log)
        return self._jars

    def node(self, node_id: int) -> Node:
        """The node with this id, or a clear error naming the ids that exist."""
        if node_id not in self.nodes:
            ids = ", ".join(str(n) for n in self.nodes)
            raise ClusterError(f"There is no node {node_id}: this cluster has nodes {ids}.")
        return self.nodes[node_id]

    @property
    def cluster_id_file(self) -> Path:
        """Where the cluster id every node is formatted with is kept."""
        return self.settings.cluster_dir / "cluster.id"

    @property
    def secure(self) -> bool:
        """True when the cluster was started with --secure (SASL/SCRAM logins and ACLs)."""
        return self.settings.local_secure

    def _secure(self) -> None:
        """Switch to the secure profile: passwords exist, and every client is admin."""
        security.ensure_credentials(self.settings)
        self.settings = self.settings.as_principal()
        self.nodes = {n: Node(self.settings, n) for n in self.settings.node_ids}

    def running(self) -> list[int]:
        """Ids of the nodes whose JVM is alive."""
        return [n for n, node in self.nodes.items() if node.process.alive()]

    # -- lifecycle ------------------------------------------------------------------------------

    def up(self, timeout: float = 120.0, registry: bool = True, secure: bool = False) -> None:
        """Format (first time) and start every node, wait until the cluster takes writes, then
        start the schema registry (unless `registry` is False or an external one is set).

        `secure` starts a new cluster with the secure profile (rtml.cluster.security); a
        cluster started so stays secure at every later start, with or without the flag."""
        started = time.monotonic()
        if secure and not self.secure:
            if any(node.formatted for node in self.nodes.values()):
                raise ClusterError(
                    f"Cluster {self.settings.cluster_name} was formatted without --secure and "
                    "its logins are fixed at format time: wipe it first with "
                    "`rtml cluster down --wipe`, or start it without --secure."
                )
            self._secure()
        to_start = [n for n, node in self.nodes.items() if not node.process.alive()]
        self._check_ports(to_start)
        cluster_id = self._cluster_id()
        for n in to_start:
            node = self.nodes[n]
            node.write_config()
            if not node.formatted:
                self._format(node, cluster_id)
        for n in to_start:
            self._start(self.nodes[n])
        self.wait_ready(timeout)
        if self.secure:
            security.apply(self.settings, log=self.log)
        self.ensure_probe()
        if registry and not self.settings.schema_registry_url:
            Registry(self.settings, log=self.log).up()
        self.log(
            f"Cluster up in {time.monotonic() - started:.1f} s: {len(self.nodes)} nodes at "
            f"{self.settings.bootstrap}{' (secure: SASL/SCRAM and ACLs)' if self.secure else ''}"
            f"\n  schema registry: {self.settings.registry_url}"
            f"\n  data and logs: {self.settings.cluster_dir}/node-N/"
            "{data,logs}\n  stop it with: rtml cluster down"
        )

    def down(self, wipe: bool = False) -> None:
        """Stop every node cleanly (SIGTERM, then SIGKILL after a grace period); optionally wipe.

        The cluster's clients that rtml started go first: the background services (so they
        flush what they produced), the Connect worker (it would otherwise retry against absent
        brokers forever) and the schema registry."""
        from rtml import services  # both import the cluster package
        from rtml.connect.worker import Worker

        services.down(self.settings, log=self.log)
        if Worker(self.settings, log=self.log).down():
            self.log("Kafka Connect stopped.")
        if not self.settings.schema_registry_url:
            Registry(self.settings, log=self.log).down()
        alive = [node for node in self.nodes.values() if node.process.alive()]
        for node in alive:
            node.process.signal(15)
        for node in alive:
            node.process.stop(timeout=30)
        for node in self.nodes.values():
            node.process.forget()
        if wipe and self.settings.cluster_dir.exists():
            shutil.rmtree(self.settings.cluster_dir)
        self.log(
            f"Stopped {len(alive)} node(s)"
            + (f"; deleted {self.settings.cluster_dir}" if wipe else "")
            + "."
        )

    def kill(self, node_id: int) -> None:
        """SIGKILL one node, as a crash would: no controlled shutdown, no flush."""
        node = self.node(node_id)
        if not node.process.kill():
            raise ClusterError(f"Node {node_id} is not running, so there is nothing to kill.")
        self.log(f"Node {node_id} killed (SIGKILL).")

    def stop(self, node_id: int) -> None:
        """Stop one node cleanly (controlled shutdown moves its leaderships first)."""
        node = self.node(node_id)
        if not node.process.alive():
            raise ClusterError(f"Node {node_id} is not running.")
        node.process.stop(timeout=60)
        self.log(f"Node {node_id} stopped.")

    def restart(self, node_id: int, timeout: float = 120.0) -> None:
        """Stop node `node_id` if it runs, start it, and wait until it is back in every ISR."""
        node = self.node(node_id)
        if node.process.alive():
            node.process.stop(timeout=60)
        self._check_ports([node_id])
        node.write_config()
        self._start(node)
        self._wait(
            lambda: node_id in self._registered(),
            timeout,
            f"node {node_id} to register with the controller",
            [node_id],
        )
        # A restarted broker answers metadata requests from its own (stale) metadata log
        # until it catches up, so the ISR must look full on several fresh reads in a row.
        streak = [0]

        def rejoined() -> bool:
            full = not get_status(self.settings, timeout=5).not_in_isr(node_id)
            streak[0] = streak[0] + 1 if full else 0
            return streak[0] >= 3

        self._wait(rejoined, timeout, f"node {node_id} to rejoin every ISR", [node_id])
        self.log(f"Node {node_id} restarted and back in every ISR.")

    # -- readiness ------------------------------------------------------------------------------

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Return when every node is registered as a broker; fail fast if a JVM dies."""
        want = set(self.nodes)
        self._wait(
            lambda: want <= self._registered(),
            timeout,
            f"all {len(want)} brokers to register",
            list(want),
        )

    def ensure_probe(self) -> None:
        """Create the probe topic (RF 3, min ISR 2) if needed and write one record with acks=all."""
        rf = min(3, len(self.nodes))
        config = {"min.insync.replicas": str(min(2, rf))}
        create_missing_topics(self.settings, [NewTopic(PROBE_TOPIC, 3, rf, config=config)])
        producer = durable_producer(self.settings, quiet=True, message_timeout_ms=30000)
        errors: list[str] = []
        producer.produce(
            PROBE_TOPIC,
            key=b"probe",
            value=str(time.time()).encode(),
            on_delivery=lambda err, _msg: errors.append(str(err)) if err else None,
        )
        if producer.flush(40) or errors:
            raise ClusterError(
                "The cluster started but did not accept a write with acks=all: "
                f"{errors or 'timeout'}."
            )

    def _registered(self) -> set[int]:
        try:
            return {b.id for b in admin(self.settings, 3).list_topics(timeout=3).brokers.values()}
        except KafkaException:
            return set()

    def _wait(self, done: Callable[[], bool], timeout: float, what: str, watch: list[int]) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in watch:
                node = self.nodes[n]
                if not node.process.alive():
                    raise ClusterError(
                        f"Node {n} exited while waiting for {what}; its log ends with:\n"
                        f"{node.log_tail()}"
                    )
            if done():
                return
            time.sleep(0.5)
        tails = "\n".join(self.nodes[n].log_tail(5) for n in watch)
        raise ClusterError(
            f"Timed out after {timeout:.0f} s waiting for {what}; logs end with:\n{tails}"
        )

    # -- internals ------------------------------------------------------------------------------

    def _check_ports(self, node_ids: list[int]) -> None:
        for n in node_ids:
            node = self.nodes[n]
            for port in (node.broker_port, node.controller_port):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    # Kafka binds with SO_REUSEADDR too, so a port left in TIME_WAIT by a
                    # killed node is free; only a live listener makes this bind fail.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        sock.bind(("127.0.0.1", port))
                    except OSError:
                        raise ClusterError(
                            f"Port {port} on 127.0.0.1 (node {n}) is already in use: stop whatever "
                            "holds it, or set RTML_KAFKA_PORT to another base port such as 19092."
                        ) from None

    def _cluster_id(self) -> str:
        path = self.cluster_id_file
        if path.is_file():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        cid = new_cluster_id()
        path.write_text(cid + "\n")
        return cid

    def _java_cmd(self, node: Node, main: str, *args: str, heap: bool = True) -> list[str]:
        cmd = [str(self.java.path)]
        if heap:
            h = self.settings.kafka_heap
            cmd += [f"-Xms{h}", f"-Xmx{h}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"]
        cmd += [
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={node.dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={node.log_file.parent}",
            "-cp",
            classpath(self.jars),
            main,
            *args,
        ]
        return cmd

    def _format(self, node: Node, cluster_id: str) -> None:
        cmd = self._java_cmd(
            node,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(node.config_file),
            "--ignore-formatted",
            *(
                security.format_args(security.read_credentials(self.settings))
                if self.secure
                else ()
            ),
            heap=False,
        )
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()[-800:]
            for password in security.read_credentials(self.settings).values():
                output = output.replace(password, "***")
            raise ClusterError(f"Formatting node {node.node_id}'s storage failed: {output}")

    def _start(self, node: Node) -> None:
        cmd = self._java_cmd(node, "kafka.Kafka", str(node.config_file))
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
        node.process.start(cmd, log=node.console_file, cwd=node.dir, env=env)
        self.log(
            f"Node {node.node_id} starting: broker 127.0.0.1:{node.broker_port}, "
            f"controller 127.0.0.1:{node.controller_port}, log {node.log_file}"
        )
