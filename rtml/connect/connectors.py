"""Connector definitions as code: the only connectors `rtml connect create NAME` makes.

Reference data (sources `customers-source`, `terminals-source`). The catalogue's `customers`
and `terminals` topics are compacted, keyed by id, and hold Avro in the Confluent wire format
(the registered `<topic>-value` schema), as the Python producers write them; a connector
loading a file into them must produce exactly that. Kafka's FileStreamSource emits each line
as an unkeyed string, and none of Kafka's built-in transforms can parse a string, so on its
own it cannot key a record by a field inside the line (and a compacted topic refuses records
without a key). The file connectors that can (spooldir, FilePulse) are not on Maven Central.
So each JSON line passes a chain of transforms: built-in ones dress it as a Debezium outbox
event, Debezium's EventRouter (debezium-core, on Maven Central) parses the JSON into a struct,
and ValueToKey + ExtractField make its id the record key, as decimal text like the Python
producer's (and Java's murmur2 partitioner, which that producer also uses, puts it in the
same partition). Apicurio's AvroConverter then writes the value with the latest registered
schema (it never registers one) field by field in the schema's order, which is why the
reference files hold exactly the schema's fields in that order. A consumer cannot tell these
records from the Python producer's.

Audit (sinks `transactions-audit`, `predictions-audit`). FileStreamSink writes each record's
value as text, one line per record, to `<cluster>/connect/audit/<topic>.log`. The same
AvroConverter decodes the Avro values (schema ids looked up in the registry), and timestamp
fields are rendered as ISO-8601 UTC text with milliseconds, so a line reads like
`Struct{transaction_id=7,tx_datetime=2018-04-01T07:19:05.000Z,...}`.

Apicurio's converter talks to the registry's own API (/apis/registry/v2) rather than the
Confluent-compatible one, so these definitions need an Apicurio registry (the local one, or
an external Apicurio whose ccompat URL is set in RTML_SCHEMA_REGISTRY_URL).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from confluent_kafka.schema_registry.error import SchemaRegistryError

from rtml.config import Settings
from rtml.connect.rest import ConnectClient, ConnectError
from rtml.poll import until
from rtml.schemas import SCHEMAS, load_schema, registry_client, subject

if TYPE_CHECKING:
    import pandas as pd

FILE_SOURCE = "org.apache.kafka.connect.file.FileStreamSourceConnector"
FILE_SINK = "org.apache.kafka.connect.file.FileStreamSinkConnector"
STRING_CONVERTER = "org.apache.kafka.connect.storage.StringConverter"
AVRO_CONVERTER = "io.apicurio.registry.utils.converter.AvroConverter"
EVENT_ROUTER = "io.debezium.transforms.outbox.EventRouter"
_T = "org.apache.kafka.connect.transforms."
# Reference topics and the field that is their key.
REFERENCE_IDS: dict[str, str] = {"customers": "customer_id", "terminals": "terminal_id"}
AUDITED = ("transactions", "predictions")
DEAD_LETTERS = "connect.dlq"
ISO_MILLIS = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"


def connect_dir(settings: Settings) -> Path:
    """The folder of the Connect worker and its reference files."""
    return settings.cluster_dir / "connect"


def reference_file(settings: Settings, topic: str) -> Path:
    """The JSON-lines file the `<topic>-source` connector loads."""
    return connect_dir(settings) / "reference" / f"{topic}.jsonl"


def audit_file(settings: Settings, topic: str) -> Path:
    """The text file the `<topic>-audit` connector appends to."""
    return connect_dir(settings) / "audit" / f"{topic}.log"


def audit_lines(settings: Settings, topic: str) -> int:
    """Lines the `<topic>-audit` sink has written so far (0 before its first flush).

    Counted in 1 MB blocks, so watching a file of millions of lines stays cheap.
    """
    path = audit_file(settings, topic)
    if not path.is_file():
        return 0
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))


def apicurio_url(settings: Settings) -> str:
    """The registry's native v2 API, which Apicurio's converter speaks."""
    url = settings.registry_url
    if "/apis/ccompat/" not in url:
        raise ConnectError(
            f"The Avro connectors use Apicurio's converter, but {url} is not an Apicurio "
            "Confluent-compatible URL (.../apis/ccompat/v7): use the local registry or an "
            "Apicurio one."
        )
    return url.split("/apis/ccompat/", 1)[0] + "/apis/registry/v2"


def avro_converter(settings: Settings, prefix: str = "value.converter") -> dict[str, str]:
    """Apicurio's AvroConverter in Confluent's wire format: magic byte, 4-byte schema id.

    The id is the registry's content id, which is what its ccompat API hands to confluent-kafka.
    """
    conf = {
        "": AVRO_CONVERTER,
        ".apicurio.registry.url": apicurio_url(settings),
        ".apicurio.registry.as-confluent": "true",
        ".apicurio.registry.use-id": "contentId",
        ".apicurio.registry.headers.enabled": "false",
        ".apicurio.registry.auto-register": "false",
        ".apicurio.registry.find-latest": "true",
    }
    return {prefix + k: v for k, v in conf.items()}


def _transforms(chain: Iterable[tuple[str, str, Mapping[str, str]]]) -> dict[str, str]:
    """`transforms` properties for (alias, class, settings) steps, applied in order."""
    steps = list(chain)
    conf = {"transforms": ",".join(alias for alias, _, _ in steps)}
    for alias, cls, settings in steps:
        conf[f"transforms.{alias}.type"] = cls
        conf.update({f"transforms.{alias}.{k}": v for k, v in settings.items()})
    return conf


def keyed_json_lines(id_field: str) -> dict[str, str]:
    """Transforms that turn a JSON line (a string) into a struct keyed by `id_field`.

    The EventRouter parses a JSON string only inside a Debezium change event (a struct named
    *.Envelope with op, ts_ms and an `after` row holding the payload, an event id and a
    routing field), so the first steps build one around the line; the router then emits the
    parsed payload to the topic named in the routing field, which is the original topic.
    """
    return _transforms(
        [
            ("payload", _T + "HoistField$Value", {"field": "payload"}),
            ("topic", _T + "InsertField$Value", {"topic.field": "topic"}),
            ("row", _T + "HoistField$Value", {"field": "after"}),
            ("op", _T + "InsertField$Value", {"static.field": "op", "static.value": "c"}),
            ("ts", _T + "InsertField$Value", {"timestamp.field": "ts_ms"}),
            # The router reads ts_ms as a long; InsertField writes it as a Timestamp.
            ("tsLong", _T + "TimestampConverter$Value", {"field": "ts_ms", "target.type": "unix"}),
            ("envelope", _T + "SetSchemaMetadata$Value", {"schema.name": "rtml.file.Envelope"}),
            (
                "parse",
                EVENT_ROUTER,
                {
                    "table.expand.json.payload": "true",
                    "table.field.event.id": "topic",
                    "table.field.event.key": "topic",
                    "route.by.field": "topic",
                    "route.topic.replacement": "${routedByValue}",
                },
            ),
            ("key", _T + "ValueToKey", {"fields": id_field}),
            ("keyId", _T + "ExtractField$Key", {"field": id_field}),
            # The router copies the event id into an `id` header; it means nothing here.
            ("dropHeader", _T + "DropHeaders", {"headers": "id"}),
        ]
    )


def reference_source(settings: Settings, topic: str) -> dict[str, str]:
    """FileStreamSource: the reference file's JSON lines -> `topic`, keyed by id, Avro values."""
    return {
        "connector.class": FILE_SOURCE,
        "tasks.max": "1",
        "file": str(reference_file(settings, topic)),
        "topic": topic,
        "key.converter": STRING_CONVERTER,
        **avro_converter(settings),
        **keyed_json_lines(REFERENCE_IDS[topic]),
    }


