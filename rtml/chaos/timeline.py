"""A scenario's timeline: timestamped events from the scenario, the producer and the cluster.

The cluster's part comes from polling its metadata (`get_status`) every fraction of a
second and comparing each snapshot with the one before: a broker gone or back, the
controller moved, a partition's leader moved, its ISR shrank or grew, a broker back in
every ISR. Each event goes to the scenario's callback as it happens, so a terminal or the
control room can show the run live.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rtml.clients import admin
from rtml.cluster.status import ClusterStatus, get_status
from rtml.config import Settings

# Kinds of event, so a reader (or a test) can pick them out without parsing the text.
STEP = "step"  # what the scenario did: a kill, a restart, a phase
BROKER = "broker"  # a broker went down or came back
CONTROLLER = "controller"  # the active controller changed
LEADER = "leader"  # a partition's leader moved, or it has none (offline)
ISR = "isr"  # a partition's in-sync replicas shrank or grew
REJOINED = "rejoined"  # a broker is back in every ISR it belongs to
PRODUCER = "producer"  # acks stalled, resumed, delivery errors
CHECK = "check"  # a scenario's check and its outcome

Change = tuple[str, str]  # (kind, text)


@dataclass(frozen=True)
class Event:
    """One thing that happened, `at` seconds after the scenario started."""

    at: float
    kind: str
    text: str

    def line(self) -> str:
        return f"{self.at:7.2f} s  {self.kind:<10} {self.text}"


OnEvent = Callable[[Event], None]


class Timeline:
    """The events of one run, in order; each is also handed to `on_event` when added."""

    def __init__(self, on_event: OnEvent | None = None) -> None:
        self.started = time.monotonic()
        self._on_event = on_event
        self._events: list[Event] = []
        self._lock = threading.Lock()

    def add(self, kind: str, text: str, when: float | None = None) -> Event:
        """Record an event now (or at monotonic time `when`) and report it."""
        at = (time.monotonic() if when is None else when) - self.started
        event = Event(round(at, 3), kind, text)
        with self._lock:
            self._events.append(event)
        if self._on_event is not None:
            self._on_event(event)
        return event

    def since_start(self, moment: float) -> float:
        """Monotonic time `moment` as seconds since the start of the run."""
        return moment - self.started

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return sorted(self._events, key=lambda e: e.at)

    def kinds(self) -> set[str]:
        return {e.kind for e in self.events}


def _ids(nodes: Iterable[int]) -> str:
    return "[" + ",".join(str(n) for n in sorted(nodes)) + "]"


def diff(before: ClusterStatus, after: ClusterStatus, topics: Iterable[str] = ()) -> list[Change]:
    """What changed from one snapshot to the next, as (kind, text) pairs.

    Partition events are reported for `topics` only (a scenario watches its own topic; the
    cluster's other partitions would bury it); "back in every ISR" looks at all of them.
    """
    if not before.reachable or not after.reachable:
        if before.reachable != after.reachable:
            return [(BROKER, "cluster reachable again" if after.reachable else after.message)]
        return []
    changes: list[Change] = []
    was_up = {b.node_id: b.up for b in before.brokers}
    for b in after.brokers:
        if b.node_id in was_up and was_up[b.node_id] != b.up:
            changes.append((BROKER, f"broker {b.node_id} {'up' if b.up else 'down'}"))
    if before.controller != after.controller:
        changes.append(
            (
                CONTROLLER,
                f"controller {before.controller if before.controller is not None else 'none'}"
                f" -> {after.controller if after.controller is not None else 'none'}",
            )
        )
    watched = set(topics)
    old = {(p.topic, p.partition): p for p in before.partitions}
    for p in after.partitions:
        prev = old.get((p.topic, p.partition))
        if prev is None or p.topic not in watched:
            continue
        name = f"p{p.partition}" if len(watched) == 1 else f"{p.topic}/p{p.partition}"
        if prev.leader != p.leader:
            if p.offline:
                changes.append((LEADER, f"{name} offline: no leader (was {prev.leader})"))
            elif prev.offline:
                changes.append((LEADER, f"{name} back online, leader {p.leader}"))
            else:
                changes.append((LEADER, f"leader of {name} moved {prev.leader} -> {p.leader}"))
        if set(prev.isr) != set(p.isr):
            verb = "shrank" if set(p.isr) < set(prev.isr) else "grew"
            changes.append((ISR, f"ISR of {name} {verb} to {_ids(p.isr)}"))
    for b in after.brokers:
        if b.up and before.not_in_isr(b.node_id) and not after.not_in_isr(b.node_id):
            changes.append((REJOINED, f"broker {b.node_id} back in every ISR"))
    return changes


class ClusterWatcher(threading.Thread):
    """Polls the cluster's metadata every `interval` s and adds what changed to `timeline`."""

    def __init__(
        self,
        settings: Settings,
        timeline: Timeline,
        topics: Iterable[str],
        interval: float = 0.25,
    ) -> None:
        super().__init__(daemon=True, name="chaos-cluster-watcher")
        self.settings = settings
        self.timeline = timeline
        self.topics = tuple(topics)
        self.interval = interval
        self._halt = threading.Event()
        self._client = admin(settings, timeout=2)
        self.last: ClusterStatus = get_status(settings, timeout=2, admin=self._client)

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            now = get_status(self.settings, timeout=2, admin=self._client)
            for kind, text in diff(self.last, now, self.topics):
                self.timeline.add(kind, text)
            self.last = now

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
