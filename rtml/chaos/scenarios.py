"""Named chaos scenarios: break the local cluster under load, then prove what survived.

Each scenario writes numbered records to a fresh topic (6 partitions, RF 3, min ISR 2)
with the durable producer, breaks something on purpose (SIGKILL a leader, take two
brokers down, restart every broker in turn, kill the schema registry, kill the prediction
service), repairs it, and lets an independent reader count by id what was acknowledged,
read, lost, duplicated and failed. The pipeline scenarios (`rtml.chaos.pipeline`) write
features records on topics of their own and read the predictions a service makes of
them. The run reports its timeline through `on_event` as it happens and returns a
`ChaosResult`. Scenarios act only on a local cluster rtml started: they kill its processes.

    result = run("leader-kill", settings, records=50_000, on_event=print)
    result.passed, result.verdict.lost, result.time_to_resume
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from confluent_kafka import KafkaException, Message
from confluent_kafka.admin import NewTopic
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from rtml.chaos.load import LoadProducer, json_id
from rtml.chaos.timeline import CHECK, STEP, ClusterWatcher, Event, OnEvent, Timeline
from rtml.chaos.verifier import Decode, Payload, Reader, Verdict, verdict_of
from rtml.clients import QUIET, admin
from rtml.cluster import LocalCluster, get_status
from rtml.cluster.registry import Registry
from rtml.config import Settings
from rtml.errors import RtmlError
from rtml.observe.lag import LagError, sample_lag
from rtml.patterns.consumer import group_consumer
from rtml.poll import WaitTimeout, until
from rtml.schemas.registry import SchemaError, register, registry_client

PARTITIONS = 6
BLOCKED_S = 5.0  # no acknowledgement for this long: writes are blocked
PREFLIGHT_WAIT_S = 30.0  # for a broker that is coming back before a scenario starts
READ_TIMEOUT_S = 120.0  # for the reader to see every acknowledged record once all is repaired


class ChaosError(RtmlError):
    """A scenario cannot run here (external cluster, a broker already down, unknown name)."""


@dataclass(frozen=True)
class Check:
    """One expectation of a scenario beyond the verdict, and whether it held."""

    name: str
    passed: bool
    detail: str = ""


@dataclass(frozen=True)
class Resume:
    """How long after a disruptive step the first record sent after it was acknowledged."""

    step: str
    seconds: float | None  # None: nothing sent after the step was acknowledged


@dataclass(frozen=True)
class ChaosResult:
    """What a scenario run found: the verdict, the checks, times to resume, the timeline."""

    scenario: str
    topic: str
    rate: float | None
    produced: int
    seconds: float
    verdict: Verdict
    checks: tuple[Check, ...]
    resumes: tuple[Resume, ...]
    timeline: tuple[Event, ...]
    errors: dict[str, int] = field(default_factory=dict)  # delivery errors by kind
    said: str = ""  # the scenario's own verdict sentence (pipeline scenarios), if any

    @property
    def time_to_resume(self) -> float | None:
        """The longest time to resume over the run's disruptive steps (None: none measured)."""
        measured = [r.seconds for r in self.resumes if r.seconds is not None]
        return max(measured) if measured else None

    @property
    def passed(self) -> bool:
        return self.verdict.ok and all(c.passed for c in self.checks)

    def sentence(self) -> str:
        """The verdict in one sentence, as the Chaos page and the terminal show it."""
        head = "Passed" if self.passed else "FAILED"
        if self.said:
            return f"{head}: {self.said}"
        v = self.verdict
        return (
            f"{head}: {v.acknowledged:,} acknowledged, {v.lost:,} lost, {v.duplicated:,} "
            f"duplicated ({self.produced:,} sent in {self.seconds:.1f} s)."
        )


@dataclass(frozen=True)
class Scenario:
    """A named scenario: what it does, what it proves, and its default size."""

    name: str
    summary: str
    records: int  # default --records
    rate: float | None  # default --rate (None: flat out)
    body: Callable[[_Run], None]
    own_topic: bool = True  # False: the body creates the topics it needs


# -- the harness every scenario runs in -----------------------------------------------------------