def timestamp_fields(topic: str) -> list[str]:
    """Fields of `topic`'s Avro schema that are timestamp-millis."""
    fields = json.loads(load_schema(SCHEMAS[topic]))["fields"]
    return [
        f["name"]
        for f in fields
        if isinstance(f["type"], dict) and f["type"].get("logicalType") == "timestamp-millis"
    ]


def audit_sink(settings: Settings, topic: str) -> dict[str, str]:
    """FileStreamSink: every record of `topic`, decoded from Avro, as one line of the audit file."""
    iso = [
        (
            f"iso_{name}",
            _T + "TimestampConverter$Value",
            {"field": name, "target.type": "string", "format": ISO_MILLIS},
        )
        for name in timestamp_fields(topic)
    ]
    return {
        "connector.class": FILE_SINK,
        "tasks.max": "1",
        "topics": topic,
        "file": str(audit_file(settings, topic)),
        "key.converter": STRING_CONVERTER,
        **avro_converter(settings),
        **(_transforms(iso) if iso else {}),
        **dead_letters(),
    }


def dead_letters() -> dict[str, str]:
    """A sink's error handling: a record it cannot convert or transform goes, unchanged, to
    `connect.dlq` with Connect's `__connect.errors.*` headers (its topic, partition, offset,
    connector and exception), and the task goes on.

    Connect's default is to fail the task at the first such record, which stops the sink
    for good (its lag grows until someone restarts it by hand). Errors in the sink itself
    (the file cannot be written) still fail the task: those are not the record's fault.
    """
    return {
        "errors.tolerance": "all",
        "errors.deadletterqueue.topic.name": DEAD_LETTERS,
        "errors.deadletterqueue.context.headers.enable": "true",
        "errors.log.enable": "true",
    }


@dataclass(frozen=True)
class Definition:
    """A connector `rtml connect create` may make: its name, what it does, its config."""

    name: str
    topic: str
    kind: str  # "source" or "sink"
    description: str
    build: Callable[[Settings, str], dict[str, str]]

    def config(self, settings: Settings) -> dict[str, str]:
        """The connector's configuration for this cluster."""
        return self.build(settings, self.topic)


