"""A real control room server and a real browser (Debian's Chromium driven by Playwright)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtml import services, topics
from rtml.schemas import register_all

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