class _Run:
    """One scenario run: its topic, timeline, watcher, load, reader and checks."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        records: int | None,
        seconds: float | None,
        rate: float | None,
        on_event: OnEvent | None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.records = records
        self.seconds = seconds
        self.rate = rate
        self.timeline = Timeline(on_event)
        self.cluster = LocalCluster(settings, log=lambda _: None)
        self.topic = f"chaos-{name}-{uuid.uuid4().hex[:6]}"
        self.checks: list[Check] = []
        self.resumes: list[Resume] = []
        self.load: LoadProducer | None = None
        self.reader: Reader | None = None
        self.watcher: ClusterWatcher | None = None
        self.decode: Decode = json_id
        self.after_verify: list[Callable[[Verdict], None]] = []  # checks that need the reads
        self.repairs: list[Callable[[], None]] = []  # undo what a failed scenario left broken
        # A pipeline scenario writes `topic` and reads another (`read_topic`), with the
        # values of duplicates compared (`payload`), not their order per key.
        self.read_topic: str | None = None
        self.extra_topics: list[str] = []  # deleted with `topic` at the end
        self.payload: Payload | None = None
        self.ordered = True
        self.duplicates_allowed = False
        self.said = ""

    # the pieces

    def step(self, text: str) -> float:
        """Record a scenario step now; return its monotonic time."""
        now = time.monotonic()
        self.timeline.add(STEP, text, when=now)
        return now

    def check(self, name: str, passed: bool, detail: str = "") -> None:
        self.checks.append(Check(name, passed, detail))
        self.timeline.add(
            CHECK, f"{'PASS' if passed else 'FAIL'} {name}" + (f": {detail}" if detail else "")
        )

    def create_topic(self) -> None:
        client = admin(self.settings, timeout=10)  # referenced until the futures resolve
        futures = client.create_topics(
            [NewTopic(self.topic, PARTITIONS, 3, config={"min.insync.replicas": "2"})],
            operation_timeout=30,
        )
        futures[self.topic].result(timeout=60)
        until(
            lambda: (
                len([p for p in get_status(self.settings).partitions if p.topic == self.topic])
                == PARTITIONS
            ),
            60,
            f"every partition of {self.topic} to be known",
        )
        self.step(f"created topic {self.topic} ({PARTITIONS} partitions, RF 3, min ISR 2)")

    def start(self, *, message_timeout_ms: int = 300_000, unbounded: bool = False, **load) -> None:
        """Start the cluster watcher, the reader and the load producer."""
        read = self.read_topic or self.topic
        self.watcher = ClusterWatcher(self.settings, self.timeline, sorted({self.topic, read}))
        self.watcher.start()
        self.reader = Reader(self.settings, read, self.decode, self.payload)
        self.reader.start()
        self.load = LoadProducer(
            self.settings,
            self.topic,
            self.timeline,
            records=None if unbounded or self.records is None else self.records,
            rate=self.rate,
            message_timeout_ms=message_timeout_ms,
            **load,
        )
        self.load.start()
        if self.records is None:
            target = f"{self.seconds:g} s"
        elif unbounded:  # the scenario stops it; the count paces its phases
            target = f"phases of {self.records:,} records"
        else:
            target = f"{self.records:,} records"
        rate = f"{self.rate:,.0f}/s" if self.rate else "flat out"
        self.step(f"load started: {target} at {rate} (acks=all, idempotent)")

    def progress(self) -> float:
        """How far the run is, 0..1: acknowledged or failed over records, or time over seconds."""
        assert self.load is not None
        if self.records:
            return sum(self.load.ledger.counts) / self.records
        return self.timeline.since_start(time.monotonic()) / (self.seconds or 1)

    def wait_progress(self, fraction: float, what: str, timeout: float = 300.0) -> None:
        self.alive_until(lambda: self.progress() >= fraction, timeout, what)

    def alive_until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `check`; fail at once (with its error) if the load producer died."""

        def done() -> bool:
            if self.load is not None and self.load.error is not None:
                raise ChaosError(f"The load producer failed: {self.load.error}")
            return check()

        until(done, timeout, what, 0.1)

    def resume_after(self, step: str, moment: float, timeout: float = 180.0) -> float | None:
        """Wait until a record sent after `moment` is acknowledged; record and return the gap."""
        assert self.load is not None
        try:
            self.alive_until(
                lambda: self.load.first_ack_after(moment) is not None,
                timeout,
                f"an acknowledgement after '{step}'",
            )
        except WaitTimeout:
            self.resumes.append(Resume(step, None))
            return None
        gap = self.load.first_ack_after(moment)
        self.resumes.append(Resume(step, gap))
        self.timeline.add(CHECK, f"first acknowledgement {gap:.2f} s after '{step}'")
        return gap

    def finish_load(self) -> None:
        """Let the load end (its records sent, or its seconds up) and every report arrive."""
        assert self.load is not None
        # A bounded load ends by itself: stopping it before then would cut it short.
        self.wait_progress(1.0, "the end of the load", timeout=600)
        self.load.stop()
        if self.load.error is not None:
            raise ChaosError(f"The load producer failed: {self.load.error}")
        acked, failed = self.load.ledger.counts
        self.step(
            f"load finished: {self.load.produced:,} sent, {acked:,} acknowledged, {failed:,} failed"
        )

    def busiest_leader(self) -> tuple[int, int]:
        """(node, partitions of the topic it leads) for the node leading the most of them."""
        leaders = Counter(
            p.leader for p in get_status(self.settings).partitions if p.topic == self.topic
        )
        node, count = leaders.most_common(1)[0]
        return node, count

    def stored_twice(self) -> list[int]:
        """Ids the reader found at more than one log position, sorted."""
        assert self.reader is not None
        where: dict[int, set[tuple[int, int]]] = {}
        for r in self.reader.reads:
            where.setdefault(r.id, set()).add((r.partition, r.offset))
        return sorted(i for i, places in where.items() if len(places) > 1)

    def verify(self) -> Verdict:
        """Read until every acknowledged record is seen (or the deadline), then count."""
        assert self.load is not None and self.reader is not None
        self.reader.wait_for(self.load.ledger.acked_ids, READ_TIMEOUT_S)
        if self.reader.error is not None:
            raise ChaosError(f"The reader failed, so nothing can be counted: {self.reader.error}")
        verdict = verdict_of(
            self.load.ledger,
            self.reader,
            ordered=self.ordered,
            duplicates_allowed=self.duplicates_allowed,
        )
        self.timeline.add(
            CHECK,
            f"verdict: {verdict.acknowledged:,} acknowledged, {verdict.read:,} read, "
            f"{verdict.lost:,} lost, {verdict.duplicated:,} duplicated, {verdict.failed:,} failed",
        )
        return verdict

    # setting up and tearing down

    def preflight(self) -> None:
        """Refuse to start unless every broker of the local cluster is up. A broker that was
        just restarted (or briefly fenced on a busy machine) is waited for, up to
        PREFLIGHT_WAIT_S, before the scenario refuses."""
        status = get_status(self.settings)
        if not status.reachable:
            raise ChaosError(status.message)

        def whole() -> bool:
            now = get_status(self.settings)
            return now.reachable and all(b.up for b in now.brokers)

        with contextlib.suppress(WaitTimeout):
            until(whole, PREFLIGHT_WAIT_S, "every broker to be up")
        status = get_status(self.settings)
        if not status.reachable:
            raise ChaosError(status.message)
        down = [b.node_id for b in status.brokers if not b.up]
        if down:
            raise ChaosError(
                f"Broker(s) {', '.join(map(str, down))} are down already: restart them first "
                f"(`rtml cluster restart {down[0]}`), so the scenario starts from a whole cluster."
            )

    def cleanup(self) -> None:
        """Bring back any node still down, stop every thread, delete the scenario's topic."""
        # Nodes first: with the cluster whole, the producer's last reports arrive at once
        # instead of after its message timeout.
        for node_id in self.cluster.nodes:
            if not self.cluster.nodes[node_id].process.alive():
                self.step(f"restart broker {node_id} (left down)")
                self.cluster.restart(node_id)
        for repair in self.repairs:
            repair()
        for part in (self.load, self.reader, self.watcher):
            if part is not None and part.is_alive():
                part.stop()
        client = admin(self.settings, timeout=10)
        names = [self.topic, *self.extra_topics]
        for future in client.delete_topics(names, operation_timeout=30).values():
            # A topic never created, or a cluster still settling: nothing to undo.
            with contextlib.suppress(KafkaException):
                future.result(60)

    def result(self, verdict: Verdict, started: float) -> ChaosResult:
        assert self.load is not None
        return ChaosResult(
            scenario=self.name,
            topic=self.topic,
            rate=self.rate,
            produced=self.load.produced,
            seconds=round(time.monotonic() - started, 2),
            verdict=verdict,
            checks=tuple(self.checks),
            resumes=tuple(self.resumes),
            timeline=tuple(self.timeline.events),
            errors=dict(self.load.errors),
            said=self.said,
        )


