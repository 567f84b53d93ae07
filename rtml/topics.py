"""The topic catalogue: every topic of the system as code, and `apply` that creates or checks them.

`apply` is idempotent: it creates what is missing and compares what exists with the
catalogue, reporting drift (a wrong partition count, replication factor or config) instead
of silently accepting it. docs/topics.md is generated from this table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka.admin import ConfigResource, NewTopic, ResourceType

from rtml.clients import admin, create_missing_topics
from rtml.config import Settings
from rtml.errors import RtmlError
from rtml.schemas.registry import SCHEMAS

DAY_MS = 86_400_000
# Replayed history carries event timestamps from the past; time-based retention would
# delete it on arrival, so history topics keep records until they are deleted on purpose.
KEEP = "-1"
MODEL_MAX_BYTES = 16 * 1024 * 1024  # model-updates records: a version with its ONNX graph


class TopicError(RtmlError):
    """A topic is unknown, or the cluster's topics drifted from the catalogue."""


@dataclass(frozen=True)
class TopicSpec:
    """One topic: what it holds, how it is keyed, and how Kafka stores it."""

    name: str
    key: str
    purpose: str
    partitions: int = 6
    replication_factor: int = 3
    configs: dict[str, str] = field(default_factory=dict)
    schema: str | None = None

    @property
    def compacted(self) -> bool:
        """True when the topic keeps the latest record per key."""
        return "compact" in self.configs.get("cleanup.policy", "delete")

    def for_cluster(self, nodes: int | None) -> TopicSpec:
        """This spec on a cluster of `nodes` brokers (None: an external cluster, RF as is)."""
        if nodes is None or nodes >= self.replication_factor:
            return self
        configs = dict(self.configs)
        configs["min.insync.replicas"] = str(min(int(configs["min.insync.replicas"]), nodes))
        return TopicSpec(
            self.name, self.key, self.purpose, self.partitions, nodes, configs, self.schema
        )


def _spec(name: str, key: str, purpose: str, partitions: int = 6, **configs: str) -> TopicSpec:
    conf = {"min.insync.replicas": "2", **{k.replace("_", "."): v for k, v in configs.items()}}
    return TopicSpec(name, key, purpose, partitions, 3, conf, SCHEMAS.get(name))


# `connect.dlq` takes what the Connect sinks cannot convert (Connect's own error headers).
DLQ_STAGES = (
    "features",
    "connect",
    "serve",
    "decisions",
    "cards",
    "projections",
    "notifications",
)

CATALOGUE: tuple[TopicSpec, ...] = (
    _spec(
        "transactions", "customer_id", "raw card transactions (event time kept)", retention_ms=KEEP
    ),
    _spec(
        "customers",
        "customer_id",
        "customer profiles, reference data for joins",
        cleanup_policy="compact",
    ),
    _spec(
        "terminals",
        "terminal_id",
        "terminal profiles, reference data for joins",
        cleanup_policy="compact",
    ),
    _spec(
        "labels", "transaction_id", "delayed fraud confirmations (chargebacks)", retention_ms=KEEP
    ),
    _spec(
        "features", "customer_id", "each transaction with its real-time features", retention_ms=KEEP
    ),
    _spec(
        "windows",
        "customer_id or terminal_id",
        "live window results (tumbling, hopping, sliding, session, count) as JSON",
        retention_ms=str(7 * DAY_MS),
        # Window results of replayed history carry 2018 timestamps, which a 7-day retention
        # would delete at once; the broker stamps them on arrival instead.
        message_timestamp_type="LogAppendTime",
    ),
    _spec(
        "predictions",
        "transaction_id",
        "score, decision, model version, stage timestamps",
        retention_ms=KEEP,
    ),
    _spec(
        "model-updates",
        "model name",
        "published model versions, hot-swapped by the service",
        1,
        cleanup_policy="compact",
        # A version carries its ONNX graph (a tree ensemble is a few MB), not a file path.
        max_message_bytes=str(MODEL_MAX_BYTES),
    ),
    _spec(
        "card-commands",
        "card_id",
        "commands to the card service (BlockCard, RaiseAlert, ...)",
        retention_ms=str(30 * DAY_MS),
    ),
    _spec(
        "card-events",
        "card_id",
        "the card event store: never updated, never deleted",
        retention_ms=KEEP,
    ),
    _spec(
        "card-queries",
        "card_id",
        "requests for a card's state, answered by the card service (request-reply)",
        retention_ms=str(DAY_MS),
    ),
    _spec(
        "card-replies",
        "correlation id",
        "the card service's answers, matched to their request by correlation id",
        retention_ms=str(DAY_MS),
    ),
    _spec(
        "notifications",
        "card_id",
        "what the card holder is told (card blocked, payment to confirm) as JSON",
        retention_ms=str(30 * DAY_MS),
    ),
    _spec(
        "transactions.labelled",
        "transaction_id",
        "each transaction joined with its fraud label (a stream-stream join) as JSON",
        retention_ms=KEEP,
    ),
    _spec(
        "transactions.late",
        "customer_id",
        "transactions that arrived after their window closed",
        retention_ms=KEEP,
    ),
    *(
        _spec(
            f"{stage}.dlq",
            "original key",
            f"records the {stage} stage could not process, with origin headers",
            retention_ms=KEEP,
            # The serve stage dead-letters refused model versions, ONNX graph included.
            **({"max_message_bytes": str(MODEL_MAX_BYTES)} if stage == "serve" else {}),
        )
        for stage in DLQ_STAGES
    ),
)


