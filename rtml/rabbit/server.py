"""A local RabbitMQ broker from Debian's `rabbitmq-server` package, owned by rtml.

It runs under the cluster's folder (`<cluster>/rabbitmq/`): its own Mnesia database, logs,
config, enabled-plugins file and Erlang cookie (HOME points there), so it never touches the
system's RabbitMQ. Every port binds 127.0.0.1 and is free when `up` picks it:

- AMQP, where clients connect;
- the Erlang distribution port, which RabbitMQ's node opens even when alone;
- epmd, Erlang's port mapper. Left to itself, the Erlang VM would start a system-wide epmd
  daemon on 4369 that outlives the broker. rtml starts a private epmd on a free port as an
  owned process instead (`ERL_EPMD_PORT`, and `-start_epmd false` so the VM starts none),
  and stops it with the broker.

No management plugin: the comparison talks AMQP 0-9-1 only.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import pika
import psutil

from rtml.cluster.process import OwnedProcess
from rtml.config import Settings
from rtml.errors import RtmlError
from rtml.poll import WaitTimeout, until

# Debian's script, not /usr/sbin/rabbitmq-server: that wrapper switches to the system
# `rabbitmq` user and its folders, which is what we must not use.
SERVER_SCRIPT = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
EPMD = "epmd"
INSTALL_HINT = "run `make rabbitmq` (Debian's rabbitmq-server package, installed with apt-get)"


class RabbitError(RtmlError):
    """The local RabbitMQ broker cannot be started, reached or stopped."""


@dataclass(frozen=True)
class RabbitPorts:
    """The three ports of one local broker."""

    amqp: int
    dist: int
    epmd: int


def free_ports(count: int = 3) -> list[int]:
    """`count` consecutive free ports on 127.0.0.1, below Linux's ephemeral range (32768+)
    so no client connection takes one between this check and the broker's start."""
    for _ in range(200):
        base = random.randrange(20000, 32000, 10)
        try:
            for port in range(base, base + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return list(range(base, base + count))
    raise RabbitError("No free ports were found for RabbitMQ on 127.0.0.1.")


class RabbitServer:
    """The local broker of one rtml cluster name: up, down, and where to connect."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.cluster_dir / "rabbitmq"
        self.node = f"rtml-{settings.cluster_name}@localhost"
        # Appears in the command line of the start script and of the Erlang VM it runs
        # (the script passes its arguments to `erl`, which ignores an unknown flag).
        self.marker = f"-rtml_rabbit {settings.cluster_name}"
        self.process = OwnedProcess(self.dir / "rabbitmq.pid", self.marker)
        self.state_file = self.dir / "ports.json"
        self.log = self.dir / "rabbitmq.out"

    @property
    def ports(self) -> RabbitPorts | None:
        """The ports of the running (or last started) broker, None before the first start."""
        try:
            return RabbitPorts(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    @property
    def port(self) -> int:
        """The AMQP port of the running broker."""
        ports = self.ports
        if ports is None or not self.process.alive():
            raise RabbitError(
                f"RabbitMQ is not running for cluster {self.settings.cluster_name}: "
                "start it with `rtml rabbit up`."
            )
        return ports.amqp

    def _epmd(self, port: int) -> OwnedProcess:
        return OwnedProcess(self.dir / "epmd.pid", f"-port {port} -address 127.0.0.1")

    def alive(self) -> bool:
        """True when the broker process rtml started runs."""
        return self.process.alive()

    def up(self, timeout: float = 120.0) -> int:
        """Start the broker unless it runs; wait until AMQP answers; return its port."""
        if self.alive():
            return self.port
        if not SERVER_SCRIPT.is_file() or shutil.which(EPMD) is None:
            raise RabbitError(f"RabbitMQ is not installed: {INSTALL_HINT}.")
        amqp, dist, epmd_port = free_ports(3)
        for sub in ("mnesia", "log"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{amqp}\n"
            # The default guest user may log in from 127.0.0.1 only, which is all we need.
            "loopback_users.guest = true\n"
        )
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq-env.conf").write_text("")
        self.state_file.write_text(json.dumps({"amqp": amqp, "dist": dist, "epmd": epmd_port}))
        epmd = self._epmd(epmd_port)
        epmd.start(
            [EPMD, "-port", str(epmd_port), "-address", "127.0.0.1"],
            log=self.dir / "epmd.out",
            cwd=self.dir,
        )
        self.process.start(
            [str(SERVER_SCRIPT), *self.marker.split()],
            log=self.log,
            cwd=self.dir,
            env=self._env(RabbitPorts(amqp, dist, epmd_port)),
        )
        try:
            until(self._ready, timeout, "RabbitMQ to accept AMQP connections", interval=0.5)
        except (WaitTimeout, RabbitError) as exc:
            self.down()
            raise RabbitError(f"RabbitMQ did not start ({exc}); see {self.log}.") from None
        return amqp

    def _env(self, ports: RabbitPorts) -> dict[str, str]:
        """The broker's environment: only its own folders, ports and node name."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.dir),  # where Erlang keeps its cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.dir / "beam.pid"),
            "RABBITMQ_DIST_PORT": str(ports.dist),
            "ERL_EPMD_PORT": str(ports.epmd),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                "-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}"
            ),
        }

    def _ready(self) -> bool:
        if not self.alive():
            raise RabbitError("the broker process exited")
        ports = self.ports
        assert ports is not None
        try:
            pika.BlockingConnection(
                pika.ConnectionParameters("127.0.0.1", ports.amqp, connection_attempts=1)
            ).close()
        except pika.exceptions.AMQPError:
            return False
        return True

    def down(self, wipe: bool = False) -> None:
        """Stop the broker (SIGTERM: its script shuts the VM down cleanly) and its epmd."""
        proc = self.process.process()
        children = proc.children(recursive=True) if proc else []
        self.process.stop(timeout=60)
        # A start script killed hard would leave its Erlang VM behind: stop what is left,
        # and only processes that carry this broker's marker.
        for child in children:
            try:
                if self.marker in " ".join(child.cmdline()):
                    child.kill()
            except psutil.Error:
                pass
        ports = self.ports
        if ports is not None:
            self._epmd(ports.epmd).stop(timeout=10)
        if wipe:
            shutil.rmtree(self.dir, ignore_errors=True)