# -- the scenarios --------------------------------------------------------------------------------


def _leader_kill(run: _Run) -> None:
    run.start()
    run.wait_progress(0.3, "30% of the load to be acknowledged")
    victim, led = run.busiest_leader()
    killed = run.step(f"SIGKILL broker {victim} (leads {led} of {PARTITIONS} partitions)")
    run.cluster.kill(victim)
    run.resume_after(f"SIGKILL broker {victim}", killed)
    run.finish_load()
    status = get_status(run.settings)
    moved = all(p.leader != victim for p in status.partitions if p.topic == run.topic)
    run.check(f"no partition led by broker {victim} while it is down", moved)
    run.step(f"restart broker {victim}")
    run.cluster.restart(victim)
    run.check(f"broker {victim} back in every ISR", not get_status(run.settings).not_in_isr(victim))
    run.check(
        "no delivery failed (2 of 3 replicas were always up)",
        not run.load.errors,
        _errors(run.load.errors),
    )


def _two_down(run: _Run, message_timeout_ms: int = 300_000) -> None:
    """Two of three brokers SIGKILLed: no quorum, no ISR of 2, so acks=all writes wait.

    With the durable producer's default message timeout (5 minutes, longer than the outage)
    they block and are all delivered after the restart; with a short one they fail first.
    """
    short = message_timeout_ms < 60_000
    run.start(message_timeout_ms=message_timeout_ms, unbounded=True)
    run.wait_progress(0.5, "half of the load to be acknowledged")
    status = get_status(run.settings)
    victims = [b.node_id for b in status.brokers if b.node_id != status.controller][:2]
    victims = victims if len(victims) == 2 else run.settings.node_ids[:2]
    pair = f"{victims[0]} and {victims[1]}"
    killed = run.step(f"SIGKILL brokers {pair} (2 of 3)")
    for node_id in victims:
        run.cluster.kill(node_id)
    if short:
        run.alive_until(
            lambda: run.load.ledger.counts[1] > 0,
            message_timeout_ms / 1000 + 60,
            "acks=all writes to fail",
        )
        run.check(
            "acks=all writes failed while 2 of 3 brokers were down",
            True,
            f"{run.load.ledger.counts[1]:,} failed so far",
        )
    else:
        run.alive_until(
            lambda: time.monotonic() - run.load.last_ack > BLOCKED_S, 120, "writes to block"
        )
        run.check(
            "acks=all writes blocked while 2 of 3 brokers were down",
            True,
            f"no acknowledgement for {BLOCKED_S:g} s",
        )
    restarted = run.step(f"restart brokers {pair}")
    for node_id in victims:
        run.cluster.restart(node_id)
    run.resume_after(f"SIGKILL brokers {pair}", killed)
    acked_before = run.load.ledger.counts[0]
    target = (run.records or 0) // 2
    run.alive_until(
        lambda: (
            run.load.ledger.counts[0] - acked_before >= target
            if run.records
            else run.progress() >= 1.0
        ),
        300,
        "the load after the restart",
    )
    run.finish_load()
    after = [t for _, t in run.load.ledger.ack_times_by_id() if t >= restarted]
    run.check(
        "writes acknowledged again after the restart",
        len(after) > 0,
        f"{len(after):,} acknowledged after it",
    )
    if not short:
        run.check(
            "no delivery failed: every record waited and was delivered",
            not run.load.errors,
            _errors(run.load.errors),
        )
        return
    resumed = restarted + max(r.seconds or 0 for r in run.resumes)
    earliest = killed - message_timeout_ms / 1000

    def stored_twice_during_outage(verdict: Verdict) -> None:
        # A record the client timed out while in flight may be stored anyway; the client then
        # starts a new producer epoch and sends what is still queued again, which the broker
        # cannot recognise as a retry. Every copy must come from that window, none later.
        ids = run.stored_twice()
        outside = [i for i in ids if not earliest <= run.load.sent_at[i] <= resumed]
        run.check(
            "every record stored twice was sent while the brokers were down",
            not outside,
            f"{len(ids):,} stored twice ({verdict.duplicated:,} of them acknowledged), "
            f"{len(outside):,} sent outside the outage",
        )

    run.after_verify.append(stored_twice_during_outage)


