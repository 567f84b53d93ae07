"""Pipeline chaos: SIGKILL the prediction service while features records flow, restart it.

The scenario runs on topics of its own (`chaos-serve-kill-<id>.features`, `.predictions`,
`.model-updates`, `.serve.dlq`) and a consumer group of its own, so the lab's topics,
model and services never see it; all of them are deleted at the end. It publishes a tiny
ONNX model (trained on a small simulated history, `rtml.serve.inputs`) to its model topic,
starts `rtml serve run --topic-prefix ...` as a child process, and writes features records
(that history's, numbered 0, 1, 2, ...) at a steady rate with the durable producer. A third
of the way through it SIGKILLs the service and starts it again in the same group with the
same instance number (static membership: it gets its partitions back at once).

The verdict counts by transaction id, from a `read_committed` reader of the predictions:
every acknowledged features record must have a prediction (lost 0). Under at-least-once
the batches scored but not yet committed when the service died are scored again after the
restart: those duplicates are allowed and counted, and every copy must carry the same
score, decision and model version. With the exactly-once option each batch is one Kafka
transaction, so the reader sees no duplicate at all. Time to resume is from the SIGKILL to
the first prediction the restarted service produced (its Kafka timestamp).
"""

from __future__ import annotations

import contextlib
import signal
import time
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException

from rtml import topics
from rtml.chaos.scenarios import ChaosError, Resume
from rtml.chaos.timeline import CHECK
from rtml.chaos.verifier import Verdict
from rtml.clients import admin
from rtml.cluster import get_status
from rtml.config import Settings
from rtml.dlq import dlq_topic
from rtml.model.update import TOPIC as MODEL_TOPIC
from rtml.poll import WaitTimeout, until
from rtml.schemas import register_all
from rtml.schemas.wire import PreparedSerializer, WireDeserializer
from rtml.serve.inputs import history, publish_model, records, tiny_model
from rtml.serve.runner import ServeRun
from rtml.serve.service import Guarantee
from rtml.serve.status import status_dir

if TYPE_CHECKING:
    from rtml.chaos.scenarios import _Run

FEATURES, PREDICTIONS = "features", "predictions"
SERVE_TOPICS = (FEATURES, PREDICTIONS, MODEL_TOPIC, dlq_topic("serve"))
SERVE_START_S = 180.0  # a loaded 2-core machine can take a minute to import and join
RESUME_TIMEOUT_S = 180.0
GROUP_GONE_S = 30.0  # a static member counts until its session times out (15 s)


