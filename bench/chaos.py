"""The chaos suite at full length on a throw-away cluster: docs/reliability.md.

Runs every scenario of `rtml.chaos` in turn (each breaks the cluster and repairs it), and
writes one section per scenario (verdict, checks, times to resume, the timeline) plus a
summary with the machine, between `<!-- bench:NAME -->` markers as docs/benchmarks.md is
written, so a run of some scenarios keeps the others' sections.

    python -m bench.chaos                        # every scenario at its default size
    python -m bench.chaos --quick                # smaller runs, for a first look
    python -m bench.chaos --only leader-kill     # one (or more) scenarios
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.cluster import throwaway_cluster
from bench.report import Machine, command_line, machine, stop_on_sigterm, write_section
from rtml.chaos import NAMES, SCENARIOS, ChaosResult, Scenario, run
from rtml.config import Settings, project_root
from rtml.errors import RtmlError

DOCS = project_root() / "docs" / "reliability.md"
INTRO = """\
# Reliability, measured

The system promises that failures are handled gracefully: a broker lost, the schema
registry down, brokers restarted one by one. Each claim below is a scenario of
`rtml chaos` run against a real 3-node cluster on one machine: a producer writes numbered
records with `acks=all` and idempotence to a fresh topic (6 partitions, replication factor
3, `min.insync.replicas=2`), the scenario breaks something on purpose and repairs it, and an
independent reader (no consumer group, from offset 0, `read_committed`) counts by id what
was **acknowledged**, **read**, **lost** (acknowledged, never read), **duplicated**
(acknowledged and stored more than once) and **failed** (the producer got an error, so it
was never promised). *Time to resume* is the time from the break to the first
acknowledgement of a record sent after it.

