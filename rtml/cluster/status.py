"""What the cluster looks like right now: brokers, the active controller, partitions and ISR.

Works for the local cluster and for an external one; the control room and `rtml cluster
status` both read it. An unreachable cluster is a status (with a message), not an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from rtml.clients import admin as admin_client
from rtml.cluster.node import Node
from rtml.config import Settings


@dataclass(frozen=True)
class BrokerState:
    """One broker: its id, address, whether it answers, and its pid when local."""

    node_id: int
    address: str
    up: bool
    pid: int | None = None


@dataclass(frozen=True)
class PartitionState:
    """One partition: its leader, replicas and in-sync replicas."""

    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]

    @property
    def under_replicated(self) -> bool:
        """True when fewer replicas are in sync than assigned."""
        return len(self.isr) < len(self.replicas)

    @property
    def offline(self) -> bool:
        """True when the partition has no leader."""
        return self.leader < 0


@dataclass(frozen=True)
class ClusterStatus:
    """A snapshot; `reachable` is False (with `message`) when no broker answered."""

    reachable: bool
    bootstrap: str
    brokers: tuple[BrokerState, ...] = ()
    controller: int | None = None
    partitions: tuple[PartitionState, ...] = field(default=())
    message: str = ""

    @property
    def brokers_up(self) -> int:
        """How many brokers answer."""
        return sum(b.up for b in self.brokers)

    @property
    def topics(self) -> list[str]:
        """The topics of the partitions shown, sorted."""
        return sorted({p.topic for p in self.partitions})

    @property
    def under_replicated(self) -> int:
        """How many partitions are under-replicated."""
        return sum(p.under_replicated for p in self.partitions)

    @property
    def offline(self) -> int:
        """How many partitions have no leader."""
        return sum(p.offline for p in self.partitions)

    def not_in_isr(self, node_id: int) -> list[PartitionState]:
        """Partitions that list `node_id` as a replica but not in their ISR."""
        return [p for p in self.partitions if node_id in p.replicas and node_id not in p.isr]

    def led_by(self, node_id: int) -> list[PartitionState]:
        """The partitions `node_id` leads."""
        return [p for p in self.partitions if p.leader == node_id]

    def render(self) -> str:
        """A plain-text report, as `rtml cluster status` prints it."""
        if not self.reachable:
            return self.message
        lines = [
            f"bootstrap {self.bootstrap}",
            f"controller: node {self.controller}"
            if self.controller is not None
            else "controller: none active (election in progress or quorum lost)",
            f"brokers: {self.brokers_up} of {len(self.brokers)} up",
        ]
        for b in self.brokers:
            pid = f" pid {b.pid}" if b.pid else ""
            lines.append(f"  node {b.node_id}  {b.address:<21} {'UP' if b.up else 'DOWN'}{pid}")
        lines.append(
            f"partitions: {len(self.partitions)} in {len(self.topics)} topics, "
            f"{self.under_replicated} under-replicated, {self.offline} offline"
        )
        lines.append(f"  {'topic':<28} {'part':>4} {'leader':>6}  {'replicas':<10} isr")
        for p in self.partitions:
            flag = (
                "  OFFLINE" if p.offline else ("  UNDER-REPLICATED" if p.under_replicated else "")
            )
            lines.append(
                f"  {p.topic:<28} {p.partition:>4} {p.leader:>6}  "
                f"{','.join(map(str, p.replicas)):<10} {','.join(map(str, p.isr))}{flag}"
            )
        return "\n".join(lines)


def get_status(
    settings: Settings,
    timeout: float = 5.0,
    admin: AdminClient | None = None,
    include_internal: bool = False,
) -> ClusterStatus:
    """Ask the cluster for brokers, partitions and ISR; say clearly when nobody answers."""
    admin = admin or admin_client(settings, timeout)
    try:
        meta = admin.list_topics(timeout=timeout)
    except KafkaException:
        hint = (
            "start it with `rtml cluster up` (or `make lab`)."
            if settings.local
            else "check RTML_BOOTSTRAP_SERVERS and the security settings."
        )
        return ClusterStatus(
            reachable=False,
            bootstrap=settings.bootstrap,
            message=f"No broker answers at {settings.bootstrap}: {hint}",
        )
    registered = {b.id: f"{b.host}:{b.port}" for b in meta.brokers.values()}
    partitions = tuple(
        PartitionState(name, p.id, p.leader, tuple(p.replicas), tuple(p.isrs))
        for name, topic in sorted(meta.topics.items())
        if include_internal or not name.startswith("__")
        for p in sorted(topic.partitions.values(), key=lambda p: p.id)
    )
    if settings.local:
        nodes = [Node(settings, n) for n in settings.node_ids]
        pids = {n.node_id: n.process.pid for n in nodes}
        # A killed broker stays in the metadata until the controller fences it (about 9 s),
        # so locally a broker is up only if its JVM is alive too.
        brokers = tuple(
            BrokerState(
                n.node_id,
                f"127.0.0.1:{n.broker_port}",
                up=n.node_id in registered and pids[n.node_id] is not None,
                pid=pids[n.node_id],
            )
            for n in nodes
        )
        controller = _local_controller(nodes)
    else:
        brokers = tuple(BrokerState(i, a, up=True) for i, a in sorted(registered.items()))
        controller = _described_controller(admin, timeout)
    return ClusterStatus(
        reachable=True,
        bootstrap=settings.bootstrap,
        brokers=brokers,
        controller=controller,
        partitions=partitions,
    )


def _local_controller(nodes: list[Node]) -> int | None:
    """The active KRaft controller: the leader in the newest epoch any running node has seen.

    Clients cannot ask for it (in KRaft, DescribeCluster names a random broker), but every
    node records the quorum leader in its metadata log's quorum-state file.
    """
    best: tuple[int, int] | None = None
    alive = {node.node_id for node in nodes if node.process.alive()}
    for node in nodes:
        if node.node_id not in alive:
            continue
        state = node.quorum_state() or {}
        leader, epoch = state.get("leaderId", -1), state.get("leaderEpoch", -1)
        if leader >= 0 and (best is None or epoch > best[1]):
            best = (leader, epoch)
    # A dead leader is not the controller; the survivors are electing a new one.
    return best[0] if best and best[0] in alive else None


def _described_controller(admin: AdminClient, timeout: float) -> int | None:
    try:
        described = admin.describe_cluster(request_timeout=timeout).result(timeout=timeout)
    except KafkaException:
        return None
    return described.controller.id if described.controller else None