def _errors(errors: Counter[str]) -> str:
    return ", ".join(f"{k} {n:,}" for k, n in errors.items())


def _rolling_restart(run: _Run) -> None:
    group = f"rtml-chaos-{uuid.uuid4().hex[:6]}"
    run.start(unbounded=True)
    consumer = _GroupReader(run.settings, group, run.topic)
    consumer.start()
    run.step(f"consumer group {group} reading the topic")
    run.wait_progress(0.2, "20% of the load to be acknowledged")
    for node_id in run.settings.node_ids:
        stopped = run.step(f"stop broker {node_id} (clean shutdown)")
        run.cluster.stop(node_id)
        run.resume_after(f"stop broker {node_id}", stopped)
        run.step(f"start broker {node_id}")
        run.cluster.restart(node_id)
    run.wait_progress(1.0, "the rest of the load", timeout=600)
    run.finish_load()
    try:
        until(lambda: _lag(run.settings, group) == 0, 120, f"group {group}'s lag to drain", 0.5)
        drained, detail = True, "lag 0"
    except WaitTimeout:
        drained, detail = False, f"lag still {_lag(run.settings, group)}"
    run.check(f"consumer group {group} not stuck: lag drained to 0", drained, detail)
    consumer.stop()


def _lag(settings: Settings, group: str) -> int | None:
    try:
        return sample_lag(settings, group).total_lag
    except LagError:
        return None  # the group is not known yet, or the coordinator is moving


