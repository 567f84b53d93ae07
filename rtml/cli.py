"""The `rtml` command: every capability of the system from the shell.

Each subcommand maps to one function in the package; this module only parses arguments,
calls it, and turns an `RtmlError` into one clear sentence and exit status 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import signal
import subprocess
import sys
import time
import webbrowser
from collections.abc import Sequence

import httpx

from rtml.config import Settings, project_root
from rtml.errors import RtmlError

# Subpackages that add their own subcommands: each module has
# `add_subcommands(sub)`, whose parsers set `func(args, settings) -> int`.
PLUGINS: tuple[str, ...] = (
    "rtml.observe.cli",
    "rtml.simulate.cli",
    "rtml.connect.cli",
    "rtml.features.cli",
    "rtml.services.cli",
    "rtml.model.cli",
    "rtml.serve.cli",
    "rtml.serve.http_cli",
    "rtml.cards.cli",
    "rtml.ops.cli",
    "rtml.chaos.cli",
    "rtml.aws.cli",
    "rtml.peers.cli",
    "rtml.rabbit.cli",
)

# Tools that take --bootstrap-server; rtml adds the cluster's address unless given.
_TAKES_BOOTSTRAP = {
    "topics",
    "consumer-groups",
    "configs",
    "metadata-quorum",
    "log-dirs",
    "get-offsets",
}


def _cluster(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.cluster import LocalCluster, get_status

    if args.action == "status":
        status = get_status(settings, include_internal=args.internal)
        print(status.render())
        if status.reachable and settings.local and not settings.schema_registry_url:
            from rtml.cluster.registry import Registry

            reg = Registry(settings).status()
            print(
                f"schema registry: {reg.url} "
                + (f"UP, {reg.subjects} subjects" if reg.up else "DOWN")
            )
        return 0 if status.reachable else 1
    if args.action == "acls":
        from rtml.cluster.security import markdown_table

        print(markdown_table(), end="")
        return 0
    cluster = LocalCluster(settings)
    if args.action == "fetch":
        print(f"Jars ready in {cluster.jars} (Java {cluster.java.major} at {cluster.java.path})")
    elif args.action == "up":
        cluster.up(timeout=args.timeout, registry=not args.no_registry, secure=args.secure)
    elif args.action == "down":
        cluster.down(wipe=args.wipe)
    elif args.action == "kill":
        cluster.kill(args.node)
    elif args.action == "stop":
        cluster.stop(args.node)
    elif args.action == "restart":
        cluster.restart(args.node, timeout=args.timeout)
    return 0


def _kafka(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.cluster.tools import tool_command

    tool_args = list(args.args)
    if tool_args[:1] == ["--"]:
        tool_args = tool_args[1:]
    if args.tool in _TAKES_BOOTSTRAP and "--bootstrap-server" not in tool_args:
        tool_args = ["--bootstrap-server", settings.bootstrap, *tool_args]
        if settings.local_secure and "--command-config" not in tool_args:
            from rtml.cluster.security import client_properties_file

            # The secure local cluster: the tool logs in as admin, as rtml itself does.
            tool_args = ["--command-config", str(client_properties_file(settings)), *tool_args]
    cmd = tool_command(settings, args.tool, tool_args)
    sys.stdout.flush()
    os.execv(cmd[0], cmd)
    return 0  # pragma: no cover - execv does not return


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from rtml import topics

    if args.action == "docs":
        path = project_root() / "docs" / "topics.md"
        path.write_text(topics.docs_page())
        print(f"Wrote {path}")
        return 0
    if args.action == "list":
        print(topics.markdown_table())
        return 0
    checks = topics.apply(settings)
    for c in checks:
        print(f"  {c.name:<22} {c.state.upper()}" + "".join(f"\n      {p}" for p in c.problems))
    drift = [c.name for c in checks if c.state == "drift"]
    if drift:
        print(
            f"{len(drift)} topic(s) differ from the catalogue ({', '.join(drift)}); rtml changes "
            "nothing that exists: fix them by hand or delete and re-apply."
        )
        return 1
    print(f"{len(checks)} topics match the catalogue.")
    return 0


def _schemas(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.schemas import register_all

    for name, schema_id in register_all(settings).items():
        print(f"  {name:<24} id {schema_id}")
    print(f"Registered at {settings.registry_url} with BACKWARD compatibility.")
    return 0


def _grade(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.grade import grade

    result = grade(args.week, impl=args.impl)
    print(result.render())
    return 0 if result.passed else 1


def _down(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.aws.server import MotoServer
    from rtml.cluster import LocalCluster
    from rtml.rabbit.server import RabbitServer

    # The comparison brokers keep their pid files in the cluster folder: stop them before a
    # wipe removes the files that find them.
    if MotoServer(settings).down():
        print("The moto server (Kinesis, EventBridge) stopped.")
    rabbit = RabbitServer(settings)
    if rabbit.alive():
        rabbit.down(wipe=args.wipe)
        print("RabbitMQ stopped.")
    if settings.local:
        LocalCluster(settings).down(wipe=args.wipe)
    else:
        from rtml import services

        # The services run here even against an external cluster; the cluster is not ours.
        services.down(settings)
        print("An external cluster is configured (RTML_BOOTSTRAP_SERVERS); it keeps running.")
    return 0


def iso_time_ms(text: str) -> int:
    """An argparse type: an ISO 8601 date or time (UTC unless it says otherwise) as epoch ms."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time: use e.g. 2018-05-01 or 2018-05-01T12:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def _ui(args: argparse.Namespace, settings: Settings) -> int:
    """Run the control room until Ctrl-C; open it in a browser once it answers.

    Streamlit always runs headless here: otherwise its first run asks for an e-mail address
    on the terminal (and fails without one), and `make lab` would stop there. The browser
    is opened from here instead, once the page can be served.
    """
    home = project_root() / "lab_app" / "Home.py"
    url = f"http://127.0.0.1:{settings.ui_port}"
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(home),
        f"--server.address={settings.ui_address}",
        f"--server.port={settings.ui_port}",
        "--server.headless=true",
        "--browser.gatherUsageStats=false",
    ]
    print(f"Control room on {url} (Ctrl-C stops it; the cluster keeps running).")
    sys.stdout.flush()
    proc = subprocess.Popen(cmd)
    # A SIGTERM (`kill`, a test's teardown) stops the server too, not only this process.
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        if not args.headless and _served(proc, f"{url}/_stcore/health"):
            webbrowser.open(url)
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        return 0