def spec(name: str) -> TopicSpec:
    """The catalogue entry for `name`, or a clear error listing the topics."""
    for t in CATALOGUE:
        if t.name == name:
            return t
    raise TopicError(
        f"Unknown topic {name!r}: the catalogue has {', '.join(t.name for t in CATALOGUE)}."
    )


@dataclass(frozen=True)
class TopicCheck:
    """What `apply` found for one topic: created, ok, or drift with the problems."""

    name: str
    state: str  # "created", "ok" or "drift"
    problems: tuple[str, ...] = ()


def apply(settings: Settings, topics: tuple[TopicSpec, ...] = CATALOGUE) -> list[TopicCheck]:
    """Create the missing topics and check the existing ones against the catalogue."""
    nodes = settings.nodes if settings.local else None
    wanted = [t.for_cluster(nodes) for t in topics]
    created = set(
        create_missing_topics(
            settings,
            [
                NewTopic(t.name, t.partitions, t.replication_factor, config=t.configs)
                for t in wanted
            ],
        )
    )
    client = admin(settings, timeout=10)
    meta = client.list_topics(timeout=10).topics
    resources = [
        ConfigResource(ResourceType.TOPIC, t.name) for t in wanted if t.name not in created
    ]
    configs = {
        res.name: fut.result(timeout=30)
        for res, fut in (client.describe_configs(resources).items() if resources else [])
    }
    checks = []
    for t in wanted:
        if t.name in created:
            checks.append(TopicCheck(t.name, "created"))
            continue
        problems = []
        parts = meta[t.name].partitions
        if len(parts) != t.partitions:
            problems.append(f"has {len(parts)} partitions, the catalogue says {t.partitions}")
        rf = min(len(p.replicas) for p in parts.values())
        if rf != t.replication_factor:
            problems.append(
                f"has replication factor {rf}, the catalogue says {t.replication_factor}"
            )
        for key, value in t.configs.items():
            actual = configs[t.name][key].value
            if actual != value:
                problems.append(f"has {key}={actual}, the catalogue says {value}")
        checks.append(TopicCheck(t.name, "drift" if problems else "ok", tuple(problems)))
    return checks


def markdown_table(topics: tuple[TopicSpec, ...] = CATALOGUE) -> str:
    """The catalogue as the Markdown table in docs/topics.md."""
    rows = [
        "| topic | key | partitions | RF | min ISR | cleanup | retention | value schema "
        "| purpose |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in topics:
        retention = t.configs.get("retention.ms", "default")
        if retention == KEEP:
            retention = "forever"
        elif retention.isdigit():
            retention = f"{int(retention) // DAY_MS} days"
        rows.append(
            f"| `{t.name}` | {t.key} | {t.partitions} | {t.replication_factor} | "
            f"{t.configs['min.insync.replicas']} | {t.configs.get('cleanup.policy', 'delete')} | "
            f"{retention if not t.compacted else 'latest per key'} | "
            f"{t.schema + '.avsc' if t.schema else 'bytes'} | {t.purpose} |"
        )
    return "\n".join(rows) + "\n"


def docs_page() -> str:
    """docs/topics.md: the generated table with a short explanation."""
    return (
        "# Topics\n\n"
        "Generated from `rtml/topics.py` by `rtml topics docs`; a test keeps it in sync.\n\n"
        + markdown_table()
        + "\nKeys decide partitions, and order holds only within a partition: a customer's "
        "transactions share the key `customer_id`, so they are read in the order they happened. "
        "Reference data (customers, terminals) and model versions are compacted: Kafka keeps "
        "the latest record per key, so a new consumer reads the current table, not its history. "
        "History topics keep records forever (`retention.ms=-1`) because replayed transactions "
        "carry event timestamps from the past, which time-based retention would delete at once.\n"
    )
