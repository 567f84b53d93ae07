"""Kafka's own command-line tools, run from the cached jars with the same JDK.

Only the tools named here can be run: the CLI and the control room pass a name from this
table, never a class name or a shell string.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from rtml.cluster.errors import ClusterError
from rtml.cluster.jars import classpath, ensure_jars
from rtml.cluster.java import find_java
from rtml.config import Settings

# Tools log warnings and errors to stderr: enough to see a problem, quiet otherwise.
_TOOLS_LOG4J2 = """\
status = warn
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = err
"""

TOOLS: dict[str, str] = {
    "topics": "org.apache.kafka.tools.TopicCommand",
    "consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "configs": "kafka.admin.ConfigCommand",
    "metadata-quorum": "org.apache.kafka.tools.MetadataQuorumCommand",
    "log-dirs": "org.apache.kafka.tools.LogDirsCommand",
    "get-offsets": "org.apache.kafka.tools.GetOffsetShell",
    "producer-perf-test": "org.apache.kafka.tools.ProducerPerformance",
    "end-to-end-latency": "org.apache.kafka.tools.EndToEndLatency",
}


def tool_command(settings: Settings, tool: str, args: Sequence[str]) -> list[str]:
    """The argv that runs Kafka tool `tool` with `args` (bootstrap servers are not added)."""
    if tool not in TOOLS:
        raise ClusterError(f"Unknown Kafka tool {tool!r}: choose one of {', '.join(TOOLS)}.")
    java = find_java(settings.java)
    jars = ensure_jars(settings, java)
    log_config = settings.home / "tools-log4j2.properties"
    if not log_config.is_file() or log_config.read_text() != _TOOLS_LOG4J2:
        log_config.parent.mkdir(parents=True, exist_ok=True)
        log_config.write_text(_TOOLS_LOG4J2)
    return [
        str(java.path),
        "-Xmx256m",
        f"-Dlog4j2.configurationFile={log_config}",
        "-cp",
        classpath(jars),
        TOOLS[tool],
        *args,
    ]


def run_tool(
    settings: Settings, tool: str, args: Sequence[str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run Kafka tool `tool` and capture its output."""
    return subprocess.run(
        tool_command(settings, tool, args),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
