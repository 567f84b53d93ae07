"""What each prediction service instance is doing, as a small JSON file the control room reads.

Every instance rewrites `<cluster dir>/serve/<group>-<instance>.json` about once a second
(atomically: a reader never sees half a file). A file not rewritten for a few seconds
belongs to an instance that stopped or hangs, which `ServeStatus.stale` says.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rtml.config import Settings

STALE_AFTER_S = 5.0


@dataclass
class ServeStatus:
    """One instance's counters and state; `records == predictions + dlq` once idle."""

    group: str
    instance: int
    pid: int
    guarantee: str
    state: str = "starting"  # starting, waiting for a model, serving, stopped
    model_version: str | None = None
    partitions: list[int] = field(default_factory=list)
    records: int = 0  # features records consumed
    predictions: int = 0  # predictions written (reviewed included)
    reviewed: int = 0  # records with invalid values: REVIEW without scoring
    dlq: int = 0  # records that did not decode, written to serve.dlq
    batches: int = 0
    batch_p99_ms: float = 0.0  # in-process time of a batch: consumed to produced
    swaps: int = 0
    refused: list[dict[str, str]] = field(default_factory=list)  # {"version", "reason"}
    last_error: str | None = None
    updated: float = field(default_factory=time.time)

    @property
    def mean_batch(self) -> float:
        """Records per batch, on average."""
        return self.records / self.batches if self.batches else 0.0

    @property
    def stale(self) -> bool:
        """True when the instance stopped, or has not written its status for a while."""
        return self.state == "stopped" or time.time() - self.updated > STALE_AFTER_S

    def line(self) -> str:
        """The status as one line for `rtml serve status`."""
        return (
            f"model {self.model_version or '-'}  in {self.records:,}  "
            f"predictions {self.predictions:,} (reviewed {self.reviewed:,})  dlq {self.dlq:,}  "
            f"batches {self.batches:,} (mean {self.mean_batch:.1f}, "
            f"p99 {self.batch_p99_ms:.1f} ms)  refused models {len(self.refused)}"
        )


class BatchTimes:
    """The last few thousand batch times, for a p99 that follows the recent load."""

    def __init__(self, keep: int = 2048) -> None:
        self.times: deque[float] = deque(maxlen=keep)

    def add(self, ms: float) -> None:
        """Record one batch's time in ms."""
        self.times.append(ms)

    def p99(self) -> float:
        """The 99th percentile of the recent batch times, in ms."""
        return float(np.percentile(self.times, 99)) if self.times else 0.0


def status_dir(settings: Settings) -> Path:
    """The folder where prediction service instances write their status files."""
    return settings.cluster_dir / "serve"


def write_status(settings: Settings, status: ServeStatus) -> Path:
    """Write `status` atomically (a temporary file renamed over the old one)."""
    folder = status_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{status.group}-{status.instance}.json"
    status.updated = time.time()
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(status)))
    tmp.replace(path)
    return path


def read_status(settings: Settings, group: str | None = None) -> list[ServeStatus]:
    """Every instance's last status (of `group` only, if given), by group and instance."""
    out = []
    for path in sorted(status_dir(settings).glob("*.json")):
        try:
            status = ServeStatus(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue  # being replaced, or written by another version of rtml
        if group is None or status.group == group:
            out.append(status)
    return sorted(out, key=lambda s: (s.group, s.instance))


def render(statuses: list[ServeStatus]) -> str:
    """A table for `rtml serve status`."""
    if not statuses:
        return "No prediction service has run on this cluster: start one with `rtml serve run`."
    lines = []
    for s in statuses:
        state = s.state
        if s.stale and s.state != "stopped":
            state += f" (no update for {time.time() - s.updated:.0f} s)"
        lines.append(
            f"{s.group} instance {s.instance} (pid {s.pid}, {s.guarantee}): {state}, "
            f"partitions {','.join(map(str, s.partitions)) or '-'}\n  {s.line()}"
        )
        lines.extend(f"  refused {r['version']}: {r['reason']}" for r in s.refused[-5:])
        if s.last_error:
            lines.append(f"  last error: {s.last_error}")
    return "\n".join(lines)
