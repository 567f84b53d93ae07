"""RabbitMQ beside Kafka: the same transactions through a work queue and a consumer group.

Starts a throw-away Kafka cluster and a RabbitMQ broker (Debian's package, `make rabbitmq`),
runs `rtml.compare.rabbit.compare` once (both sides in the same run, on the same messages),
and writes the `rabbit` section of docs/benchmarks.md.

    python -m bench.rabbit            # 20,000 transactions
    python -m bench.rabbit --quick    # 2,000
    python -m bench.rabbit --external # the running lab cluster (RabbitMQ is started anyway)
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.cluster import throwaway_cluster
from bench.report import add_run_arguments, command_line, machine, stop_on_sigterm, write_section
from rtml.compare.rabbit import PREFETCH, SideResult, compare, table
from rtml.config import Settings
from rtml.errors import RtmlError
from rtml.rabbit import RabbitServer

DEFAULT_MESSAGES = 20_000
QUICK_MESSAGES = 2_000
WORK_MS = 0.2  # simulated work per message, so the kill lands mid-run


def _run(settings: Settings, n: int, command: str, output: Path) -> Path:
    facts = machine(settings)
    server = RabbitServer(settings)
    try:
        port = server.up()
        load = os.getloadavg()[0]
        rabbit, kafka = compare(settings, port, n, kill_after=n // 10, work_ms=WORK_MS)
    finally:
        server.down(wipe=True)
    print(table(rabbit, kafka))
    return write_section("rabbit", _page(rabbit, kafka, facts.line(), command, load), output)


def _page(rabbit: SideResult, kafka: SideResult, facts: str, command: str, load: float) -> str:
    ratio = kafka.publish_rate / rabbit.publish_rate
    notes = "".join(f"\n- note: {n}" for n in rabbit.notes + kafka.notes)
    return f"""## RabbitMQ beside Kafka: a work queue and a consumer group

{facts}

`{command}`: {rabbit.sent:,} simulated transactions (JSON, about 150 bytes) through a durable
RabbitMQ queue and through a Kafka topic of 6 partitions (RF 3), in one run. RabbitMQ 3.10
from Debian's package, persistent messages, publisher confirms with up to 1,000 unconfirmed;
Kafka acks=all with idempotence, linger 5 ms. Two consumers on each side with {WORK_MS} ms of
simulated work per message: RabbitMQ workers are processes with manual acks and prefetch
{PREFETCH}, one SIGKILLed after a tenth of the messages; Kafka consumers are threads of one
process in a group, committing after each batch. Load average (1 min) at the start: {load:.1f}.

{table(rabbit, kafka)}

Publishing: Kafka acknowledged {ratio:.1f}x as many messages per second as RabbitMQ confirmed.
Consume rates include the simulated work, and RabbitMQ's the kill. Per-key order: a delivery
is out of order when a later transaction of the same customer was processed before it.{notes}
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison, write its section, print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.rabbit", description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_MESSAGES:,} messages")
    add_run_arguments(parser, "rabbit", "writes and deletes its own topic")
    args = parser.parse_args(argv)
    n = QUICK_MESSAGES if args.quick else DEFAULT_MESSAGES
    command = command_line(
        "python -m bench.rabbit", (("--quick", args.quick), ("--external", args.external))
    )
    stop_on_sigterm()
    try:
        if args.external:
            page = _run(Settings.from_env(), n, command, args.output)
        else:
            print("Starting a throw-away 3-node cluster on free ports ...")
            with throwaway_cluster() as settings:
                page = _run(settings, n, command, args.output)
    except RtmlError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print(f"Wrote the rabbit section of {page}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
