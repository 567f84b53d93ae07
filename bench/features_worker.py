"""One consumer of the feature benchmark, as a process of its own until SIGTERM.

    python -m bench.features_worker KIND --group GROUP [--output TOPIC] [--profile FILE]

KIND is one of `CONSUMERS`: the passthrough Quix app, the feature app with every option
or without its live windows and label join, or the hand-written loop. Each reads the
`transactions` topic from the start in its own consumer group, so each processes the same
backlog. The cluster comes from the RTML_* variables, as for `rtml features run`.
`--profile FILE` profiles it with cProfile from SIGUSR1 on and writes the statistics to
FILE when it stops.
"""

from __future__ import annotations

import argparse
import cProfile
import signal
import sys
from collections.abc import Callable, Sequence

from rtml.config import Settings

PASSTHROUGH, HAND, SLIM, FULL = "passthrough", "hand", "features-slim", "features"
CONSUMERS = {
    PASSTHROUGH: "Quix passthrough: read transactions, write them unchanged",
    HAND: "hand-written confluent-kafka loop: customer windows only",
    SLIM: "feature app, live windows and label join off",
    FULL: "feature app, every option on",
}


def passthrough(settings: Settings, group: str, output: str) -> Callable[[], None]:
    """A Quix app that copies `transactions` to `output`, bytes as they are: the framework's
    own cost, with the feature app's client settings."""
    from rtml.features.app import bare_application

    app = bare_application(settings, group)
    raw = app.topic("transactions", value_deserializer="bytes", key_deserializer="bytes")
    out = app.topic(output, value_serializer="bytes", key_serializer="bytes")
    app.dataframe(raw).to_topic(out)
    return app.run


def feature_app(settings: Settings, group: str, full: bool) -> Callable[[], None]:
    """The feature app of `rtml features run`, with or without windows and label join."""
    from rtml.features.app import FeatureApp, FeatureOptions

    options = FeatureOptions(group=group, windows=full, label_join=full)
    return FeatureApp(settings, options).run


def hand_loop(settings: Settings, group: str, output: str) -> Callable[[], None]:
    """The hand-written loop, stopped by SIGTERM like the Quix apps."""
    from bench.features_loop import run_loop

    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))

    def run() -> None:
        run_loop(settings, group, output, lambda: bool(stopping))

    return run


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.features_worker",
        description="Run one consumer of the feature benchmark until SIGTERM.",
    )
    parser.add_argument("kind", choices=list(CONSUMERS))
    parser.add_argument("--group", required=True, help="its own consumer group")
    parser.add_argument("--output", help="the topic the passthrough app and the hand loop write to")
    parser.add_argument(
        "--profile", help="profile from SIGUSR1 on; write cProfile statistics to this file on exit"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.kind in (PASSTHROUGH, HAND) and not args.output:
        print(f"bench: {args.kind} needs --output TOPIC.", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    if args.kind == PASSTHROUGH:
        run = passthrough(settings, args.group, args.output)
    elif args.kind == HAND:
        run = hand_loop(settings, args.group, args.output)
    else:
        run = feature_app(settings, args.group, full=args.kind == FULL)
    print(f"{args.kind} in group {args.group}: running until SIGTERM", flush=True)
    if args.profile is None:
        run()
        return 0
    # Profiling starts on SIGUSR1, once start-up is over, so the profile shows the steady
    # per-record work. The handler runs in the main thread, which processes every record.
    profile = cProfile.Profile()
    signal.signal(signal.SIGUSR1, lambda *_: profile.enable())
    try:
        run()
    finally:
        profile.disable()
        profile.dump_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
