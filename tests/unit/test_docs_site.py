"""The documentation site builds with --strict, and it covers what the docs issue asks for.

Strict mode turns every MkDocs warning into a failure: a link to a page that does not exist,
a page missing from the nav, an API reference (`::: rtml.x`) that does not resolve.
"""

import os
import subprocess
import sys
from pathlib import Path

from mkdocs.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

PATTERNS = [
    "pub-sub-consumer-groups",
    "partitioning-ordering",
    "schema-evolution",
    "joins",
    "windowing-late-data",
    "stateful-processing",
    "exactly-once",
    "idempotent-consumers",
    "retries-dlq",
    "backpressure",
    "event-sourcing",
    "cqrs",
    "request-reply",
    "replay",
    "online-feature-store",
    "model-hot-swap",
]
RUNBOOKS = [
    "consumer-lag",
    "broker-lost",
    "under-replicated-partitions",
    "poison-message",
    "replay-group",
    "rotate-model",
]
WRITEUPS = [
    "why-event-streaming-for-ml",
    "kafka-architecture-explained",
    "real-time-feature-engineering",
    "lessons-from-production-streaming",
]
PATTERN_SECTIONS = ["## Problem", "## Pattern", "## In rtml", "## Trade-offs", "## See it"]


def _nav_files(items: list) -> set[str]:
    files: set[str] = set()
    for item in items:
        if isinstance(item, str):
            files.add(item)
        elif isinstance(item, dict):
            for value in item.values():
                files |= _nav_files(value) if isinstance(value, list) else {value}
    return files


def test_site_builds_strict(tmp_path: Path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        # Not --quiet: it silences the warnings, and strict mode then passes whatever happens.
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "reference" / "cards" / "index.html").exists()


def test_every_page_is_in_the_nav():
    config = load_config(str(ROOT / "mkdocs.yml"))
    in_nav = _nav_files(config["nav"])
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert pages - in_nav == set(), "add these pages to the nav in mkdocs.yml"


def test_every_pattern_runbook_and_writeup_has_a_page():
    wanted = (
        [f"patterns/{p}.md" for p in PATTERNS]
        + [f"runbooks/{r}.md" for r in RUNBOOKS]
        + [f"writeups/{w}.md" for w in WRITEUPS]
    )
    assert [page for page in wanted if not (DOCS / page).is_file()] == []


def test_pattern_pages_have_every_section():
    missing = {
        name: [s for s in PATTERN_SECTIONS if s not in (DOCS / f"patterns/{name}.md").read_text()]
        for name in PATTERNS
    }
    assert {name: gaps for name, gaps in missing.items() if gaps} == {}


def test_the_old_runbooks_page_is_gone_and_nothing_links_to_it():
    assert not (DOCS / "runbooks.md").exists()
    sources = [ROOT / "README.md", *DOCS.rglob("*.md"), *(ROOT / "notebooks").glob("*.py")]
    linking = [p.name for p in sources if "runbooks.md" in p.read_text()]
    assert linking == []
