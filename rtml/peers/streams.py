"""The Kafka Streams peer (infra/streams/): build it with Maven once, run it, read its output.

The jar is built through the same cache as Kafka's jars (`rtml.cluster.jars`): a folder
under the jar cache named after a hash of everything the build reads (the pom, the Java
sources, the transaction schema), the cache's lock so two builds never race, and a
`.complete` marker written last. An unchanged peer is never built twice; an edited one is
built afresh. The app runs on the JDK rtml finds for the brokers, as a process rtml owns
(pid file, log), and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic

from rtml.clients import admin, create_missing_topics
from rtml.cluster.java import Java, find_java
from rtml.cluster.process import OwnedProcess
from rtml.config import Settings, project_root
from rtml.features.batch import batch_features
from rtml.features.labels import to_millis
from rtml.features.outputs import read_records
from rtml.features.runner import delete_group
from rtml.peers.compare import COUNT, MEAN, PeerError
from rtml.poll import WaitTimeout, until
from rtml.schemas.registry import AVRO_DIR
from rtml.schemas.wire import PreparedSerializer, WireDeserializer
from rtml.topics import spec

PROJECT = project_root() / "infra" / "streams"
POM = PROJECT / "pom.xml"
SCHEMA = AVRO_DIR / "transaction.avsc"
JAR = "rtml-streams-peer.jar"
MAIN_CLASS = "dev.rtml.streams.CustomerWindowPeer"
APP_ID = "rtml-streams-peer"
OUTPUT = "features.streams-peer"
GRACE_MS = 60_000  # as the Quix app's default grace period
_DONE = ".complete"
Log = Callable[[str], None]

# Kafka Streams' settings, chosen to match the Quix app's so the two compare fairly:
# at-least-once, a commit a second, one processing thread, lz4 batches after 5 ms.
_STREAMS_CONFIG = {
    "processing.guarantee": "at_least_once",
    "commit.interval.ms": "1000",
    "num.stream.threads": "1",
    # -1: the brokers' default.replication.factor for the changelog (3 on the lab cluster).
    "replication.factor": "-1",
    "consumer.auto.offset.reset": "earliest",
    "consumer.fetch.max.wait.ms": "20",
    "producer.linger.ms": "5",
    "producer.compression.type": "lz4",
}


def source_digest(files: Iterable[Path], root: Path) -> str:
    """A short hash of the files' paths (relative to `root`) and contents: the cache key."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def build_inputs() -> list[Path]:
    """Every file the Maven build reads: the pom, the Java sources, the schema it bundles."""
    if not POM.is_file():
        raise PeerError(f"{POM} is missing: run rtml from a checkout of the project.")
    return [POM, SCHEMA, *sorted((PROJECT / "src").rglob("*.java"))]


def build_dir(settings: Settings) -> Path:
    """The cache folder of this exact peer (an edited source gets a fresh folder)."""
    return settings.jar_cache / f"streams-peer-{source_digest(build_inputs(), project_root())}"


def ensure_built(settings: Settings, java: Java | None = None, log: Log = print) -> Path:
    """The folder holding the peer's jar and its dependencies, running Maven only if needed."""
    target = build_dir(settings)
    if (target / _DONE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # The lock of the jar cache: a build waits for a fetch of Kafka's jars, and the reverse.
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / _DONE).is_file():
            _build(java or find_java(settings.java), target, log)
    return target


def _build(java: Java, target: Path, log: Log) -> None:
    from rtml.cluster.jars import maven_command

    maven, env = maven_command(java)
    log(f"Building the Kafka Streams peer with Maven into {target} (once; reused afterwards) ...")
    staging = Path(tempfile.mkdtemp(prefix="streams-", dir=target.parent))
    cmd = [
        *maven,
        "-q",
        "-B",
        "-f",
        str(POM),
        "package",
        "dependency:copy-dependencies",
        # Classes and the jar go into the cache, not into the source tree.
        f"-Drtml.build.dir={staging / 'build'}",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=staging, check=False)
    built = staging / "build" / JAR
    if result.returncode != 0 or not built.is_file():
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise PeerError(
            f"Maven could not build the Kafka Streams peer from {POM} (exit "
            f"{result.returncode}); check that Maven Central is reachable. Maven said:\n{tail}"
        )
    built.rename(staging / JAR)
    shutil.rmtree(staging / "build")
    (staging / _DONE).write_text("\n".join(sorted(p.name for p in staging.iterdir())) + "\n")
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    prune_builds(target)