DEFINITIONS: dict[str, Definition] = {
    d.name: d
    for d in (
        *(
            Definition(
                f"{topic}-source",
                topic,
                "source",
                f"load {topic} reference data (JSON lines) into the compacted {topic} topic",
                reference_source,
            )
            for topic in REFERENCE_IDS
        ),
        *(
            Definition(
                f"{topic}-audit",
                topic,
                "sink",
                f"append every {topic} record to an audit file",
                audit_sink,
            )
            for topic in AUDITED
        ),
    )
}


def definition(name: str) -> Definition:
    """The definition called `name`, or a clear error listing the ones that exist."""
    if name not in DEFINITIONS:
        raise ConnectError(
            f"There is no connector definition {name!r}: choose one of {', '.join(DEFINITIONS)}."
        )
    return DEFINITIONS[name]


def create_connector(
    settings: Settings, name: str, client: ConnectClient | None = None
) -> dict[str, str]:
    """Create (or update) the defined connector `name` after checking what it needs exists."""
    config = _checked_config(settings, definition(name))
    (client or ConnectClient(settings.connect_url)).create(name, config)
    return config


def reload_source(
    settings: Settings, name: str, client: ConnectClient | None = None, timeout: float = 60.0
) -> dict[str, str]:
    """Create or update source connector `name` and make it read its file from the first line.

    A file source remembers how far it read as a source offset in Kafka, kept across worker
    restarts and even across deleting and re-creating the connector, so a rewritten reference
    file would not be read again. So the connector is stopped (or created stopped), its
    offsets are deleted (Kafka 3.6+, KIP-875), and it is resumed.
    """
    spec = definition(name)
    if spec.kind != "source":
        raise ConnectError(f"{name} is a {spec.kind} connector: only a source reads a file.")
    config = _checked_config(settings, spec)
    client = client or ConnectClient(settings.connect_url)
    if name in client.connectors():
        client.create(name, config)
        client.stop(name)
    else:
        client.create_stopped(name, config)
    until(lambda: _state(client, name) == "STOPPED", timeout, f"connector {name} to stop", 0.2)
    client.reset_offsets(name)
    client.resume(name)
    return config


def _state(client: ConnectClient, name: str) -> str | None:
    """The connector's state, or None while the worker has not written its status yet."""
    try:
        return client.status(name)["connector"]["state"]
    except ConnectError as exc:
        if exc.status_code == 404:
            return None
        raise


def _checked_config(settings: Settings, spec: Definition) -> dict[str, str]:
    """The connector's config, once the schema, and a source's file, are known to exist."""
    config = spec.config(settings)
    _require_schema(settings, spec.topic)
    if spec.kind == "source":
        path = Path(config["file"])
        if not path.is_file():
            raise ConnectError(
                f"{path} does not exist: write the reference files first with "
                "`rtml connect reference`."
            )
    else:
        audit_file(settings, spec.topic).parent.mkdir(parents=True, exist_ok=True)
    return config


def _require_schema(settings: Settings, topic: str) -> None:
    try:
        registry_client(settings).get_latest_version(subject(topic))
    except (SchemaRegistryError, OSError, httpx.HTTPError) as exc:
        raise ConnectError(
            f"The registry at {settings.registry_url} has no schema for {subject(topic)} ({exc}): "
            "register the schemas first with `rtml schemas register`."
        ) from exc


def write_reference_file(frame: pd.DataFrame, topic: str, path: Path) -> int:
    """Write `frame` as JSON lines holding the fields of `topic`'s Avro schema; return rows.

    The fields are written in the schema's order and nothing else, so each parsed line has
    the layout of the registered schema the AvroConverter writes it with. The file is
    replaced atomically, so a connector never reads half of it. A running source connector
    streams lines appended later but does not reread a replaced file from the start: its
    position in the file is a source offset stored in Kafka. To reload, stop the connector
    and reset its offsets (PUT /connectors/NAME/stop, DELETE /connectors/NAME/offsets):
    `reload_source` does that.
    """
    fields = [f["name"] for f in json.loads(load_schema(SCHEMAS[topic]))["fields"]]
    missing = [f for f in fields if f not in frame.columns]
    if missing:
        raise ConnectError(
            f"The {topic} data lacks the column(s) {', '.join(missing)} its schema needs."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as out:
        # to_dict gives Python ints and floats; json writes floats at full precision.
        for record in frame[fields].to_dict("records"):
            out.write(json.dumps(record) + "\n")
    tmp.replace(path)
    return len(frame)


def write_reference_files(
    settings: Settings, customers: pd.DataFrame, terminals: pd.DataFrame
) -> dict[str, Path]:
    """Write the simulator's customers and terminals where the source connectors read them."""
    paths = {}
    for topic, frame in (("customers", customers), ("terminals", terminals)):
        paths[topic] = reference_file(settings, topic)
        write_reference_file(frame, topic, paths[topic])
    return paths
