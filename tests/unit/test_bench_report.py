"""docs/benchmarks.md is written one section at a time; each benchmark owns only its own."""

import os
import platform

import pytest

from bench.report import (
    INTRO,
    BenchError,
    Machine,
    command_line,
    machine,
    replace_section,
    write_section,
)
from rtml.config import Settings


def test_an_empty_page_gets_the_intro_and_the_section():
    page = replace_section("", "producer", "## Producer\n\n| a |\n")
    assert page.startswith(INTRO)
    assert page.endswith(
        "<!-- bench:producer -->\n## Producer\n\n| a |\n<!-- /bench:producer -->\n"
    )


def test_a_section_is_replaced_in_place_and_the_rest_is_kept():
    page = replace_section("", "producer", "old producer")
    page = replace_section(page, "pipeline", "pipeline results")
    page = page.replace(INTRO, INTRO + "\nA note someone wrote by hand.\n")
    updated = replace_section(page, "producer", "new producer")
    assert "old producer" not in updated and "new producer" in updated
    assert "pipeline results" in updated and "A note someone wrote by hand." in updated
    assert updated.index("new producer") < updated.index("pipeline results")  # order kept
    assert replace_section(updated, "producer", "new producer") == updated  # idempotent


def test_broken_markers_are_refused_not_guessed():
    page = replace_section("", "producer", "results")
    with pytest.raises(BenchError, match="markers of section producer"):
        replace_section(page.replace("<!-- /bench:producer -->", ""), "producer", "x")
    with pytest.raises(BenchError, match="markers of section producer"):
        replace_section(page + "\n<!-- bench:producer -->\n", "producer", "x")
    with pytest.raises(BenchError, match="contains a section marker"):
        replace_section(page, "pipeline", "<!-- /bench:producer -->")
    with pytest.raises(BenchError, match="not valid"):
        replace_section(page, "Pipeline results", "x")


def test_write_section_creates_the_page_and_rewrites_only_its_section(tmp_path):
    path = tmp_path / "docs" / "benchmarks.md"
    write_section("producer", "run one", path)
    write_section("features", "features table", path)
    write_section("producer", "run two", path)
    text = path.read_text()
    assert text.startswith("# Benchmarks")
    assert "run two" in text and "run one" not in text and "features table" in text


def test_the_machine_line_names_what_a_reader_compares():
    facts = Machine(2, "AMD EPYC", 23.5, "Debian 12", "3.11.7", "25.0.2", "4.1.1", "3 nodes")
    line = facts.line()
    for part in ("2 cores (AMD EPYC)", "24 GiB RAM", "Debian 12", "Python 3.11.7", "Java 25.0.2"):
        assert part in line
    assert "Kafka 4.1.1" in line and "cluster: 3 nodes" in line


def test_machine_reads_this_machine():
    settings = Settings.from_env({"RTML_NODES": "3", "RTML_KAFKA_HEAP": "768m"})
    facts = machine(settings)
    assert facts.cores == os.cpu_count()
    assert facts.python == platform.python_version()
    assert facts.ram_gib > 0.1
    assert "3 co-located KRaft nodes" in facts.cluster and "768m heap" in facts.cluster
    assert facts.java.split(".")[0].isdigit()
    assert facts.kafka == "unknown" or facts.kafka[0].isdigit()
    external = machine(Settings.from_env({"RTML_BOOTSTRAP_SERVERS": "broker:9092"}))
    assert "external cluster" in external.cluster


def test_the_command_line_names_only_the_flags_that_were_on():
    flags = (("--quick", True), ("--rates 1,2", False), ("--external", True))
    assert command_line("python -m bench.x", flags) == "python -m bench.x --quick --external"
    assert command_line("python -m bench.x", ()) == "python -m bench.x"
