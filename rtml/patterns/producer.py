"""Producer patterns, measured: what acks, idempotence and batching cost and buy.

Each profile is a plain librdkafka configuration; `measure` sends the same records with it
and reports throughput, delivery latency (send to acknowledgement) and where the records
landed, so the trade-offs are numbers rather than folklore.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from confluent_kafka import Producer

from rtml.config import Settings

PROFILES: dict[str, dict[str, object]] = {
    # The leader does not even answer: fastest, and a lost record is never known.
    "fire-and-forget": {"acks": "0", "enable.idempotence": False, "linger.ms": 0},
    # Every in-sync replica has the record before it counts; retries cannot duplicate.
    "durable": {"acks": "all", "enable.idempotence": True, "linger.ms": 0},
    # Durable and fast: wait up to 20 ms to fill 256 KB batches, compress them with lz4.
    "durable-batched": {
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 20,
        "batch.size": 262144,
        "compression.type": "lz4",
    },
}


@dataclass
class ProducerRun:
    """What one measured run did: counts, rates, latency percentiles, partition spread."""

    profile: str
    records: int
    acked: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    bytes: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    partitions: Counter[int] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        """Acknowledged records per second."""
        return self.acked / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        """Payload megabytes (10^6 bytes) per second."""
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0

    def latency(self, q: float) -> float:
        """Send-to-acknowledgement latency at quantile `q` (0..100), in milliseconds."""
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def summary(self) -> dict[str, object]:
        """The run's figures as a dict, one table row in the notebook."""
        return {
            "profile": self.profile,
            "records": self.records,
            "acked": self.acked,
            "failed": self.failed,
            "msgs/s": round(self.rate),
            "MB/s": round(self.mb_per_s, 2),
            "p50 ms": round(self.latency(50), 2),
            "p99 ms": round(self.latency(99), 2),
        }


def measure(
    settings: Settings,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    profile: str = "durable",
    extra: dict[str, object] | None = None,
) -> ProducerRun:
    """Send `(key, value)` records to `topic` with `profile`; count every delivery report."""
    if profile not in PROFILES:
        raise ValueError(f"Unknown producer profile {profile!r}: choose from {', '.join(PROFILES)}")
    conf = settings.client_config(**{k.replace(".", "_"): v for k, v in PROFILES[profile].items()})
    conf.update(extra or {})
    producer = Producer(conf)
    run = ProducerRun(profile, 0)
    started = time.perf_counter()

    def report(err, msg, sent_at: float) -> None:
        if err is not None:
            run.failed += 1
            if len(run.errors) < 5:
                run.errors.append(str(err))
            return
        run.acked += 1
        run.latencies_ms.append((time.perf_counter() - sent_at) * 1000)
        run.partitions[msg.partition()] += 1

    for key, value in records:
        sent_at = time.perf_counter()
        callback: Callable = lambda err, msg, t=sent_at: report(err, msg, t)  # noqa: E731
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=callback)
                break
            except BufferError:
                producer.poll(0.01)  # the local queue is full: let deliveries drain first
        run.records += 1
        run.bytes += len(value) + (len(key) if key else 0)
        producer.poll(0)
    producer.flush(120)
    run.seconds = time.perf_counter() - started
    return run


def skew(partitions: Counter[int], n_partitions: int) -> float:
    """How uneven a spread is: the fullest partition's share over a perfectly even share."""
    total = sum(partitions.values())
    if not total:
        return 0.0
    return max(partitions.get(p, 0) for p in range(n_partitions)) / (total / n_partitions)
