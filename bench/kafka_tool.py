"""Kafka's own producer tool (`ProducerPerformance`), run from the cluster's jars and JDK."""

from __future__ import annotations

import dataclasses
import os
import re
import resource
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.report import BenchError
from rtml.cluster.tools import tool_command
from rtml.config import Settings
from rtml.connect.worker import java_security

# The summary line ProducerPerformance prints last (Kafka 4.x; "MB" there means MiB).
_SUMMARY = re.compile(
    r"(?P<records>\d+)(?: steady state)? records sent, (?P<rate>[\d.]+) records/sec "
    r"\((?P<mib>[\d.]+) MB/sec\), (?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max "
    r"latency, (?P<p50>\d+) ms 50th, (?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th, "
    r"(?P<p999>\d+) ms 99\.9th"
)


@dataclass(frozen=True)
class ToolSummary:
    """The last line of Kafka's ProducerPerformance."""

    records: int
    rate: float  # records/s
    mib_s: float  # the tool's "MB/sec" is 2^20 bytes
    avg_ms: float
    max_ms: float
    p50_ms: int
    p95_ms: int
    p99_ms: int
    p999_ms: int
    cpu_s: float | None = None  # CPU time of the tool's JVM, start-up and JIT included


def parse_summary(output: str) -> ToolSummary:
    """The summary of ProducerPerformance's output (its last matching line)."""
    found = list(_SUMMARY.finditer(output))
    if not found:
        tail = "\n".join(output.strip().splitlines()[-10:])
        raise BenchError(f"Kafka's producer tool printed no summary line; it said:\n{tail}")
    m = found[-1]
    return ToolSummary(
        int(m["records"]),
        float(m["rate"]),
        float(m["mib"]),
        float(m["avg"]),
        float(m["max"]),
        int(m["p50"]),
        int(m["p95"]),
        int(m["p99"]),
        int(m["p999"]),
    )


def producer_properties(settings: Settings, overrides: Mapping[str, str]) -> dict[str, str]:
    """The Java producer's settings: the cluster, its security, acks=all, idempotence, then
    `overrides`."""
    return {
        "bootstrap.servers": settings.bootstrap,
        **java_security(settings.security),
        "acks": "all",
        "enable.idempotence": "true",
        **overrides,
    }


def producer_perf_test(
    settings: Settings,
    topic: str,
    records: int,
    record_size: int,
    overrides: Mapping[str, str],
    *,
    log: Callable[[str], None] = print,
    timeout: float = 600.0,
) -> ToolSummary:
    """Run ProducerPerformance against `topic` as fast as it goes; fail unless all were acked.

    Its settings go in a properties file only this user can read (they may hold a password);
    its progress lines (every 5 s) are passed to `log` as they come.
    """
    with tempfile.TemporaryDirectory(prefix="rtml-bench-") as tmp:
        config = Path(tmp) / "producer.properties"
        config.touch(mode=0o600)
        # In a properties file a backslash escapes the next character.
        config.write_text(
            "".join(
                f"{k}={v.replace(chr(92), chr(92) * 2)}\n"
                for k, v in producer_properties(settings, overrides).items()
            )
        )
        argv = tool_command(
            settings,
            "producer-perf-test",
            [
                "--topic",
                topic,
                "--num-records",
                str(records),
                "--record-size",
                str(record_size),
                "--throughput",
                "-1",
                "--producer.config",
                str(config),
            ],
        )
        cpu_before = _children_cpu()
        output, code = _run(argv, log, timeout)
        cpu_s = _children_cpu() - cpu_before
    if code != 0:
        tail = "\n".join(output.strip().splitlines()[-10:])
        raise BenchError(f"Kafka's producer tool exited with code {code}; it said:\n{tail}")
    summary = parse_summary(output)
    if summary.records != records:
        raise BenchError(
            f"Kafka's producer tool had {summary.records:,} of {records:,} records acknowledged "
            "(its output above names the errors): the results would not be comparable."
        )
    return dataclasses.replace(summary, cpu_s=cpu_s)


def _children_cpu() -> float:
    """CPU seconds used by this process's finished children (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(argv: list[str], log: Callable[[str], None], timeout: float) -> tuple[str, int]:
    """Run `argv`, passing its progress lines to `log`; kill it after `timeout` seconds."""
    # A C locale keeps the decimal point a '.', whatever the user's locale.
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            # Progress lines only: the JVM's warnings stay out of sight unless the run fails.
            if " records sent" in line:
                log(f"    kafka tool: {line.rstrip()}")
        code = proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return "".join(lines), code
