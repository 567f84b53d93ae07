"""Feature freshness at a fixed input rate: how long after a transaction its features exist.

With the feature app caught up, `live` emits transactions at a fixed rate with now-time
(each record's timestamp, CreateTime, is its send time, and its `tx_datetime` the same
millisecond), then every features record written for them is read back. Freshness is the
record's `feature_time` (wall clock when the app computed it) minus that send time. The
phase also says whether the app kept up: how many features were out when the last
transaction had been acknowledged, and how long the rest took.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from confluent_kafka import Consumer, TopicPartition

from bench.features_runs import Watermarks, Worker
from bench.report import BenchError
from rtml.clients import QUIET
from rtml.config import Settings
from rtml.features.labels import to_millis
from rtml.schemas.wire import WireDeserializer
from rtml.simulate import Simulation
from rtml.simulate.producer import live

Log = Callable[[str], None]
KEEP_UP_S = 1.0  # kept up: at the end, at most this much input is still without features
SHORT_SECONDS = 10.0  # a phase at a rate the app is known not to keep up with
_PROGRESS_S = 10.0


@dataclass(frozen=True)
class Percentiles:
    """Nearest-rank percentiles (each one a value that was observed) of some milliseconds."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float


def percentiles(values: Sequence[float] | np.ndarray) -> Percentiles:
    """p50, p95, p99 and max of `values`; fails on an empty sample."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise BenchError("No values to take percentiles of: nothing was measured.")
    p50, p95, p99 = np.percentile(data, [50, 95, 99], method="inverted_cdf")
    return Percentiles(int(data.size), float(p50), float(p95), float(p99), float(data.max()))


@dataclass(frozen=True)
class Phase:
    """One rate: what went in, what came out and when, and how fresh the features were."""

    rate: float  # asked for, transactions/s
    sent: int  # transactions sent (and acknowledged)
    labels: int  # labels sent alongside (each transaction's, `live`'s delay later)
    seconds: float  # from the first send to the last acknowledgement
    out_by_end: int  # features written by then
    drain_s: float  # from then until the last features record
    freshness: Percentiles
    feature_bytes: float  # mean size of a features record's value
    load: float  # 1-minute load average when the phase started

    @property
    def input_rate(self) -> float:
        return self.sent / self.seconds

    @property
    def output_rate(self) -> float:
        """Features per second while transactions were coming in."""
        return self.out_by_end / self.seconds

    @property
    def lag_end(self) -> int:
        """Transactions still without features when the last one had been acknowledged."""
        return self.sent - self.out_by_end

    @property
    def kept_up(self) -> bool:
        return kept_up(self.lag_end, self.input_rate)


def kept_up(lag_end: int, input_rate: float) -> bool:
    """True when the backlog at the end is at most `KEEP_UP_S` seconds of input."""
    return lag_end <= math.ceil(input_rate * KEEP_UP_S)


def run_phase(
    settings: Settings,
    sim: Simulation,
    app: Worker,
    watch: Watermarks,
    rate: float,
    duration: float,
    capacity: float,
    *,
    log: Log = print,
) -> Phase:
    """Emit `duration` s of live transactions at `rate` to the running, caught-up `app`,
    then wait until every one has its features. `capacity` (records/s the app managed on
    the backlog) bounds that wait: three times what it should take, plus two minutes."""
    start = watch.ends()
    base = sum(start.values())
    load = os.getloadavg()[0]
    report = live(settings, sim, rate=rate, duration=duration, progress=False)
    if not report.ok:
        raise BenchError(f"The live input was not fully acknowledged: {report.summary()}")
    out_by_end = watch.total() - base
    ended = time.monotonic()
    sent = report.topics.get("transactions", 0)
    timeout = 120 + 3 * sent / capacity
    next_line = ended + _PROGRESS_S
    while (out := watch.total() - base) < sent:
        now = time.monotonic()
        if not app.running:
            raise BenchError(f"The feature app stopped mid-phase; its output:\n{app.output()}")
        if now - ended > timeout:
            raise BenchError(
                f"The feature app wrote {out:,} of {sent:,} features within {timeout:.0f} s of "
                "the end of the input: it is stuck."
            )
        if now >= next_line:
            log(f"  catching up: {out:,} of {sent:,} features")
            next_line = now + _PROGRESS_S
        time.sleep(0.05)
    drain_s = time.monotonic() - ended if out_by_end < sent else 0.0
    ages, sizes = read_freshness(settings, watch.topic, start)
    if len(ages) != sent:
        raise BenchError(
            f"{len(ages):,} features records came out for {sent:,} live transactions: records "
            "were lost or duplicated, so the results are not valid."
        )
    phase = Phase(
        rate,
        sent,
        report.topics.get("labels", 0),
        report.duration_s,
        min(out_by_end, sent),
        drain_s,
        percentiles(ages),
        float(np.mean(sizes)),
        load,
    )
    log(
        f"  {rate:,.0f} tx/s asked, {phase.input_rate:,.0f} sent, {phase.output_rate:,.0f} "
        f"features/s; {phase.lag_end:,} behind at the end, drained in {drain_s:.1f} s; "
        f"freshness p50 {phase.freshness.p50:,.0f} ms, p99 {phase.freshness.p99:,.0f} ms"
    )
    return phase


def read_freshness(
    settings: Settings, topic: str, start: dict[int, int], timeout: float = 300.0
) -> tuple[np.ndarray, np.ndarray]:
    """(feature_time - tx_datetime in ms, value size in bytes) of every record of `topic`
    from the offsets `start` to the current end."""
    consumer = Consumer(
        {
            **settings.client_config(
                group_id=f"rtml-bench-read-{uuid.uuid4().hex[:6]}", enable_auto_commit=False
            ),
            "logger": QUIET,
        }
    )
    decode = WireDeserializer.for_topic(settings, "features")
    ages: list[int] = []
    sizes: list[int] = []
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in start
        }
        left = {p: end for p, end in ends.items() if end > start[p]}
        consumer.assign([TopicPartition(topic, p, start[p]) for p in left])
        deadline = time.monotonic() + timeout
        while left:
            if time.monotonic() > deadline:
                raise BenchError(f"Could not read {topic} to its end within {timeout:g} s.")
            for msg in consumer.consume(5000, timeout=1):
                if msg.error() is not None or msg.partition() not in left:
                    continue
                value = msg.value()
                record = decode(value)
                ages.append(to_millis(record["feature_time"]) - to_millis(record["tx_datetime"]))
                sizes.append(len(value))
                if msg.offset() + 1 >= left[msg.partition()]:
                    del left[msg.partition()]
    finally:
        consumer.close()
    return np.asarray(ages, dtype=float), np.asarray(sizes, dtype=float)
