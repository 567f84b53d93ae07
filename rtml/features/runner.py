"""Run the feature app for as long as a notebook or a test needs it, and clean up after it.

`FeatureRun` starts `rtml features run` as a child process, exactly as a learner starts it
in a terminal, waits until an output topic holds enough records, and stops the process
(SIGTERM, then SIGKILL) when the `with` block ends, whatever happened inside it. A process
that dies early is reported with the end of its own log, not with a timeout.

Each run uses its own consumer group, so it reads its input from the start; Quix names its
internal topics (repartitions, changelogs) and its state folder after the group.
`remove_group` deletes them afterwards. `fresh_topics` empties the pipeline's topics first,
so outputs hold exactly what one run wrote.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from rtml import topics
from rtml.clients import QUIET, admin
from rtml.config import Settings
from rtml.features.errors import FeatureError
from rtml.poll import WaitTimeout, until

_STOP_TIMEOUT_S = 60.0
# Topics one run of the app reads or writes: what `fresh_topics` empties for a clean run.
PIPELINE_TOPICS = (
    "transactions",
    "customers",
    "terminals",
    "labels",
    "features",
    "windows",
    "features.dlq",
    "transactions.late",
    "transactions.labelled",
)


class FeatureRun:
    """`rtml features run` as a child process, stopped when the `with` block ends."""

    what = "feature app"  # how errors name the process (subclasses run other commands)

    def __init__(
        self,
        settings: Settings,
        *,
        group: str | None = None,
        grace_ms: int | None = None,
        guarantee: Literal["at-least-once", "exactly-once"] = "at-least-once",
        windows: bool = True,
        instance: str = "0",
        start: Literal["earliest", "latest"] = "earliest",
    ) -> None:
        self.settings = settings
        self.group = group or f"rtml-features-{uuid.uuid4().hex[:8]}"
        self.instance = instance
        args = ["features", "run", "--group", self.group, "--guarantee", guarantee]
        args += ["--instance", instance, "--start", start]
        if grace_ms is not None:
            args += ["--grace", f"{grace_ms / 1000:.3f}"]
        if not windows:
            args.append("--no-windows")
        self.argv = [sys.executable, "-m", "rtml", *args]
        self.log = log_file(settings, self.group if instance == "0" else f"{self.group}-{instance}")
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> FeatureRun:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the process; its output goes to `self.log`.

        A second start while the first process runs is refused: it would orphan that
        process, which would keep consuming in the same group.
        """
        if self.running:
            assert self.proc is not None
            raise FeatureError(
                f"The {self.what} of group {self.group} is already running (pid {self.proc.pid})."
            )
        self.log.parent.mkdir(parents=True, exist_ok=True)
        # The child reads the same cluster and implementation as the caller.
        env = {**os.environ, "RTML_IMPL": self.settings.impl}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
            )
        # A kernel or interpreter that exits without leaving the `with` block still stops it.
        atexit.register(self.stop)

    @property
    def running(self) -> bool:
        """True while the child process runs."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """Ask the app to stop (SIGTERM: it commits and closes), kill it if it hangs; return
        its exit status (None if it never started)."""
        proc = self.proc
        if proc is None:
            return None
        atexit.unregister(self.stop)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def output(self, chars: int = 3000) -> str:
        """The end of the process's output (progress lines, warnings, a startup error)."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def wait_for(self, topic: str, n: int, timeout: float) -> float:
        """Poll until `topic` holds at least `n` records; return the seconds it took.

        Raises FeatureError if the app exits first (with its output) or `timeout` passes.
        """
        start = time.monotonic()
        while True:
            if not self.running:
                raise FeatureError(
                    f"The {self.what} stopped before {topic} had {n} records; its output:\n"
                    + self.output()
                )
            try:
                have, problem = count_records(self.settings, topic), ""
            except FeatureError as exc:  # the cluster may be busy: keep asking until timeout
                have, problem = 0, f" ({exc})"
            if have >= n:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise FeatureError(
                    f"{topic} has {have} of {n} records after {timeout:g} s{problem}: the "
                    f"{self.what} is too slow or stuck; its output:\n{self.output()}"
                )
            time.sleep(0.5)


def count_records(settings: Settings, topic: str) -> int:
    """Records stored in `topic` (log end minus log start, summed over its partitions)."""
    conf = settings.client_config(group_id="rtml-features-count", enable_auto_commit=False)
    consumer = Consumer({**conf, "logger": QUIET})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        if meta.error is not None:
            raise FeatureError(f"Topic {topic} does not exist: run `rtml topics apply`.")
        total = 0
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    except KafkaException as exc:
        raise FeatureError(
            f"Cannot count the records of {topic} at {settings.bootstrap}: is the cluster up?"
        ) from exc
    finally:
        consumer.close()