def prune_builds(keep: Path) -> list[Path]:
    """Delete the peer's other builds beside `keep`; return them.

    Builds of older sources are of no use (about 95 MB each, RocksDB's native library
    mostly). A JVM still running an old build keeps the jars it has open.
    """
    old = [p for p in keep.parent.glob("streams-peer-*") if p != keep]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    return old


def java_client_config(security: Mapping[str, str]) -> dict[str, str]:
    """rtml's librdkafka security settings as Java client properties (SASL, TLS)."""
    conf: dict[str, str] = {}
    if "security.protocol" in security:
        conf["security.protocol"] = security["security.protocol"]
    mechanism = security.get("sasl.mechanism")
    if mechanism:
        conf["sasl.mechanism"] = mechanism
        module = (
            "org.apache.kafka.common.security.plain.PlainLoginModule"
            if mechanism == "PLAIN"
            else "org.apache.kafka.common.security.scram.ScramLoginModule"
        )
        user = json.dumps(security.get("sasl.username", ""))
        password = json.dumps(security.get("sasl.password", ""))
        conf["sasl.jaas.config"] = f"{module} required username={user} password={password};"
    if security.get("ssl.ca.location"):
        conf["ssl.truststore.type"] = "PEM"
        conf["ssl.truststore.location"] = security["ssl.ca.location"]
    return conf


def properties_text(props: Mapping[str, str]) -> str:
    """A Java .properties file holding `props` (backslashes and separators escaped)."""

    def escape(text: str) -> str:
        text = text.replace("\\", "\\\\").replace("\n", "\\n")
        return text.replace("=", "\\=").replace(":", "\\:")

    return "".join(f"{escape(k)}={escape(v)}\n" for k, v in sorted(props.items()))


def ensure_output(settings: Settings, topic: str) -> None:
    """Create `topic` shaped like `transactions`: same partitions, replication and configs.

    The configs matter: records keep their event time (2018 for a replayed history), and
    under the brokers' default 7-day retention they would be deleted minutes after written.
    """
    shape = spec("transactions").for_cluster(settings.nodes if settings.local else None)
    new = NewTopic(topic, shape.partitions, shape.replication_factor, config=dict(shape.configs))
    create_missing_topics(settings, [new])


