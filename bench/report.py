"""docs/benchmarks.md, written one section at a time, and the facts of the machine measured.

Each benchmark owns one section between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`
and rewrites only that, so benchmarks written later (features, pipeline, ...) add their
own sections without touching the others' results.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from rtml.cluster.jars import jar_dir
from rtml.cluster.java import find_java
from rtml.config import Settings, project_root
from rtml.errors import RtmlError

DOCS = project_root() / "docs" / "benchmarks.md"
INTRO = """\
# Benchmarks

Measured on one machine by the scripts in `bench/`; `make bench` runs them all. Each section
below is rewritten by its own script between its markers, and the rest of the page is kept.
The machines these run on are small and shared (the brokers run on the same cores as the
clients), so absolute rates move from run to run: every section compares figures measured
side by side in one run, and those ratios are what to read first.
"""
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class BenchError(RtmlError):
    """A benchmark could not run, or its results cannot be trusted (records lost, bad output)."""


def markers(name: str) -> tuple[str, str]:
    """The comment lines that open and close section `name`."""
    if not _NAME.match(name):
        raise BenchError(f"Section name {name!r} is not valid: use lowercase letters, digits, '-'.")
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def replace_section(page: str, name: str, body: str) -> str:
    """`page` with section `name` holding `body`: replaced in place, or appended if new.

    An empty page starts with the intro. Text outside the markers is kept as it is.
    """
    start, end = markers(name)
    if "<!-- bench:" in body or "<!-- /bench:" in body:
        raise BenchError(f"The body of section {name} contains a section marker.")
    block = f"{start}\n{body.strip()}\n{end}"
    if not page.strip():
        page = INTRO
    opened, closed = page.count(start), page.count(end)
    if opened == 0 and closed == 0:
        return page.rstrip("\n") + "\n\n" + block + "\n"
    if opened != 1 or closed != 1 or page.index(start) > page.index(end):
        raise BenchError(
            f"The page has {opened} opening and {closed} closing markers of section {name} "
            f"(or they are out of order): fix `{start}` ... `{end}` by hand, then run again."
        )
    head, rest = page.split(start, 1)
    return head + block + rest.split(end, 1)[1]


def write_section(name: str, body: str, path: Path = DOCS) -> Path:
    """Rewrite section `name` of the page at `path` (created with the intro if missing)."""
    page = path.read_text() if path.is_file() else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(replace_section(page, name, body))
    return path


def add_run_arguments(parser: argparse.ArgumentParser, section: str, external: str) -> None:
    """`--external` (`external` says what it does to that cluster) and `--output`, as every
    benchmark takes them."""
    parser.add_argument(
        "--external",
        action="store_true",
        help="use the running lab cluster (or RTML_BOOTSTRAP_SERVERS) instead of a throw-away "
        f"one; {external}",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DOCS,
        help=f"the page to write the `{section}` section to (default docs/benchmarks.md)",
    )


def command_line(prog: str, flags: Iterable[tuple[str, bool]]) -> str:
    """The command that repeats a run: `prog` and each flag that was on, for the page."""
    return prog + "".join(f" {flag}" for flag, on in flags if on)


def stop_on_sigterm() -> None:
    """Make SIGTERM (a killed `make`) unwind like Ctrl-C, so every child process and the
    throw-away cluster are stopped."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


@dataclass(frozen=True)
class Machine:
    """What a reader needs to compare a result with their own machine."""

    cores: int
    cpu: str
    ram_gib: float
    os: str
    python: str
    java: str
    kafka: str
    cluster: str

    def line(self) -> str:
        """One Markdown line: the machine, the runtimes and the cluster's shape."""
        cpu = f" ({self.cpu})" if self.cpu else ""
        return (
            f"**Machine**: {self.cores} cores{cpu}, {self.ram_gib:.0f} GiB RAM, {self.os}; "
            f"Python {self.python}, Java {self.java}, Kafka {self.kafka}; "
            f"cluster: {self.cluster}."
        )


def machine(settings: Settings) -> Machine:
    """The facts of this machine and of the cluster `settings` points at."""
    if settings.local:
        cluster = (
            f"{settings.nodes} co-located KRaft nodes (combined broker + controller) on this "
            f"machine, {settings.kafka_heap} heap each"
        )
    else:
        cluster = "an external cluster (RTML_BOOTSTRAP_SERVERS); Kafka above is the tools' version"
    return Machine(
        cores=os.cpu_count() or 0,
        cpu=_cpu_model(),
        ram_gib=psutil.virtual_memory().total / 2**30,
        os=_os_name(),
        python=platform.python_version(),
        java=_java_version(settings),
        kafka=kafka_version(settings),
        cluster=cluster,
    )


def kafka_version(settings: Settings) -> str:
    """The Kafka version of the cached jars (the brokers' and the tools'), or 'unknown'."""
    try:
        folder = jar_dir(settings)
    except RtmlError:
        return "unknown"
    for jar in sorted(folder.glob("kafka-clients-*.jar")):
        return jar.stem.removeprefix("kafka-clients-")
    return "unknown"


def _java_version(settings: Settings) -> str:
    try:
        java = find_java(settings.java)
        out = subprocess.run(
            [str(java.path), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (RtmlError, OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(r'version "([^"]+)"', out.stderr + out.stdout)
    return match.group(1) if match else str(java.major)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return f"{line.split('=', 1)[1].strip(chr(34))}, kernel {platform.release()}"
    except OSError:
        pass
    return platform.platform(terse=True)