def fresh_topics(settings: Settings, names: Sequence[str] = PIPELINE_TOPICS) -> None:
    """Delete the catalogue topics `names` and create them again, empty, with their specs.

    Refuses while the lab's background services run: they would write into the topics
    while they are recreated.
    """
    _refuse_while_services_run(settings)
    unknown = [n for n in names if n not in {t.name for t in topics.CATALOGUE}]
    if unknown:
        raise FeatureError(f"{', '.join(unknown)} is not in the topic catalogue.")
    client = admin(settings, timeout=10)
    existing = set(client.list_topics(timeout=10).topics)
    doomed = [n for n in names if n in existing]
    if doomed:
        _delete_topics(client, doomed)
    until(
        lambda: not set(doomed) & set(client.list_topics(timeout=10).topics),
        60,
        f"topics {', '.join(doomed)} to be deleted",
        interval=0.2,
    )
    until(lambda: _created(settings), 60, "the topics to be created again")
    # Created is not yet usable: a partition's leader may not know it is leader yet.
    until(lambda: _readable(settings, names), 60, "the recreated topics to be readable")


def _created(settings: Settings) -> bool:
    try:
        topics.apply(settings)
    except (topics.TopicError, KafkaException):
        # A deletion can still be settling on a broker: creation (or the describe after
        # it, with UNKNOWN_TOPIC_OR_PART) fails until then.
        return False
    return True


def _readable(settings: Settings, names: Sequence[str]) -> bool:
    try:
        for name in names:
            count_records(settings, name)
    except FeatureError:
        return False
    return True


def remove_group(settings: Settings, group: str, timeout: float = 60.0) -> list[str]:
    """Delete what a finished run of group `group` left: Quix's internal topics, the
    consumer group, the state folder and the log. Returns the topics deleted.

    A member that just left may still count for a moment (until the coordinator has seen
    it go, at most a session timeout), so a non-empty group is asked again until `timeout`.
    """
    client = admin(settings, timeout=10)
    internal = internal_topics(settings, group)
    try:
        if internal:
            _delete_topics(client, internal)
        until(lambda: delete_group(client, group), timeout, f"group {group} to be empty", 1.0)
    except (KafkaException, WaitTimeout) as exc:
        raise FeatureError(
            f"Could not remove the leftovers of group {group} ({exc}): is it still running?"
        ) from exc
    shutil.rmtree(state_dir(settings, group), ignore_errors=True)
    log_file(settings, group).unlink(missing_ok=True)
    return internal


def _delete_topics(client: AdminClient, names: list[str]) -> None:
    """Delete `names`; one already gone (metadata can lag a deletion) is fine."""
    for future in client.delete_topics(names, operation_timeout=30).values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise


def delete_group(client: AdminClient, group: str) -> bool:
    """True once `group` is gone (deleted now, or never created by a run stopped early);
    False while it still has members or its coordinator is moving, so callers poll it."""
    for future in client.delete_consumer_groups([group], request_timeout=10).values():
        try:
            future.result()
        except KafkaException as exc:
            code = exc.args[0].code()
            if code in (KafkaError.NON_EMPTY_GROUP, KafkaError.NOT_COORDINATOR):
                return False
            if code != KafkaError.GROUP_ID_NOT_FOUND:
                raise
    return True


def internal_topics(settings: Settings, group: str) -> list[str]:
    """The topics Quix created for `group`: changelogs (one per state store, each holding
    every update of that store) and repartitions (one per `group_by`)."""
    names = admin(settings, timeout=10).list_topics(timeout=10).topics
    prefixes = (f"changelog__{group}--", f"repartition__{group}--")
    return sorted(n for n in names if n.startswith(prefixes))


def log_file(settings: Settings, group: str) -> Path:
    """Where a `FeatureRun` of `group` writes the app's output."""
    return settings.cluster_dir / "features" / f"{group}.log"


def state_dir(settings: Settings, group: str, instance: str = "0") -> Path:
    """Where Quix keeps the state stores (RocksDB) of `group`'s instance `instance`."""
    return settings.cluster_dir / "features" / f"state-{instance}" / group


def _refuse_while_services_run(settings: Settings) -> None:
    from rtml.services.lifecycle import status

    alive = [s.name for s in status(settings) if s.alive]
    if alive:
        raise FeatureError(
            f"The lab's service(s) {', '.join(alive)} write to the pipeline's topics: stop them "
            "with `rtml services down` first (`rtml services up` starts them again)."
        )
