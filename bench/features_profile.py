"""Where the feature app spends its time: a short run under cProfile, its top costs named.

cProfile counts time in Python functions and in the C functions they call (librdkafka
calls, RocksDB reads and writes, fastavro), in the profiled process's main thread, which
is where every record is processed. It slows Python calls down, so the shares matter here,
not the absolute rate.
"""

from __future__ import annotations

import dataclasses
import pstats
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.features_runs import Watermarks, Worker
from bench.report import BenchError

Log = Callable[[str], None]
# A function's component, from its file or, for built-ins, its name: first match wins.
COMPONENTS = (
    ("confluent-kafka / librdkafka", re.compile(r"confluent_kafka|cimpl")),
    ("RocksDB state (rocksdict)", re.compile(r"rocksdict|Rdict|WriteBatch")),
    ("Avro (fastavro)", re.compile(r"fastavro")),
    ("Quix Streams", re.compile(r"quixstreams")),
    ("rtml feature code", re.compile(r"[/\\]rtml[/\\]|[/\\]solutions[/\\]|[/\\]labs[/\\]")),
    ("JSON (state, windows)", re.compile(r"json|orjson")),
)
OTHER = "other (Python's library, the interpreter)"


@dataclass(frozen=True)
class Cost:
    """One function's own time (its callees excluded) in a profile."""

    name: str
    component: str
    seconds: float
    calls: int


@dataclass(frozen=True)
class Profile:
    """The top functions by own time and the time per component, over `records` records."""

    records: int
    seconds: float  # wall time of the profiled span
    total_s: float  # profiled CPU time of the main thread
    top: list[Cost]
    components: dict[str, float]  # component -> own seconds, largest first
    before: int = 0  # records the instance wrote before profiling began (not in `records`)

    def share(self, seconds: float) -> float:
        return seconds / self.total_s if self.total_s else 0.0


def _name(path: str, line: int, func: str) -> str:
    """A short, machine-independent name: package-relative file and function."""
    if path == "~":  # a built-in or C function: its name says what it is
        return func
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        for top in ("rtml/", "solutions/", "labs/", "bench/"):
            if f"/{top}" in path:
                path = top + path.split(f"/{top}", 1)[1]
                break
        else:
            path = Path(path).name
    return f"{path}:{line} {func}"


def component(path: str, func: str) -> str:
    """Which part of the stack a profiled function belongs to."""
    text = f"{path} {func}"
    for name, pattern in COMPONENTS:
        if pattern.search(text):
            return name
    return OTHER


def summarize(stats_file: Path, records: int, seconds: float, top: int = 10) -> Profile:
    """The `top` functions by own time and the own time per component in `stats_file`."""
    raw = pstats.Stats(str(stats_file)).stats  # type: ignore[attr-defined]
    costs = [
        Cost(_name(path, line, func), component(path, func), tt, nc)
        for (path, line, func), (_cc, nc, tt, _ct, _callers) in raw.items()
    ]
    costs.sort(key=lambda c: c.seconds, reverse=True)
    by_component: dict[str, float] = {}
    for cost in costs:
        by_component[cost.component] = by_component.get(cost.component, 0.0) + cost.seconds
    ordered = dict(sorted(by_component.items(), key=lambda kv: kv[1], reverse=True))
    return Profile(records, seconds, sum(c.seconds for c in costs), costs[:top], ordered)


def profile_app(
    worker: Worker, watch: Watermarks, records: int, stats_file: Path, *, log: Log = print
) -> Profile:
    """Run `worker` (made with `profile=stats_file`) on the backlog; once it has written a
    fifth of `records` (start-up and the reference tables are behind it), profile it while
    it writes `records` more, then stop it and summarize what it wrote."""
    base = watch.total()
    started = time.monotonic()
    timeout = 300 + records / 20  # slower than anything seen, under the profiler's cost
    with worker:
        assert worker.proc is not None
        profiled_from: tuple[float, int] | None = None
        while True:
            done = watch.total() - base
            if profiled_from is None and done >= max(1, records // 5):
                worker.proc.send_signal(signal.SIGUSR1)
                profiled_from = (time.monotonic(), done)
            elif profiled_from is not None and done >= profiled_from[1] + records:
                break
            if not worker.running:
                raise BenchError(
                    f"The profiled feature app stopped; its output:\n{worker.output()}"
                )
            if time.monotonic() - started > timeout:
                raise BenchError(f"The profiled feature app wrote only {done:,} records.")
            time.sleep(0.2)
    seconds = time.monotonic() - profiled_from[0]
    done = watch.total() - base - profiled_from[1]  # all written while it was profiled
    if not stats_file.is_file():
        raise BenchError(f"The profiled feature app wrote no statistics:\n{worker.output()}")
    log(f"  profiled {done:,} records in {seconds:.1f} s")
    return dataclasses.replace(summarize(stats_file, done, seconds), before=profiled_from[1])