def _served(proc: subprocess.Popen[bytes], health: str, timeout: float = 60.0) -> bool:
    """True once `health` answers 200; False if the server exits or `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(health, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass  # not listening yet
        time.sleep(0.2)
    return False


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with a --help on every subcommand."""
    parser = argparse.ArgumentParser(
        prog="rtml",
        description="A real-time ML system on Apache Kafka. Settings come from RTML_* variables.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cluster = sub.add_parser(
        "cluster",
        help="run the local 3-node KRaft cluster",
        description="Start, inspect, crash and restart the local Kafka cluster (no Docker).",
    )
    actions = cluster.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = actions.add_parser(
        "up",
        help="fetch jars (once), format and start every node, wait until writes succeed",
        description="Start all nodes and return when every broker is registered and a probe "
        "topic with replication factor 3 accepts a write with acks=all.",
    )
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
    up.add_argument(
        "--no-registry", action="store_true", help="brokers only, without the schema registry"
    )
    up.add_argument(
        "--secure",
        action="store_true",
        help="a new cluster with SASL/SCRAM logins and ACLs, one principal per service "
        "(docs/external-clusters.md); it stays secure at later starts",
    )
    actions.add_parser(
        "fetch",
        help="fetch Kafka's jars from Maven Central (once) and the JDK check",
        description="Resolve infra/pom.xml with Maven into the jar cache; later starts reuse it.",
    )
    down = actions.add_parser(
        "down", help="stop every node", description="Stop every node cleanly."
    )
    down.add_argument("--wipe", action="store_true", help="also delete data, logs and configs")
    status = actions.add_parser(
        "status",
        help="controller, brokers, partitions, leaders, ISR",
        description="Show the active controller, each broker up or down, and every partition's "
        "leader, replicas and ISR with under-replicated and offline counts.",
    )
    status.add_argument("--internal", action="store_true", help="include internal topics (__*)")
    actions.add_parser(
        "acls",
        help="print the principals of the secure profile and what each may do",
        description="Print the table of docs/external-clusters.md: each principal of "
        "`rtml cluster up --secure` with the topics, groups and transactional ids its ACLs allow.",
    )
    for name, text in (
        ("kill", "SIGKILL node N, as a crash would"),
        ("stop", "stop node N cleanly (controlled shutdown)"),
        ("restart", "restart node N and wait until it is back in every ISR"),
    ):
        p = actions.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("node", type=int, metavar="N", help="node id (1, 2 or 3)")
        if name == "restart":
            p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait")
    cluster.set_defaults(func=_cluster)

    kafka = sub.add_parser(
        "kafka",
        help="run one of Kafka's own tools from the cached jars",
        description="Run Kafka's command-line tools (TopicCommand and friends) with rtml's JDK "
        "and jars; --bootstrap-server is added for you. Example: "
        "rtml kafka topics --describe --topic rtml-probe",
    )
    from rtml.cluster.tools import TOOLS

    kafka.add_argument("tool", choices=sorted(TOOLS), help="which tool")
    kafka.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the tool")
    kafka.set_defaults(func=_kafka)

    topics = sub.add_parser(
        "topics",
        help="create or check the topic catalogue",
        description="The topic catalogue (rtml/topics.py): apply creates missing topics and "
        "reports drift in existing ones; list prints it; docs regenerates docs/topics.md.",
    )
    topic_actions = topics.add_subparsers(dest="action", required=True, metavar="ACTION")
    topic_actions.add_parser(
        "apply",
        help="create missing topics, report drift",
        description="Create missing topics and compare existing ones with the catalogue "
        "(partitions, replication factor, configs); exit 1 on drift.",
    )
    topic_actions.add_parser("list", help="print the catalogue", description="Print the catalogue.")
    topic_actions.add_parser(
        "docs", help="write docs/topics.md", description="Regenerate docs/topics.md."
    )
    topics.set_defaults(func=_topics)

    schemas = sub.add_parser(
        "schemas",
        help="register every topic's Avro schema",
        description="Register the Avro schema of every topic (subject <topic>-value) with "
        "BACKWARD compatibility; idempotent.",
    )
    schema_actions = schemas.add_subparsers(dest="action", required=True, metavar="ACTION")
    schema_actions.add_parser(
        "register", help="register all schemas", description="Register all schemas."
    )
    schemas.set_defaults(func=_schemas)

    grade = sub.add_parser(
        "grade",
        help="grade your lab exercises for one week",
        description="Run week N's grading tests against your code in labs/ and print one line "
        "per check.",
    )
    grade.add_argument("week", choices=["week1", "week2", "week3", "week4"], help="which week")
    grade.add_argument(
        "--impl", choices=["labs", "solutions"], default="labs", help="what to grade (default labs)"
    )
    grade.set_defaults(func=_grade)

    ui = sub.add_parser(
        "ui",
        help="open the Streamlit control room on 127.0.0.1",
        description="Run the control room (Streamlit) bound to 127.0.0.1 on RTML_UI_PORT.",
    )
    ui.add_argument("--headless", action="store_true", help="do not open a browser")
    ui.set_defaults(func=_ui)

    stop_all = sub.add_parser(
        "down",
        help="stop everything rtml started",
        description="Stop every process rtml started (the cluster and its services).",
    )
    stop_all.add_argument("--wipe", action="store_true", help="also delete data and logs")
    stop_all.set_defaults(func=_down)
    for name in PLUGINS:
        importlib.import_module(name).add_subcommands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `rtml` and `python -m rtml`."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        return args.func(args, settings)
    except RtmlError as exc:
        print(f"rtml: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`rtml cluster status | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
