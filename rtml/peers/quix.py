"""The Quix side of the peer comparison: a slim Quix Streams app with only the 7-day
customer count and mean, same input, same output shape as the Kafka Streams peer.

The full feature app does much more per record (joins, 1/7/30-day windows, live windows,
labels); timing it against a one-feature Java app would compare workloads, not frameworks.
This app does what the Java peer does, with the feature app's client settings, and runs as
a process of its own:

    python -m rtml.peers.quix --group GROUP --output TOPIC     (until SIGTERM)
"""

from __future__ import annotations

import argparse
import sys
from bisect import bisect_right, insort
from collections.abc import Callable, Sequence
from typing import Any

from rtml.config import Settings
from rtml.features.definitions import MS_PER_DAY
from rtml.features.labels import to_millis
from rtml.features.runner import FeatureRun
from rtml.peers.compare import COUNT, MEAN
from rtml.peers.streams import GRACE_MS

OUTPUT = "features.quix-peer"
DAYS = 7


def window_step(
    tx: dict[str, Any],
    times: list[int],
    amounts: list[float],
    window: Callable[..., tuple[int, float]] | None = None,
) -> dict[str, Any] | None:
    """Add `tx` to the customer's (times, amounts), sorted by time and changed in place, and
    return its 7-day features; None for a transaction late by more than the grace period.

    `window` is the `customer_window` exercise (the feature app's); pass it in on a hot path,
    as looking it up costs more than the step itself.
    """
    if window is None:
        from rtml.impl import exercise

        window = exercise("customer_window")
    t = to_millis(tx["tx_datetime"])
    if times and t < times[-1] - GRACE_MS:
        return None
    at = bisect_right(times, t)
    insort(times, t)
    amounts.insert(at, tx["tx_amount"])
    cut = bisect_right(times, t - DAYS * MS_PER_DAY - GRACE_MS)
    del times[:cut], amounts[:cut]
    count, mean = window(times, amounts, t, DAYS)
    return {
        "transaction_id": tx["transaction_id"],
        "customer_id": tx["customer_id"],
        "tx_datetime": t,
        COUNT: count,
        MEAN: mean,
    }


def run_app(settings: Settings, group: str, output: str) -> None:
    """Build and run the slim app until SIGTERM or SIGINT (Quix handles both)."""
    from quixstreams import State

    from rtml.features.app import bare_application
    from rtml.impl import exercise
    from rtml.peers.streams import ensure_output
    from rtml.schemas.wire import WireDeserializer

    ensure_output(settings, output)
    decode = WireDeserializer.for_topic(settings, "transactions")
    window = exercise("customer_window")
    app = bare_application(settings, group)

    def step(tx: dict[str, Any], state: State) -> dict[str, Any] | None:
        times, amounts = state.get("t", []), state.get("a", [])
        out = window_step(tx, times, amounts, window)
        state.set("t", times)
        state.set("a", amounts)
        return out

    raw = app.topic("transactions", value_deserializer="bytes", key_deserializer="bytes")
    out = app.topic(output, value_serializer="json", key_serializer="bytes")
    sdf = app.dataframe(raw).apply(decode).apply(step, stateful=True)
    sdf.filter(lambda r: r is not None).to_topic(out)
    app.run()


class QuixPeerRun(FeatureRun):
    """The slim app as a child process, stopped (SIGTERM, then SIGKILL) when the `with`
    block ends; `wait_for`, `output` and `running` as for the feature app."""

    what = "slim Quix app"

    def __init__(self, settings: Settings, group: str, output: str = OUTPUT) -> None:
        super().__init__(settings, group=group)
        self.kind = "quix"
        self.output_topic = output
        self.argv = [sys.executable, "-m", "rtml.peers.quix", "--group", group, "--output", output]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rtml.peers.quix",
        description="Run the slim Quix app (7-day customer count and mean) until SIGTERM.",
    )
    parser.add_argument("--group", required=True, help="its own consumer group")
    parser.add_argument("--output", default=OUTPUT, help=f"output topic (default {OUTPUT})")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    print(f"slim Quix app in group {args.group} -> {args.output}: running until SIGTERM")
    sys.stdout.flush()
    run_app(settings, args.group, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
