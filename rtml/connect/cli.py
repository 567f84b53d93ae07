"""`rtml connect ...`: run the Connect worker and manage the defined connectors over REST."""

from __future__ import annotations

import argparse

from rtml.config import Settings


def _connect(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.connect import connectors
    from rtml.connect.rest import ConnectClient
    from rtml.connect.worker import Worker

    client = ConnectClient(settings.connect_url)
    action = args.action
    if action == "up":
        Worker(settings).up(timeout=args.timeout)
    elif action == "down":
        stopped = Worker(settings).down()
        print("Kafka Connect stopped." if stopped else "Kafka Connect was not running.")
    elif action == "status":
        return _status(settings, client, args.name)
    elif action == "plugins":
        for plugin in client.plugins():
            print(f"  {plugin['type']:<7} {plugin['class']}  {plugin.get('version', '')}")
    elif action == "list":
        running = set(client.connectors())
        for name, spec in connectors.DEFINITIONS.items():
            state = client.status(name)["connector"]["state"] if name in running else "-"
            print(f"  {name:<20} {state:<8} {spec.description}")
        for name in sorted(running - set(connectors.DEFINITIONS)):
            print(f"  {name:<20} {client.status(name)['connector']['state']:<8} (not rtml's)")
    elif action == "create":
        config = connectors.create_connector(settings, args.name, client)
        target = config.get("file")
        print(f"Connector {args.name} created ({target}); see `rtml connect status {args.name}`.")
    elif action == "reference":
        from rtml.simulate import SimulationParams, simulate

        sim = simulate(
            SimulationParams(
                n_customers=args.customers, n_terminals=args.terminals, n_days=1, seed=args.seed
            )
        )
        for topic, path in connectors.write_reference_files(
            settings, sim.customers, sim.terminals
        ).items():
            print(f"  {topic:<10} {path}")
    else:
        getattr(client, action)(args.name)
        print(f"Connector {args.name}: {action} requested.")
    return 0


def _status(settings: Settings, client, name: str | None) -> int:
    from rtml.connect.worker import Worker

    if name:
        status = client.status(name)
        print(f"{name}: {status['connector']['state']} ({status.get('type', '')})")
        for task in status.get("tasks", []):
            print(f"  task {task['id']}: {task['state']}")
            if task.get("trace"):
                print("    " + task["trace"].strip().splitlines()[0])
        return 0
    worker = Worker(settings).status()
    if not worker.up:
        print(worker.message)
        return 1
    print(f"Kafka Connect {worker.version} UP at {worker.url}")
    for connector in worker.connectors:
        print(f"  {connector:<20} {client.status(connector)['connector']['state']}")
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Add `rtml connect ACTION` to the rtml command."""
    connect = sub.add_parser(
        "connect",
        help="run Kafka Connect and manage its connectors",
        description="A Kafka Connect worker in distributed mode beside the cluster, managed "
        "over its REST API on 127.0.0.1:RTML_CONNECT_PORT. Only the connectors defined in "
        "rtml/connect/connectors.py can be created.",
    )
    actions = connect.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = actions.add_parser(
        "up",
        help="start the worker and wait until it has joined its group",
        description="Start the Connect worker (jars from the cache) and return when its REST "
        "API lists connectors.",
    )
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait (default 180)")
    actions.add_parser("down", help="stop the worker", description="Stop the worker cleanly.")
    status = actions.add_parser(
        "status",
        help="the worker and each connector's state",
        description="Show whether the worker is up and the state of every connector; with "
        "NAME, that connector's tasks and the first line of any failure.",
    )
    status.add_argument("name", nargs="?", metavar="NAME", help="one connector")
    actions.add_parser(
        "plugins",
        help="connector classes the worker can run",
        description="List the connector plugins the worker found on its class path.",
    )
    actions.add_parser(
        "list",
        help="the defined connectors and their states",
        description="List the connector definitions rtml can create and the state of each.",
    )
    create = actions.add_parser(
        "create",
        help="create one of the defined connectors",
        description="Create (or update) a connector from its definition in "
        "rtml/connect/connectors.py; `rtml connect list` shows the definitions.",
    )
    create.add_argument("name", metavar="NAME", help="a definition, e.g. customers-source")
    for name, text in (
        ("pause", "pause a connector (its tasks stop, offsets are kept)"),
        ("resume", "resume a paused connector"),
        ("delete", "delete a connector (its source offsets stay in Kafka)"),
    ):
        p = actions.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("name", metavar="NAME", help="connector name")
    reference = actions.add_parser(
        "reference",
        help="write the reference files the source connectors load",
        description="Simulate customers and terminals and write them as JSON lines where "
        "customers-source and terminals-source read them.",
    )
    reference.add_argument("--customers", type=int, default=5000, help="how many (default 5000)")
    reference.add_argument("--terminals", type=int, default=10000, help="how many (default 10000)")
    reference.add_argument("--seed", type=int, default=0, help="simulation seed (default 0)")
    connect.set_defaults(func=_connect)
