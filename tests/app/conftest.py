"""A real control room server and a real browser (Debian's Chromium driven by Playwright)."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rtml import services, topics
from rtml.config import Settings
from rtml.features.runner import PIPELINE_TOPICS, fresh_topics, remove_group
from rtml.features.windows import CUSTOMER_KINDS, read_windows
from rtml.model import registry
from rtml.model.build import build
from rtml.model.dataset import training_set
from rtml.model.train import KINDS
from rtml.poll import until
from rtml.schemas import register_all
from rtml.simulate import Simulation, SimulationParams, simulate
from rtml.simulate.producer import publish_reference, replay

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def control_room(cluster_settings) -> Iterator[str]:
    """The control room as `make lab` serves it (`rtml ui`) on a free loopback port, with no
    terminal to answer a prompt; stopped afterwards, Streamlit's server with it."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtml", "ui", "--headless"],
        env={**os.environ, "RTML_UI_PORT": str(port)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                    if resp.read() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the control room did not start")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        # `rtml ui` stopped its server: nothing answers on the port any more.
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium from Debian (Playwright's own browser download is not used)."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), (
        "Chromium is missing: `make test` installs it (apt-get install chromium)"
    )
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    p = context.new_page()
    yield p
    context.close()


@pytest.fixture(scope="package")
def lab_topics(cluster_settings):
    """The catalogue's topics and schemas; the services are stopped when the control room's
    tests end, so later tests (which recreate the pipeline's topics) find none running."""
    topics.apply(cluster_settings)
    register_all(cluster_settings)
    yield cluster_settings
    services.down(cluster_settings)


@pytest.fixture()
def lab(lab_topics):
    """The test cluster as `make lab` leaves it, with the live simulator running (started
    again if a test stopped it; `up` returns at once when it runs)."""
    services.up(lab_topics, ["simulator"])
    return lab_topics


@dataclass(frozen=True)
class Pipeline:
    """What the `pipeline` fixture set up: the replayed history and the saved versions."""

    settings: Settings
    sim: Simulation  # the replayed history
    busiest: int  # the customer with the most replayed transactions
    versions: tuple[str, str]  # saved model versions; the first one published


# The live simulator's first run on a cluster numbers its transactions from 0 (later runs
# go on from there: rtml.simulate.laps), as the replayed history does: without ids of its
# own, a replayed and a live transaction of two different cards share an id, so do their
# commands and card events (`<Type>-<transaction id>#0`), and the projection keeps
# whichever event it reads first (the Replay page's rebuild then differs from the live
# read model).
REPLAYED_IDS = 10**9


def _own_ids(sim: Simulation) -> Simulation:
    """The history with its transaction ids (and its labels') moved to REPLAYED_IDS on."""
    return dataclasses.replace(
        sim,
        transactions=sim.transactions.assign(
            transaction_id=sim.transactions["transaction_id"] + REPLAYED_IDS
        ),
        labels=sim.labels.assign(transaction_id=sim.labels["transaction_id"] + REPLAYED_IDS),
    )


@pytest.fixture(scope="package")
def pipeline(lab_topics) -> Pipeline:
    """The lab after the week 2 notebook and a trained model, built once: a four-day history
    replayed onto fresh pipeline topics (event time in the past, so its windows close at
    once), two saved model versions (a logistic regression, published, and a random
    forest), and the services `make lab` starts: the feature app and the prediction service
    on that history, then the live simulator."""
    settings = lab_topics
    services.down(settings)
    fresh_topics(settings, [*PIPELINE_TOPICS, "predictions", "serve.dlq"])
    remove_group(settings, "rtml-features")  # its state would hold another run's event time
    sim = _own_ids(simulate(SimulationParams(n_customers=40, n_terminals=300, n_days=4, seed=8)))
    publish_reference(settings, sim)
    assert replay(settings, sim, progress=False).ok
    history = training_set(
        simulate(SimulationParams(n_customers=150, n_terminals=300, n_days=30, seed=4))
    )
    first, second = (
        registry.save(settings, build(history, {"kind": "simulation"}, kinds=(kind,)), plot=False)
        for kind in KINDS
    )
    registry.publish(settings, first)
    services.up(settings)
    busiest = int(sim.transactions["customer_id"].value_counts().idxmax())
    until(
        lambda: {w["kind"] for w in read_windows(settings, busiest)} == set(CUSTOMER_KINDS),
        120,
        f"closed windows of every kind for customer {busiest}",
    )
    return Pipeline(settings, sim, busiest, (first, second))