@dataclass(frozen=True)
class StreamsPeer:
    """One Kafka Streams application (an application id) of the peer, owned by rtml."""

    settings: Settings
    app_id: str = APP_ID
    output: str = OUTPUT
    source: str = "transactions"

    @property
    def folder(self) -> Path:
        """Its pid file, log, properties and state store live here."""
        return self.settings.cluster_dir / "peers" / self.app_id

    @property
    def log(self) -> Path:
        return self.folder / "app.log"

    @property
    def process(self) -> OwnedProcess:
        return OwnedProcess(self.folder / "app.pid", marker=f"-Drtml.peer={self.app_id}")

    def running(self) -> bool:
        """True while its JVM runs."""
        return self.process.alive()

    def start(self, timeout: float = 120.0, log: Log = print) -> int:
        """Build (if needed), start the JVM, wait until Kafka Streams is RUNNING; its pid."""
        if self.running():
            raise PeerError(
                f"The Kafka Streams peer {self.app_id} runs already (pid {self.process.pid}): "
                "stop it with `rtml peer streams stop`."
            )
        java = find_java(self.settings.java)
        jars = ensure_built(self.settings, java, log)
        schema_id = PreparedSerializer.for_topic(self.settings, self.source).schema_id
        ensure_output(self.settings, self.output)
        self.folder.mkdir(parents=True, exist_ok=True)
        props = {
            **_STREAMS_CONFIG,
            **java_client_config(self.settings.security),
            "application.id": self.app_id,
            # Static membership: a restart rejoins at once, and a clean stop removes the
            # member (the app closes with leaveGroup), so its group empties at once.
            "main.consumer.group.instance.id": self.app_id,
            "main.consumer.session.timeout.ms": "15000",
            "bootstrap.servers": self.settings.bootstrap,
            "state.dir": str(self.folder / "state"),
            "rtml.input": self.source,
            "rtml.output": self.output,
            "rtml.schema": str(SCHEMA),
            "rtml.schema.id": str(schema_id),
            "rtml.grace.ms": str(GRACE_MS),
        }
        config = self.folder / "app.properties"
        config.write_text(properties_text(props))
        config.chmod(0o600)  # it may hold a SASL password
        self.log.unlink(missing_ok=True)
        cmd = [
            str(java.path),
            "-Xmx512m",
            f"-Drtml.peer={self.app_id}",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp",
            str(jars / "*"),
            MAIN_CLASS,
            str(config),
        ]
        pid = self.process.start(cmd, log=self.log, cwd=self.folder)
        try:
            until(self._up, timeout, f"the Kafka Streams peer {self.app_id} to be RUNNING")
        except (WaitTimeout, PeerError):
            self.stop()
            raise
        return pid

    def _up(self) -> bool:
        text = self.log_tail(20_000)
        if "-> RUNNING" in text:
            return True
        if not self.running():
            raise PeerError(
                f"The Kafka Streams peer {self.app_id} exited at start-up; its log ends:\n"
                + self.log_tail()
            )
        return False

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM (Kafka Streams commits, flushes its store and leaves the group), then
        SIGKILL if it has not exited within `timeout`."""
        self.process.stop(timeout)

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the app's log (state changes, progress lines, errors)."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def remove(self, timeout: float = 60.0) -> list[str]:
        """Delete what a stopped run left: its internal topics (changelog), its consumer
        group, its state; return the topics deleted. The output topic is kept."""
        if self.running():
            raise PeerError(f"Stop the Kafka Streams peer {self.app_id} before removing it.")
        client = admin(self.settings, timeout=10)
        names = [
            t
            for t in client.list_topics(timeout=10).topics
            if t.startswith(f"{self.app_id}-")
            and (t.endswith("-changelog") or t.endswith("-repartition"))
        ]
        for future in client.delete_topics(names, operation_timeout=30).values() if names else ():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise
        until(lambda: delete_group(client, self.app_id), timeout, f"group {self.app_id} to go")
        shutil.rmtree(self.folder, ignore_errors=True)
        return names


def new_app_id() -> str:
    """A fresh application id, so a run reads its input from the start."""
    return f"{APP_ID}-{uuid.uuid4().hex[:8]}"


def read_peer(settings: Settings, topic: str = OUTPUT) -> pd.DataFrame:
    """A peer's output topic (JSON values) as a frame, one row per record."""
    rows = [json.loads(m.value()) for m in read_records(settings, topic)]
    columns = ["transaction_id", "customer_id", "tx_datetime", COUNT, MEAN]
    return pd.DataFrame(rows, columns=columns)


def batch_reference(settings: Settings, topic: str = "transactions") -> pd.DataFrame:
    """The batch reference (rtml.features.batch) of the 7-day customer features, computed
    on what `topic` holds now; indexed by transaction id."""
    decode = WireDeserializer.for_topic(settings, topic)
    rows = []
    for msg in read_records(settings, topic):
        tx = decode(msg.value())
        rows.append(
            {
                "transaction_id": tx["transaction_id"],
                "event_time_ms": to_millis(tx["tx_datetime"]),
                "customer_id": tx["customer_id"],
                "terminal_id": tx["terminal_id"],
                "tx_amount": tx["tx_amount"],
            }
        )
    if not rows:
        raise PeerError(f"Topic {topic} holds no transactions: replay a history first.")
    no_labels = pd.DataFrame(
        {"terminal_id": [], "event_time_ms": [], "label_time_ms": [], "tx_fraud": []}
    ).astype("int64")
    return batch_features(pd.DataFrame(rows), no_labels)[[COUNT, MEAN]]