class FeaturesLoad:
    """The load's value encoder: record `i` is a features record of a small simulated
    history with transaction id `i` and the load's key as its customer id."""

    def __init__(self, settings: Settings, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.encode = PreparedSerializer.for_topic(settings, FEATURES)

    def __call__(self, record_id: int, key: int) -> bytes:
        row = self.rows[record_id % len(self.rows)]
        return self.encode(
            {
                **row,
                "transaction_id": record_id,
                "customer_id": key,
                "feature_time": int(time.time() * 1000),
            }
        )


def create_topics(settings: Settings, prefix: str, names: tuple[str, ...]) -> list[str]:
    """Create `prefix + name` for each catalogue topic `name`, with its spec; wait until
    every partition is known. Returns the names created."""
    specs = tuple(replace(topics.spec(n), name=prefix + n, schema=None) for n in names)
    topics.apply(settings, specs)
    wanted = {s.name: s.partitions for s in specs}

    def known() -> bool:
        parts = get_status(settings).partitions
        return all(sum(p.topic == t for p in parts) == n for t, n in wanted.items())

    until(known, 60, f"every partition of {', '.join(wanted)} to be known")
    return list(wanted)


def _outcome(prediction: dict[str, Any]) -> str:
    """What two predictions of one transaction must agree on (repr: NaN equals NaN)."""
    return f"{prediction['score']!r} {prediction['decision']} {prediction['model_version']}"


def serve_kill(run: _Run, guarantee: Guarantee = "at-least-once") -> None:
    """The body of `serve-kill` (and `serve-kill-exactly-once`); see the module docstring."""
    settings = run.settings
    prefix = f"chaos-{run.name}-{uuid.uuid4().hex[:6]}."
    run.topic, run.read_topic = prefix + FEATURES, prefix + PREDICTIONS
    run.extra_topics = [prefix + n for n in SERVE_TOPICS if n != FEATURES]
    service = ServeRun(settings, group=prefix.rstrip("."), guarantee=guarantee, topic_prefix=prefix)
    run.repairs.append(lambda: _remove(run, service))
    # The catalogue's schemas frame every record (registering them again changes nothing).
    register_all(settings)
    create_topics(settings, prefix, SERVE_TOPICS)
    run.step(f"created topics {prefix}{{{', '.join(SERVE_TOPICS)}}}")

    frame = history(n_customers=100, n_terminals=200, n_days=20)
    model = tiny_model(frame, "chaos-v1")
    publish_model(settings, model, prefix + MODEL_TOPIC)
    run.step(f"published model {model.name} {model.version} to {prefix}{MODEL_TOPIC}")

    decode = WireDeserializer.for_topic(settings, PREDICTIONS)
    run.decode = lambda msg: decode(msg.value())["transaction_id"]
    run.payload = lambda msg: _outcome(decode(msg.value()))
    run.ordered = False  # predictions are keyed by transaction, features by customer
    run.duplicates_allowed = guarantee == "at-least-once"

    began = run.step(f"start the prediction service ({guarantee}, group {service.group})")
    service.start()
    service.wait_status(
        lambda s: s.state == "serving" and s.partitions == list(range(6)),
        SERVE_START_S,
        "the prediction service to serve all six partitions",
    )
    run.step(f"prediction service serving after {time.monotonic() - began:.1f} s")

    run.start(encode=FeaturesLoad(settings, records(frame)))
    assert run.reader is not None
    reader = run.reader
    run.wait_progress(1 / 3, "a third of the features records to be acknowledged")
    run.alive_until(lambda: reader.first_after(0) is not None, 120, "the first prediction")

    assert service.proc is not None
    pid = service.proc.pid
    run.step(f"SIGKILL the prediction service (pid {pid})")
    kill_ms = time.time() * 1000
    service.proc.send_signal(signal.SIGKILL)
    code = service.proc.wait(timeout=30)
    # Anything stamped after this was produced by the restarted process, not the dead one.
    dead_ms = int(time.time() * 1000) + 1
    run.check("the prediction service died of SIGKILL", code == -signal.SIGKILL, f"exit {code}")
    restarted = run.step("restart the prediction service (same group, same instance)")
    service.start()
    serving: list[float] = []

    def resumed() -> bool:
        if not service.running:
            raise ChaosError(
                f"The restarted prediction service stopped; its output:\n{service.output()}"
            )
        status = service.status()
        if not serving and status and status.pid == service.proc.pid and status.partitions:
            # Where the time to resume goes: start-up (imports, model, group) before this.
            serving.append(time.monotonic())
            run.step(
                f"restarted service serving its partitions again "
                f"{serving[0] - restarted:.1f} s after its start (status file, about 1 s apart)"
            )
        return reader.first_after(dead_ms) is not None

    step = "SIGKILL the prediction service"
    try:
        run.alive_until(resumed, RESUME_TIMEOUT_S, "predictions to resume")
        first = reader.first_after(dead_ms)
        assert first is not None
        gap: float | None = round((first - kill_ms) / 1000, 3)
        run.timeline.add(CHECK, f"first prediction of the restarted service {gap:.2f} s after it")
    except WaitTimeout:
        gap = None
    run.resumes.append(Resume(step, gap))
    run.check(
        "predictions resumed after the restart",
        gap is not None,
        f"none within {RESUME_TIMEOUT_S:g} s" if gap is None else f"after {gap:.2f} s",
    )
    run.finish_load()

    def verdict_sentence(verdict: Verdict) -> None:
        run.check(
            "every transaction scored twice got the same score, decision and model",
            verdict.differing == 0,
            f"{verdict.duplicated:,} scored twice, {verdict.differing:,} differently",
        )
        twice = (
            "at-least-once: allowed, each copy with the same score"
            if run.duplicates_allowed
            else "exactly-once, read_committed: none allowed"
        )
        resume = "never" if gap is None else f"{gap:.1f} s after the SIGKILL"
        run.said = (
            f"{verdict.acknowledged:,} features records, {verdict.read:,} with a prediction, "
            f"{verdict.lost:,} lost; {verdict.duplicated:,} scored twice ({twice}); "
            f"predictions resumed {resume}."
        )

    run.after_verify.append(verdict_sentence)


def _remove(run: _Run, service: ServeRun) -> None:
    """Stop the service, then delete its consumer group, status file and log."""
    service.stop()
    client = admin(run.settings, timeout=10)

    def group_gone() -> bool:
        future = client.delete_consumer_groups([service.group], request_timeout=10)[service.group]
        try:
            future.result()
        except KafkaException as exc:
            code = exc.args[0].code()
            if code == KafkaError.NON_EMPTY_GROUP:
                return False  # the static member counts until its session times out
            return code == KafkaError.GROUP_ID_NOT_FOUND
        return True

    try:
        until(group_gone, GROUP_GONE_S, f"group {service.group} to be deleted", 1.0)
    except WaitTimeout:
        run.step(f"group {service.group} left for the broker to expire (still not empty)")
    (status_dir(run.settings) / f"{service.group}-{service.instance}.json").unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        service.log.unlink(missing_ok=True)
