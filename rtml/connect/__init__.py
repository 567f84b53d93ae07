"""Kafka Connect beside the cluster: a distributed worker, its REST API, and the connectors.

`Worker` starts and stops the worker JVM; `ConnectClient` manages connectors over REST;
`connectors` holds the allow-listed connector definitions (reference-data sources and audit
sinks) and writes the reference files the sources load.
"""

from rtml.connect.connectors import (
    DEAD_LETTERS,
    DEFINITIONS,
    audit_file,
    audit_lines,
    create_connector,
    reference_file,
    reload_source,
    write_reference_file,
    write_reference_files,
)
from rtml.connect.rest import ConnectClient, ConnectError
from rtml.connect.worker import Worker, WorkerStatus

__all__ = [
    "DEAD_LETTERS",
    "DEFINITIONS",
    "ConnectClient",
    "ConnectError",
    "Worker",
    "WorkerStatus",
    "audit_file",
    "audit_lines",
    "create_connector",
    "reference_file",
    "reload_source",
    "write_reference_file",
    "write_reference_files",
]
