"""The feature benchmark's consumers as child processes, and what one run of each measured.

Each consumer (`bench.features_worker`) runs as a process of its own, started and stopped
by `rtml.features.runner.FeatureRun` exactly as the app is in the lab, so each is timed the
same way from outside: the output topic's log end is polled, the first record out ends
start-up, and the run ends when every record of the backlog is out. The process's CPU time
(all threads, and its main thread alone, with the time that thread waited for a CPU) is
read at both moments.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
from confluent_kafka import Consumer, TopicPartition

from bench.cluster import _EXTERNAL_VARS
from bench.report import BenchError
from rtml.clients import QUIET
from rtml.config import Settings, project_root
from rtml.features.runner import FeatureRun

Log = Callable[[str], None]
_POLL_S = 0.1  # how often the output topic is looked at: the timing's resolution
_PROGRESS_S = 10.0


@contextmanager
def child_environment(settings: Settings) -> Iterator[None]:
    """RTML_* variables that point child processes at `settings`' cluster, while inside.

    A throw-away cluster exists only as a `Settings` object; the children (which read the
    environment, like every rtml process) need it spelled as variables. The project root
    goes on PYTHONPATH so `python -m bench.features_worker` resolves from anywhere.
    """
    saved = dict(os.environ)
    if settings.local:
        for name in _EXTERNAL_VARS:
            os.environ.pop(name, None)
        os.environ.update(
            RTML_HOME=str(settings.home),
            RTML_CLUSTER_NAME=settings.cluster_name,
            RTML_KAFKA_PORT=str(settings.kafka_port),
            RTML_REGISTRY_PORT=str(settings.registry_port),
            RTML_CONNECT_PORT=str(settings.connect_port),
            RTML_NODES=str(settings.nodes),
        )
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(project_root()) + (os.pathsep + path if path else "")
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class Worker(FeatureRun):
    """`python -m bench.features_worker KIND` in a process of its own, with FeatureRun's
    lifecycle: output to a log, SIGTERM then SIGKILL when the `with` block ends."""

    def __init__(
        self,
        settings: Settings,
        kind: str,
        group: str,
        output: str | None = None,
        profile: Path | None = None,
    ) -> None:
        super().__init__(settings, group=group)
        self.kind = kind
        self.argv = [sys.executable, "-m", "bench.features_worker", kind, "--group", group]
        if output:
            self.argv += ["--output", output]
        if profile:
            self.argv += ["--profile", str(profile)]


class Watermarks:
    """The log end of one topic's partitions, asked often through one consumer."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer(
            {**settings.client_config(group_id="rtml-bench-watch"), "logger": QUIET}
        )
        meta = self.consumer.list_topics(topic, timeout=10).topics[topic]
        if meta.error is not None:
            raise BenchError(f"Topic {topic} does not exist on {settings.bootstrap}.")
        self.partitions = sorted(meta.partitions)

    def ends(self) -> dict[int, int]:
        """Each partition's high watermark: the offset the next record will get."""
        return {
            p: self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1]
            for p in self.partitions
        }

    def total(self) -> int:
        return sum(self.ends().values())

    def close(self) -> None:
        self.consumer.close()


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds a process has used: all threads, its main thread, and the time that
    main thread was ready to run but waited for a CPU (Linux schedstat; None elsewhere)."""

    process_s: float
    main_s: float
    main_wait_s: float | None

    def __sub__(self, other: CpuSample) -> CpuSample:
        wait = (
            None
            if self.main_wait_s is None or other.main_wait_s is None
            else self.main_wait_s - other.main_wait_s
        )
        return CpuSample(self.process_s - other.process_s, self.main_s - other.main_s, wait)


def cpu_sample(pid: int) -> CpuSample:
    """The CPU use of process `pid` so far."""
    proc = psutil.Process(pid)
    times = proc.cpu_times()
    main = next((t for t in proc.threads() if t.id == pid), None)
    total = times.user + times.system
    wait = None
    with contextlib.suppress(OSError, IndexError, ValueError):
        # Fields: time on a CPU, time waiting on a run queue, time slices (nanoseconds).
        wait = int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[1]) / 1e9
    return CpuSample(total, main.user_time + main.system_time if main else total, wait)


@dataclass(frozen=True)
class Throughput:
    """One consumer processing the whole backlog; the rate counts from its first record out."""

    consumer: str
    backlog: int  # records it had to process
    records: int  # of which written after its first output was seen: the measured ones
    startup_s: float  # from the process's start to its first record out
    seconds: float  # from its first record out to its last
    cpu: CpuSample  # used over `seconds`
    load: float  # the machine's 1-minute load average when it started

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    def per_record_us(self, seconds: float | None) -> float | None:
        return None if seconds is None else seconds / self.records * 1e6


def measure_backlog(
    worker: Worker,
    watch: Watermarks,
    backlog: int,
    *,
    timeout: float,
    log: Log = print,
) -> Throughput:
    """Start `worker`, wait until it has written `backlog` records to `watch`'s topic, and
    time it. The worker keeps running: the caller stops it. Fails unless exactly `backlog`
    records came out."""
    base = watch.total()
    load = os.getloadavg()[0]
    worker.start()
    assert worker.proc is not None
    pid, started = worker.proc.pid, time.monotonic()
    first: tuple[float, int, CpuSample] | None = None
    next_line = started + _PROGRESS_S
    while True:
        now, done = time.monotonic(), watch.total() - base
        if first is None and done > 0:
            first = (now, done, cpu_sample(pid))
        if done >= backlog:
            break
        if not worker.running:
            raise BenchError(
                f"The {worker.kind} consumer stopped after {done:,} of {backlog:,} records; "
                f"its output:\n{worker.output()}"
            )
        if now - started > timeout:
            raise BenchError(
                f"The {worker.kind} consumer wrote {done:,} of {backlog:,} records in "
                f"{timeout:.0f} s: too slow or stuck; its output:\n{worker.output()}"
            )
        if now >= next_line:
            log(f"  {worker.kind}: {done:,} of {backlog:,} records")
            next_line = now + _PROGRESS_S
        time.sleep(_POLL_S)
    cpu = cpu_sample(pid)
    if done != backlog:
        raise BenchError(
            f"The {worker.kind} consumer wrote {done:,} records for a backlog of {backlog:,}: "
            "records were duplicated, so the results are not valid."
        )
    assert first is not None
    at, seen, cpu_first = first
    if seen >= backlog or now <= at:
        raise BenchError(
            f"The {worker.kind} consumer's output was first seen complete: the backlog of "
            f"{backlog:,} is too small to time it."
        )
    return Throughput(
        worker.kind, backlog, backlog - seen, at - started, now - at, cpu - cpu_first, load
    )


def check_count(watch: Watermarks, base: int, expected: int, who: str) -> None:
    """Fail unless `watch`'s topic grew by exactly `expected` records since `base`."""
    grew = watch.total() - base
    if grew != expected:
        raise BenchError(
            f"{who} wrote {grew:,} records where {expected:,} were expected: records were lost "
            "or duplicated, so the results are not valid."
        )
