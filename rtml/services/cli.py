"""`rtml services up|down|status|kill|restart|logs`: the lab's background services."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rtml.config import Settings
from rtml.services.catalogue import NAMES, SERVICES

if TYPE_CHECKING:  # lifecycle reaches Kafka and pandas: load it only when a command runs
    from rtml.services.lifecycle import ServiceStatus


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Add `rtml services` and its actions; service names are checked against the table."""
    table = "; ".join(f"{s.name}: {s.description}" for s in SERVICES)
    services = sub.add_parser(
        "services",
        help="the lab's background services (the live simulator)",
        description="Start, stop, crash and restart the background services that make the lab "
        f"live ({table}). Each runs detached with its pid file and log under the cluster's "
        "folder, services/NAME/.",
    )
    actions = services.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = actions.add_parser(
        "up",
        help="start services (default: all) and wait until each works",
        description="Start the services named (default: all) that are not running, in order, "
        "and return once each works: its log says so or its output topic grows.",
    )
    up.add_argument("names", nargs="*", metavar="NAME", help=f"services: {', '.join(NAMES)}")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each")
    down = actions.add_parser(
        "down",
        help="stop services (default: all)",
        description="Stop the services named (default: all) as Ctrl-C would, so each flushes "
        "what it produced; SIGTERM, then SIGKILL, for one that does not stop.",
    )
    down.add_argument("names", nargs="*", metavar="NAME", help=f"services: {', '.join(NAMES)}")
    actions.add_parser(
        "status",
        help="each service: running, exited or stopped; pid, uptime, log",
        description="Show each service's state (running, exited after a kill or a crash, or "
        "stopped), its pid, how long it has run and where its log is.",
    )
    kill = actions.add_parser(
        "kill",
        help="SIGKILL a service, as a crash would",
        description="SIGKILL a service, as a crash would: no flush, no clean exit.",
    )
    kill.add_argument("name", choices=NAMES, metavar="NAME", help="the service")
    restart = actions.add_parser(
        "restart",
        help="stop a service if it runs, start it and wait until it works",
        description="Stop a service if it runs, start it again and wait until it works.",
    )
    restart.add_argument("name", choices=NAMES, metavar="NAME", help="the service")
    restart.add_argument("--timeout", type=float, default=60.0, help="seconds to wait")
    logs = actions.add_parser(
        "logs",
        help="the end of a service's log",
        description="Print the last lines of a service's log (what it printed, with a line "
        "for each start).",
    )
    logs.add_argument("name", choices=NAMES, metavar="NAME", help="the service")
    logs.add_argument("-n", "--lines", type=int, default=40, help="how many lines (default 40)")
    services.set_defaults(func=_services)


def _services(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.services import lifecycle

    if args.action == "up":
        lifecycle.up(settings, args.names, timeout=args.timeout)
    elif args.action == "down":
        if not lifecycle.down(settings, args.names):
            print("No service was running.")
    elif args.action == "status":
        print(render_status(lifecycle.status(settings)))
    elif args.action == "kill":
        lifecycle.kill(settings, args.name)
    elif args.action == "restart":
        lifecycle.restart(settings, args.name, timeout=args.timeout)
    elif args.action == "logs":
        print(lifecycle.log_tail(settings, args.name, args.lines))
    return 0


def render_status(statuses: list[ServiceStatus]) -> str:
    """A table: service, state, pid, uptime, log."""
    rows = [(s.name, s.state, str(s.pid or "-"), _duration(s.uptime), str(s.log)) for s in statuses]
    header = ("SERVICE", "STATE", "PID", "UPTIME", "LOG")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in [header, *rows]
    ]
    if any(s.state == "exited" for s in statuses):
        lines.append("exited: killed or crashed; see `rtml services logs NAME`, then restart it.")
    return "\n".join(lines)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
