"""`rtml model train|publish|list`: train a version, publish it, see which one is live."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from rtml.cli import iso_time_ms
from rtml.config import Settings
from rtml.errors import RtmlError


def _train(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.model import registry
    from rtml.model.build import build

    if args.if_unpublished:
        live = registry.latest_published(settings)
        if live is not None:
            _say(f"{live.name} {live.version} is published already; nothing to train.")
            return 0
    frame, source = _training_set(args, settings)
    trained = build(
        frame,
        source,
        train_days=args.train_days,
        test_days=args.test_days,
        seed=args.seed,
        progress=_say,
    )
    version = registry.save(settings, trained)
    _say(f"Saved version {version} in {registry.models_dir(settings) / version}")
    print(metrics_table(registry.card(settings, version)))
    if args.publish:
        update = registry.publish(settings, version)
        _say(f"Published {update.name} {version} to model-updates.")
    return 0


def _training_set(args: argparse.Namespace, settings: Settings) -> tuple[Any, dict[str, Any]]:
    if args.from_log:
        from rtml.model.dataset import read_log

        _say("Reading the features and labels topics ...")
        read = read_log(settings, since_ms=args.since, cutoff_ms=args.cutoff)
        _say(
            f"  {read.feature_records:,} transactions with features, {len(read.frame):,} of "
            f"them labelled ({read.duplicates:,} duplicate and {read.unreadable:,} unreadable "
            f"records skipped, {read.labels_after_cutoff:,} labels after the cutoff)"
        )
        return read.frame, {
            "kind": "log",
            "since": _iso(args.since),
            "cutoff": _iso(args.cutoff),
            "rows": len(read.frame),
            "features_offsets": {
                str(p): [read.features.start[p], e] for p, e in read.features.end.items()
            },
        }
    from rtml.model.dataset import training_set
    from rtml.model.update import ModelError
    from rtml.simulate import SimulationParams, simulate

    if args.since is not None or args.cutoff is not None:
        raise ModelError("--since and --cutoff choose what to read from the log: add --from-log.")
    params = SimulationParams(
        n_customers=args.customers, n_terminals=args.terminals, n_days=args.days, seed=args.seed
    )
    _say(
        f"Simulating {args.days} days of {args.customers:,} customers and {args.terminals:,} "
        "terminals, and computing their features ..."
    )
    frame = training_set(simulate(params))
    _say(f"  {len(frame):,} labelled transactions")
    source = {
        "kind": "simulation",
        "params": {
            "customers": args.customers,
            "terminals": args.terminals,
            "days": args.days,
            "seed": args.seed,
        },
        "rows": len(frame),
    }
    return frame, source


def metrics_table(card: dict[str, Any]) -> str:
    """The candidates' test metrics as an aligned text table, the chosen one marked."""
    lines = [f"{'model':<24}{'ROC AUC':>9}{'AP':>8}{'CP@100':>8}{'fit s':>8}"]
    for kind, m in card["candidates"].items():
        name = kind + (" *" if kind == card["model"] else "")
        lines.append(
            f"{name:<24}{m['roc_auc']:>9.3f}{m['average_precision']:>8.3f}"
            f"{m['card_precision_at_100']:>8.3f}{m['fit_seconds']:>8.1f}"
        )
    t = card["thresholds"]
    lines.append(
        f"* chosen; test fraud rate {card['metrics']['fraud_rate']:.2%}; "
        f"REVIEW >= {t['review']:.4f}, DECLINE >= {t['decline']:.4f}"
    )
    return "\n".join(lines)


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.model import registry

    update = registry.publish(settings, args.version)
    print(
        f"Published {update.name} {update.version} (sha256 {update.sha256[:12]}) to model-updates."
    )
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.model import registry

    found = registry.versions(settings)
    try:
        live = registry.latest_published(settings)
        live_version, note = (live.version if live else None), ""
    except RtmlError as exc:
        live_version, note = None, f"(which version is published is unknown: {exc})"
    if not found:
        print("No model versions yet: run `rtml model train`.")
    else:
        print(f"{'version':<9}{'created':<22}{'model':<22}{'AUC':>7}{'AP':>7}{'CP@100':>8}")
    for version in found:
        try:
            c = registry.card(settings, version)
        except RtmlError:
            print(f"{version:<9}(incomplete: its training did not finish)")
            continue
        m = c["metrics"]
        mark = "  <- published" if version == live_version else ""
        print(
            f"{version:<9}{c['created'][:19]:<22}{c['model']:<22}{m['roc_auc']:>7.3f}"
            f"{m['average_precision']:>7.3f}{m['card_precision_at_100']:>8.3f}{mark}"
        )
    if live_version and live_version not in found:
        print(f"Published: {live_version} (not saved on this machine).")
    elif found and live_version is None and not note:
        print("None of them is published: `rtml model publish VERSION`.")
    if note:
        print(note)
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Add `rtml model train`, `rtml model publish VERSION` and `rtml model list`."""
    model = sub.add_parser(
        "model",
        help="train, version and publish the fraud model",
        description="Train fraud models on history (simulated, or replayed from the features "
        "and labels topics), keep each result as a version with its model card, and publish a "
        "version to the compacted model-updates topic, where the prediction service picks it up.",
    )
    actions = model.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = actions.add_parser(
        "train",
        help="train both candidates, save the better as a new version",
        description="Build the training set, train a logistic regression and a random forest "
        "on a time split (train, a gap of the label delay, test), keep the better by average "
        "precision, export it to ONNX, check it, and save it with its model card.",
    )
    train.add_argument(
        "--from-log",
        action="store_true",
        help="read the features and labels topics instead of simulating a history",
    )
    train.add_argument(
        "--since",
        type=iso_time_ms,
        help="with --from-log: features stamped at or after this ISO time",
    )
    train.add_argument(
        "--cutoff",
        type=iso_time_ms,
        help="with --from-log: only labels that arrived by this ISO time",
    )
    train.add_argument("--customers", type=int, default=5000, help="simulated customers (5000)")
    train.add_argument("--terminals", type=int, default=10000, help="simulated terminals (10000)")
    train.add_argument("--days", type=int, default=60, help="simulated days of history (60)")
    train.add_argument("--seed", type=int, default=0, help="simulation and model seed (0)")
    train.add_argument("--train-days", type=_days, default=7, help="days to train on (7)")
    train.add_argument("--test-days", type=_days, default=7, help="days to test on (7)")
    train.add_argument("--publish", action="store_true", help="publish the new version")
    train.add_argument(
        "--if-unpublished",
        action="store_true",
        help="do nothing if model-updates already holds a version (for `make lab`)",
    )
    train.set_defaults(func=_train)
    publish = actions.add_parser(
        "publish",
        help="publish a saved version to model-updates",
        description="Check a saved version as the service will, write it to the compacted "
        "model-updates topic (key: the model name) and wait for every in-sync replica.",
    )
    publish.add_argument("version", help="a version id such as v0001 (see `rtml model list`)")
    publish.set_defaults(func=_publish)
    listing = actions.add_parser(
        "list",
        help="saved versions, their test metrics, and which one is published",
        description="List the saved versions with their test metrics and mark the one "
        "model-updates holds now.",
    )
    listing.set_defaults(func=_list)


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number of days")
    return value


def _iso(ms: int | None) -> str | None:
    return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()


def _say(line: str) -> None:
    print(line, flush=True)
