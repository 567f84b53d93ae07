"""One KRaft node (combined broker + controller): its folder, configuration and process."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rtml.cluster import security
from rtml.cluster.process import OwnedProcess
from rtml.config import LOCAL_ADMIN, Settings

LOG4J2 = """\
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log}
appender.file.filePattern = {log}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


def broker_defaults(nodes: int) -> dict[str, str]:
    """Durability defaults of the design: RF 3, min ISR 2, no unclean election, no auto-create."""
    rf = str(min(3, nodes))
    isr = str(min(2, nodes))
    return {
        "default.replication.factor": rf,
        "min.insync.replicas": isr,
        "unclean.leader.election.enable": "false",
        "auto.create.topics.enable": "false",
        "num.partitions": "6",
        "offsets.topic.replication.factor": rf,
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": isr,
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": isr,
        # A laptop has 2 cores shared by 3 brokers and the Python services.
        "num.network.threads": "2",
        "num.io.threads": "4",
        "background.threads": "4",
        # New consumer groups start at once instead of waiting 3 s for more members.
        "group.initial.rebalance.delay.ms": "0",
    }


@dataclass(frozen=True)
class Node:
    """Local node `node_id` of the cluster described by `settings`."""

    settings: Settings
    node_id: int

    @property
    def dir(self) -> Path:
        """This node's folder: data, logs, config and pid file."""
        return self.settings.cluster_dir / f"node-{self.node_id}"

    @property
    def data_dir(self) -> Path:
        """The node's log directory (Kafka's `log.dirs`)."""
        return self.dir / "data"

    @property
    def config_file(self) -> Path:
        """The node's `server.properties`."""
        return self.dir / "server.properties"

    @property
    def log_file(self) -> Path:
        """Kafka's own log (log4j2)."""
        return self.dir / "logs" / "server.log"

    @property
    def console_file(self) -> Path:
        """What the JVM printed to stdout/stderr (start-up failures land here)."""
        return self.dir / "logs" / "console.log"

    @property
    def broker_port(self) -> int:
        """The port clients connect to."""
        return self.settings.broker_port(self.node_id)

    @property
    def controller_port(self) -> int:
        """The port of the node's KRaft controller listener."""
        return self.settings.controller_port(self.node_id)

    @property
    def process(self) -> OwnedProcess:
        """The node's JVM, tracked by its pid file and its config path on the command line."""
        # The config path is unique per cluster and node, so it identifies our JVM.
        return OwnedProcess(self.dir / "node.pid", marker=str(self.config_file))

    @property
    def formatted(self) -> bool:
        """True once the storage tool has formatted the data folder."""
        return (self.data_dir / "meta.properties").is_file()

    def properties(self) -> dict[str, str]:
        """The node's `server.properties`: combined broker and controller, cluster defaults."""
        s = self.settings
        voters = ",".join(f"{n}@127.0.0.1:{s.controller_port(n)}" for n in s.node_ids)
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": voters,
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.broker_port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.broker_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
        }
        props.update(broker_defaults(s.nodes))
        if s.local_secure:
            passwords = security.read_credentials(s)
            props.update(
                security.broker_properties(
                    self.broker_port, self.controller_port, passwords[LOCAL_ADMIN]
                )
            )
        return props

    def write_config(self) -> None:
        """Write server.properties and the log4j2 configuration for this node."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"{k}={v}" for k, v in self.properties().items()]
        text = (
            "# Written by `rtml cluster up`; edits are overwritten at the next start.\n"
            + "\n".join(lines)
            + "\n"
        )
        if self.settings.local_secure:
            security.write_private(self.config_file, text)  # it holds the admin's password
        else:
            self.config_file.write_text(text)
        (self.dir / "log4j2.properties").write_text(LOG4J2.format(log=self.log_file))

    def quorum_state(self) -> dict | None:
        """This node's view of the KRaft quorum (leader id and epoch), from its metadata log."""
        path = self.data_dir / "__cluster_metadata-0" / "quorum-state"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the console and Kafka logs, for error messages."""
        out: list[str] = []
        for path in (self.console_file, self.log_file):
            if path.is_file():
                text = path.read_text(errors="replace").strip().splitlines()
                if text:
                    out.append(f"--- {path} ---")
                    out.extend(text[-lines:])
        return "\n".join(out)