class _GroupReader(threading.Thread):
    """A consumer group member reading the topic and committing as it goes."""

    def __init__(self, settings: Settings, group: str, topic: str) -> None:
        super().__init__(daemon=True, name="chaos-group")
        self.consumer = group_consumer(settings, group, logger=QUIET)
        self.consumer.subscribe([topic])
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                if self.consumer.consume(1000, timeout=0.2):
                    self.consumer.commit(asynchronous=True)
        finally:
            self.consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


CHAOS_SCHEMA = """{"type": "record", "name": "ChaosRecord", "namespace": "rtml.chaos",
 "fields": [{"name": "id", "type": "long"}, {"name": "key", "type": "int"}]}"""
CHAOS_SCHEMA_V2 = """{"type": "record", "name": "ChaosRecord", "namespace": "rtml.chaos",
 "fields": [{"name": "id", "type": "long"}, {"name": "key", "type": "int"},
            {"name": "note", "type": ["null", "string"], "default": null}]}"""


def _registry_down(run: _Run) -> None:
    registry = Registry(run.settings, log=lambda _: None)
    if not registry.status().up:
        raise ChaosError("The schema registry is not running: start it with `rtml cluster up`.")
    client = registry_client(run.settings)
    schema_id = register(run.settings, run.topic, CHAOS_SCHEMA, client=client)
    run.step(f"registered {run.topic}-value (id {schema_id})")
    serializer = AvroSerializer(client, CHAOS_SCHEMA, conf={"auto.register.schemas": False})
    deserializer = AvroDeserializer(client)
    value = SerializationContext(run.topic, MessageField.VALUE)

    def encode(record_id: int, key: int) -> bytes:
        return serializer({"id": record_id, "key": key}, value)

    def decode(msg: Message) -> int:
        record = deserializer(msg.value(), SerializationContext(msg.topic(), MessageField.VALUE))
        return record["id"]

    run.decode = decode
    run.start(unbounded=True, encode=encode)
    third = (run.records or 0) // 3

    def acked_and_read(n: int) -> Callable[[], bool]:
        return lambda: (
            run.load.ledger.counts[0] >= n and run.reader.has_read(run.load.ledger.acked_ids())
        )

    run.alive_until(
        acked_and_read(third) if run.records else lambda: run.progress() >= 1 / 3,
        120,
        "the first third, written and read",
    )
    run.repairs.append(lambda: None if registry.process.alive() else registry.up())
    run.step("SIGKILL the schema registry")
    registry.process.signal(signal.SIGKILL)
    if not registry.process.wait_gone(10):
        raise ChaosError("The schema registry did not exit within 10 s of SIGKILL.")
    until(lambda: not registry.status().up, 30, "the registry to stop answering", 0.2)
    acked_at_kill = run.load.ledger.counts[0]
    run.alive_until(
        acked_and_read(2 * third) if run.records else lambda: run.progress() >= 2 / 3,
        120,
        "the second third, written and read while the registry is down",
    )
    acked_down = run.load.ledger.counts[0] - acked_at_kill
    run.check(
        "the Avro producer and consumer kept working on cached schemas",
        acked_down > 0,
        f"{acked_down:,} written and read while the registry was down",
    )
    try:
        register(run.settings, run.topic, CHAOS_SCHEMA_V2, client=registry_client(run.settings))
        run.check(
            "registering a new schema fails while the registry is down", False, "it was accepted"
        )
    except SchemaError as exc:
        run.check("registering a new schema fails while the registry is down", True, str(exc))
    restarted = run.step("restart the schema registry")
    registry.up()
    run.step(f"schema registry back after {time.monotonic() - restarted:.1f} s")
    try:
        new_id = register(
            run.settings, run.topic, CHAOS_SCHEMA_V2, client=registry_client(run.settings)
        )
        run.check("registering works again after the restart", True, f"new schema id {new_id}")
    except SchemaError as exc:
        run.check("registering works again after the restart", False, str(exc))
    run.wait_progress(1.0, "the rest of the load", timeout=600)
    run.finish_load()


