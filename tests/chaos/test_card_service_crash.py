"""Killing the card service mid-transaction: exactly-once loses and repeats nothing;
at-least-once repeats events, and an idempotent consumer (dedup by event id) removes them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

import pytest

from rtml.cards.notifications import SeenIds
from rtml.cards.requests import QUERIES
from rtml.cards.service import COMMANDS, EVENTS
from rtml.ops.replay import Target, reset
from rtml.patterns.consumer import end_offsets
from rtml.poll import until
from rtml.schemas import register_all
from rtml.topics import apply
from tests.cards import card_base, commands, committed_events, send

N_COMMANDS = 3_000
RATE = 200  # commands/s, so the kills land while commands flow
KILLS = 3


def _start(group: str, guarantee: str, log) -> subprocess.Popen:
    # At-least-once: no offset commit between the kills (only the clean stop at the end
    # commits), so every restart handles again what its predecessors handled. With commits
    # every second (or five) a kill could land just after one and repeat nothing.
    every = ["--commit-every", "3600"] if guarantee == "at-least-once" else []
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rtml",
            "cards",
            "service",
            "--group",
            group,
            "--instance",
            "5",
            "--guarantee",
            guarantee,
            "--max-batch",
            "100",
            *every,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _events_written(settings) -> int:
    return sum(end_offsets(settings, EVENTS).values())


def _run_with_kills(settings, guarantee: str, tmp_path) -> list[dict]:
    """Send commands at a steady rate, SIGKILL the service KILLS times while it writes
    events, restart it each time, and return the committed events of the test's cards."""
    apply(settings)
    register_all(settings)
    base = card_base()
    cards = list(range(base, base + 50))
    sent = commands(cards, N_COMMANDS, seed=7)
    group = f"test-crash-{uuid.uuid4().hex[:6]}"
    # Other tests wrote commands before: a group starting at the topics' beginning would spend
    # the kills on their commands and reach this test's only after the last restart. Starting
    # at the end, every kill lands on this test's commands.
    reset(settings, group, Target("latest"), topics=[COMMANDS, QUERIES])

    def feed() -> None:
        for i in range(0, N_COMMANDS, RATE // 10):
            send(settings, sent[i : i + RATE // 10])
            time.sleep(0.1)  # pacing the load, not synchronisation

    log = (tmp_path / f"{guarantee}.log").open("w")
    proc = _start(group, guarantee, log)
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        for _ in range(KILLS):
            before = _events_written(settings)
            until(lambda b=before: _events_written(settings) > b + 50, 120, "events flowing", 0.05)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            proc = _start(group, guarantee, log)
        feeder.join(120)
        until(
            lambda: (
                len({e["command_id"] for e, _ in committed_events(settings, set(cards))})
                >= N_COMMANDS
            ),
            180,
            "an event for every command",
            1.0,
        )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
        log.close()
    assert {c["command_id"] for c in sent} == {
        e["command_id"] for e, _ in committed_events(settings, set(cards))
    }
    return [e for e, _ in committed_events(settings, set(cards))]


@pytest.mark.slow
def test_exactly_once_card_service_killed_mid_transaction_repeats_nothing(
    cluster_settings, tmp_path
) -> None:
    events = _run_with_kills(cluster_settings, "exactly-once", tmp_path)
    per_command = Counter(e["command_id"] for e in events)
    assert len(per_command) == N_COMMANDS and set(per_command.values()) == {1}
    by_card: dict[int, list[int]] = {}
    for e in events:
        by_card.setdefault(e["card_id"], []).append(e["version"])
    # Each card's versions are 1..n with no gap and no repeat: state was rebuilt from the
    # committed events only, never from an aborted transaction's.
    assert all(v == list(range(1, len(v) + 1)) for v in by_card.values())


@pytest.mark.slow
def test_at_least_once_repeats_events_that_an_idempotent_consumer_removes(
    cluster_settings, tmp_path
) -> None:
    events = _run_with_kills(cluster_settings, "at-least-once", tmp_path)
    per_command = Counter(e["command_id"] for e in events)
    duplicates = sum(n - 1 for n in per_command.values())
    assert duplicates > 0, "a kill between commits must leave commands handled twice"
    # The duplicate of an event has the original's id (it is derived from the command), so
    # the notification service's window keeps exactly one event per command.
    seen = SeenIds()
    kept = [e for e in events if seen.first_time(e["event_id"])]
    assert len(kept) == N_COMMANDS == len({e["command_id"] for e in kept})
