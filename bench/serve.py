"""The prediction service's latency and throughput at fixed rates of features records.

Features records (from a simulated history, with a tiny model) are written straight to
`features` at each rate for a while, with `rtml serve run` running as in the lab. A
consumer tails `predictions` and, for every prediction, takes three times:

- the features record's Kafka timestamp (carried in the prediction as `appended_time`),
- the prediction record's Kafka timestamp (set when the service produces it),
- when the prediction reached the tailing consumer (read_committed: under exactly-once,
  after its transaction committed).

Both differences are reported as p50/p95/p99/max, with predictions/s and the mean batch.

    python -m bench.serve                          # a throw-away cluster on free ports
    python -m bench.serve --external --rates 1000 5000 --seconds 20
        # the cluster of the RTML_* settings: its features and predictions are EMPTIED
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import psutil
from confluent_kafka import Consumer, TopicPartition

from bench.cluster import throwaway_cluster
from rtml.config import Settings
from rtml.features.labels import to_millis
from rtml.features.runner import fresh_topics
from rtml.schemas import register_all
from rtml.schemas.wire import WireDeserializer
from rtml.serve.inputs import history, publish_model, records, send_features, tiny_model
from rtml.serve.runner import ServeRun
from rtml.serve.service import Guarantee

TOPICS = ("features", "predictions", "model-updates", "serve.dlq")


@dataclass
class Tail:
    """Every prediction seen: (features ts, prediction ts, received) in ms, by arrival."""

    settings: Settings
    seen: list[tuple[int, int, float]]
    stop: threading.Event
    ready: threading.Event

    def run(self) -> None:
        decode = WireDeserializer.for_topic(self.settings, "predictions")
        consumer = Consumer(
            self.settings.client_config(
                group_id=f"bench-tail-{uuid.uuid4().hex[:6]}",
                enable_auto_commit=False,
                isolation_level="read_committed",
                fetch_wait_max_ms=5,
            )
        )
        parts = consumer.list_topics("predictions", timeout=10).topics["predictions"].partitions
        # From each partition's end now: every prediction of the run, none from before.
        ends = [
            TopicPartition(
                "predictions",
                p,
                consumer.get_watermark_offsets(TopicPartition("predictions", p), timeout=10)[1],
            )
            for p in parts
        ]
        consumer.assign(ends)
        self.ready.set()
        while not self.stop.is_set():
            for msg in consumer.consume(1000, timeout=0.05):
                if msg.error() is None:
                    now = time.time() * 1000
                    p = decode(msg.value())
                    self.seen.append((to_millis(p["appended_time"]), msg.timestamp()[1], now))
        consumer.close()


def _cpu(run: ServeRun) -> float:
    """CPU seconds the service process has used (user + system): its cost whatever the load."""
    assert run.proc is not None
    times = psutil.Process(run.proc.pid).cpu_times()
    return times.user + times.system


def percentiles(values: np.ndarray) -> str:
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return f"p50 {p50:6.1f}  p95 {p95:6.1f}  p99 {p99:6.1f}  max {values.max():7.1f} ms"


def measure(
    settings: Settings,
    rates: list[float | None],
    seconds: float,
    guarantee: Guarantee,
    max_wait_ms: float | None = None,
) -> None:
    register_all(settings)
    fresh_topics(settings, TOPICS)  # also creates every other missing catalogue topic
    frame = history(n_customers=2000, n_terminals=4000, n_days=30)
    rows = records(frame)
    publish_model(settings, tiny_model(frame, "v1"))
    tail = Tail(settings, [], threading.Event(), threading.Event())
    reader = threading.Thread(target=tail.run, daemon=True)
    with ServeRun(settings, guarantee=guarantee, max_wait_ms=max_wait_ms) as run:
        run.wait_status(lambda s: s.state == "serving" and s.partitions, 120, "serving")
        reader.start()
        tail.ready.wait(30)
        next_id = 0
        for rate in rates:
            n = int((rate or 5000) * seconds)
            batch = [
                {**rows[(next_id + i) % len(rows)], "transaction_id": next_id + i} for i in range(n)
            ]
            next_id += n
            before = run.status()
            cpu_before = _cpu(run)
            start_seen = len(tail.seen)
            started = time.monotonic()
            send_features(settings, batch, rate=rate)
            sent_s = time.monotonic() - started
            deadline = time.monotonic() + 120
            while len(tail.seen) - start_seen < n and time.monotonic() < deadline:
                time.sleep(0.1)
            done_s = time.monotonic() - started
            after = run.status()
            cpu_us = (_cpu(run) - cpu_before) / n * 1e6
            got = tail.seen[start_seen:]
            feat, pred, recv = (np.array(c, dtype=float) for c in zip(*got, strict=True))
            batches = after.batches - before.batches
            print(
                f"rate {'max' if rate is None else f'{rate:,.0f}/s'}: sent {n:,} in {sent_s:.1f} s "
                f"({n / sent_s:,.0f}/s); {len(got):,} predictions in {done_s:.1f} s "
                f"({len(got) / done_s:,.0f}/s); {batches:,} batches, mean "
                f"{(after.records - before.records) / max(batches, 1):.1f} records, "
                f"batch p99 {after.batch_p99_ms:.1f} ms; service CPU {cpu_us:.0f} µs/record "
                f"({guarantee}, max wait {max_wait_ms if max_wait_ms is not None else 'default'} "
                f"ms; load average {os.getloadavg()[0]:.1f})"
            )
            print(f"  features ts -> prediction ts:        {percentiles(pred - feat)}")
            print(f"  features ts -> prediction received:  {percentiles(recv - feat)}")
        tail.stop.set()
        reader.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[1000.0, 5000.0])
    parser.add_argument("--max", action="store_true", help="also as fast as one producer can")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--max-wait-ms", type=float, help="the service's --max-wait-ms")
    parser.add_argument(
        "--guarantee", choices=("at-least-once", "exactly-once"), default="at-least-once"
    )
    parser.add_argument("--external", action="store_true", help="use the RTML_* cluster")
    args = parser.parse_args()
    rates: list[float | None] = [*args.rates, *([None] if args.max else [])]
    with nullcontext(Settings.from_env()) if args.external else throwaway_cluster() as settings:
        measure(settings, rates, args.seconds, args.guarantee, args.max_wait_ms)


if __name__ == "__main__":
    main()