The `serve-kill` scenarios break the ML pipeline instead of the cluster. On topics and a
consumer group of their own (nothing of the lab's is touched, all is deleted afterwards),
the producer writes numbered *features records* and the prediction service (`rtml serve
run`, a child process) scores them; the reader reads the *predictions*. There,
**acknowledged** counts features records, **read** those with a prediction, **lost**
features records without one, and **duplicated** transactions scored twice. *Time to
resume* is from the SIGKILL to the first prediction of the restarted service.

`make chaos` rewrites this page (`python -m bench.chaos`, `--quick` for shorter runs); one
scenario at a time: `rtml chaos run NAME`, which prints the timeline live and exits 1 when
anything acknowledged was lost or duplicated.

## What the scenarios show

- **A broker crash costs time, not data.** After a SIGKILL of the busiest leader, writes
  stall until the controller fences the dead broker (its session timeout, 9 s by default)
  and moves leadership; then every record is delivered once, in order per key.
- **Two of three brokers down: writes wait.** With `min.insync.replicas=2` and the KRaft
  quorum lost, nothing can be committed. The durable producer keeps its records (its
  message timeout is 5 minutes) and delivers every one after the restart: nothing lost,
  nothing duplicated, nothing failed.
- **A producer that gives up early is not exactly-once.** `two-down-timeout` runs the same
  outage with an 8 s message timeout. The producer reports errors, and nothing it
  acknowledged is lost, but a record timed out *in flight* may have been stored anyway
  (it is then read once although it "failed"), and after such a timeout the client starts
  a new producer epoch and sends again what it still holds, which the broker cannot
  recognise as a retry: records can be stored twice (the rows *failed, stored twice* and
  *duplicated*; whether acknowledged ones are among them varies from run to run). Every
  copy comes from the outage (the scenario checks that). Idempotence deduplicates retries
  within one epoch only: keep the message timeout longer than any outage you mean to ride
  out, or use transactions with `read_committed` readers and an idempotent consumer. The
  scenario fails whenever an acknowledged record is stored twice: that is the measured
  limit, not a flaw of the suite.
- **A clean rolling restart** moves leaders before each broker stops: writes pause for a
  fraction of a second, and a consumer group keeps up (its lag drains to 0).
- **The schema registry down** stops nothing that is already running: serializers and
  deserializers cache the schemas they have used. Registering a new schema fails with a
  sentence naming the registry's address, and works again once it is back.
- **A crashed prediction service loses no transaction.** `serve-kill` SIGKILLs the
  service a third of the way through a steady stream of features records and restarts it
  in the same group (static membership: it gets its partitions back at once). It commits
  a batch's offsets only after its predictions are acknowledged, so what it had not
  committed is scored again: at-least-once, so some transactions get two predictions,
  counted and checked to carry the same score, decision and model version (readers
  deduplicate by transaction id). `serve-kill-exactly-once` runs the service with
  `--guarantee exactly-once`: each batch is one Kafka transaction with its input offsets,
  the restart aborts the dead instance's open transaction, and a `read_committed` reader
  sees every prediction exactly once.

Not covered yet: SIGKILL of the feature app as a scenario (a crash mid-window is tested
in `tests/integration/test_features.py`, one of the card service in
`tests/chaos/test_card_service_crash.py`), and a full disk, which needs a size-limited
filesystem for a broker's `log.dirs`, not available without root.
"""
QUICK = {
    "leader-kill": 30_000,
    "two-down": 4_000,
    "two-down-timeout": 4_000,
    "rolling-restart": 6_000,
    "registry-down": 3_000,
    "serve-kill": 6_000,
    "serve-kill-exactly-once": 6_000,
}


def _rate(rate: float | None) -> str:
    return f"{rate:,.0f} records/s" if rate else "flat out"


def summary(results: Sequence[ChaosResult], facts: Machine, command: str, load: str) -> str:
    """The summary section: one row per scenario, the machine, the conditions."""
    lines = [
        "## Summary",
        "",
        f"Run on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC with `{command}`.",
        "",
        facts.line(),
        "",
        f"**Machine load**: {load}. The brokers, the registry, the producer and the reader "
        "share these cores with whatever else runs, so times to resume include waiting for "
        "a CPU; the counts do not depend on it.",
        "",
        "| scenario | verdict | acknowledged | read | lost | duplicated | failed | "
        "time to resume |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        v = r.verdict
        ttr = f"{r.time_to_resume:.1f} s" if r.time_to_resume is not None else "-"
        lines.append(
            f"| [{r.scenario}](#{r.scenario}) | {'PASS' if r.passed else '**FAIL**'} | "
            f"{v.acknowledged:,} | {v.read:,} | {v.lost:,} | {v.duplicated:,} | {v.failed:,} | "
            f"{ttr} |"
        )
    return "\n".join(lines)


def section(result: ChaosResult, chosen: Scenario) -> str:
    """One scenario's section: what it does, the verdict, the checks, the timeline."""
    v = result.verdict
    lines = [
        f"## {result.scenario}",
        "",
        chosen.summary[0].upper() + chosen.summary[1:] + ".",
        "",
        f"**{'PASS' if result.passed else 'FAIL'}**: {result.produced:,} records sent at "
        f"{_rate(result.rate)}, {result.seconds:.0f} s in all. "
        f"Repeat it with `rtml chaos run {result.scenario}`.",
        "",
        *([result.sentence(), ""] if result.said else []),
        "| what | count |",
        "|---|---:|",
        *(f"| {what} | {n:,} |" for what, n in v.rows()),
        "",
    ]
    if v.lost_ids:
        lines += [f"Lost ids (first): {', '.join(map(str, v.lost_ids))}.", ""]
    if v.duplicated_ids:
        lines += [f"Duplicated ids (first): {', '.join(map(str, v.duplicated_ids))}.", ""]
    for r in result.resumes:
        took = f"{r.seconds:.2f} s" if r.seconds is not None else "never"
        lines.append(f"- time to resume after *{r.step}*: **{took}**")
    for c in result.checks:
        detail = f" ({c.detail})" if c.detail else ""
        lines.append(f"- {'PASS' if c.passed else '**FAIL**'}: {c.name}{detail}")
    if result.errors:
        errors = ", ".join(f"`{k}` {n:,}" for k, n in result.errors.items())
        lines.append(f"- delivery errors the producer reported: {errors}")
    lines += ["", "Timeline (seconds from the start of the scenario):", "", "```"]
    lines += [e.line() for e in result.timeline]
    lines.append("```")
    return "\n".join(lines)


def publish(
    results: Sequence[ChaosResult], facts: Machine, command: str, load: str, path: Path
) -> Path:
    """Write the summary and each scenario's section to `path` (created with the intro)."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(INTRO)
    write_section("chaos-summary", summary(results, facts, command, load), path)
    for result in results:
        chosen = next(s for s in SCENARIOS if s.name == result.scenario)
        write_section(f"chaos-{result.scenario}", section(result, chosen), path)
    return path


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    text = f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} (1 / 5 / 15 min) at the start"
    if five > (os.cpu_count() or 1):
        text += ", well above the core count: other work shared the machine during this run"
    return text


def _run_all(settings: Settings, names: Sequence[str], quick: bool) -> list[ChaosResult]:
    results = []
    for name in names:
        print(f"\n== {name}", flush=True)
        records = QUICK[name] if quick else None
        result = run(
            name, settings, records=records, on_event=lambda e: print(e.line(), flush=True)
        )
        print(f"== {name}: {'PASS' if result.passed else 'FAIL'}", flush=True)
        results.append(result)
    return results


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description="Run the chaos scenarios on a throw-away cluster and write "
        "docs/reliability.md.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a first look")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=NAMES,
        metavar="NAME",
        help=f"run only these ({', '.join(NAMES)})",
    )
    parser.add_argument(
        "--external",
        action="store_true",
        help="use the running local lab cluster instead of a throw-away one "
        "(it is broken and repaired on purpose)",
    )
    parser.add_argument(
        "--output", type=Path, default=DOCS, help="the page to write (default docs/reliability.md)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenarios, write the page, exit 1 if any scenario failed."""
    args = _parser().parse_args(argv)
    names = args.only or list(NAMES)
    command = command_line(
        "python -m bench.chaos",
        (
            ("--quick", args.quick),
            (f"--only {' '.join(names)}", bool(args.only)),
            ("--external", args.external),
        ),
    )
    stop_on_sigterm()
    load = _load()
    try:
        if args.external:
            settings = Settings.from_env()
            facts = machine(settings)
            results = _run_all(settings, names, args.quick)
        else:
            print("Starting a throw-away 3-node cluster on free ports ...", flush=True)
            with throwaway_cluster() as settings:
                facts = machine(settings)
                results = _run_all(settings, names, args.quick)
    except RtmlError as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 1
    page = publish(results, facts, command, load, args.output)
    print(f"\nWrote {page}.")
    failed = [r.scenario for r in results if not r.passed]
    if failed:
        print(f"Failed: {', '.join(failed)}.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