def _serve_kill(run: _Run, guarantee: str = "at-least-once") -> None:
    # Imported here: the pipeline pulls in the model stack (scikit-learn, ONNX), which
    # `rtml chaos list` and the other scenarios do not need.
    from rtml.chaos.pipeline import serve_kill

    serve_kill(run, guarantee)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "leader-kill",
        "SIGKILL the broker leading the most partitions at full rate, restart it after: "
        "nothing acknowledged lost or duplicated",
        100_000,
        None,
        _leader_kill,
    ),
    Scenario(
        "two-down",
        "SIGKILL 2 of 3 brokers: acks=all writes block (no ISR of 2, no quorum) until they are "
        "restarted, then every record is delivered: nothing lost, nothing duplicated",
        20_000,
        2_000.0,
        _two_down,
    ),
    Scenario(
        "two-down-timeout",
        "the same with an 8 s message timeout: the producer reports errors (not acknowledged, "
        "so not lost), and shows what a timeout costs: a record timed out in flight may be "
        "stored anyway, even twice",
        20_000,
        2_000.0,
        partial(_two_down, message_timeout_ms=8_000),
    ),
    Scenario(
        "rolling-restart",
        "clean-stop and restart each broker in turn under load: no loss, no duplicate, a "
        "consumer group's lag drains to 0",
        30_000,
        1_000.0,
        _rolling_restart,
    ),
    Scenario(
        "registry-down",
        "SIGKILL the schema registry while an Avro producer and consumer run: both keep "
        "working on cached schemas, registering fails clearly, works again after a restart",
        15_000,
        500.0,
        _registry_down,
    ),
    Scenario(
        "serve-kill",
        "SIGKILL the prediction service while features records flow, restart it: every record "
        "gets a prediction, some are scored twice (at-least-once: counted, and each copy has "
        "the same score), and predictions resume within seconds",
        20_000,
        1_000.0,
        _serve_kill,
        own_topic=False,
    ),
    Scenario(
        "serve-kill-exactly-once",
        "the same with the service's exactly-once option: each batch one Kafka transaction, "
        "so a read_committed reader sees every prediction exactly once",
        20_000,
        1_000.0,
        partial(_serve_kill, guarantee="exactly-once"),
        own_topic=False,
    ),
)
NAMES: tuple[str, ...] = tuple(s.name for s in SCENARIOS)


def scenario(name: str) -> Scenario:
    """The scenario called `name`, or a sentence listing those there are."""
    for s in SCENARIOS:
        if s.name == name:
            return s
    raise ChaosError(f"There is no scenario {name!r}: the scenarios are {', '.join(NAMES)}.")


def run(
    name: str,
    settings: Settings,
    *,
    records: int | None = None,
    seconds: float | None = None,
    rate: float | None = None,
    on_event: OnEvent | None = None,
) -> ChaosResult:
    """Run scenario `name` on the local cluster of `settings` and return what it found.

    Size it by `records` or by `seconds` (default: the scenario's records); `rate` is
    records per second (default: the scenario's; 0: flat out). Every event of the timeline
    goes to `on_event` as it happens. The cluster is whole again when this returns, whatever
    happened, and the scenario's topic is deleted.
    """
    if not settings.local:
        raise ChaosError(
            "Chaos scenarios kill processes of a local cluster rtml started, so they refuse to "
            f"run against the external cluster at {settings.bootstrap}."
        )
    chosen = scenario(name)
    if records is None and seconds is None:
        records = chosen.records
    if records is not None and records < 100:
        raise ChaosError(f"--records {records} is too few to see anything: use 100 or more.")
    harness = _Run(
        name, settings, records, seconds, rate if rate is not None else chosen.rate, on_event
    )
    harness.rate = harness.rate or None
    harness.preflight()
    started = time.monotonic()
    try:
        if chosen.own_topic:
            harness.create_topic()
        chosen.body(harness)
        verdict = harness.verify()
        for check in harness.after_verify:
            check(verdict)
        return harness.result(verdict, started)
    finally:
        harness.cleanup()
