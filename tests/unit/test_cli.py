"""The `rtml` command: help everywhere, and errors as one sentence with exit status 2."""

import subprocess
import sys

import pytest

from rtml.cli import build_parser, main


def _subcommands(parser, prefix=()):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _subcommands(sub, (*prefix, name))


@pytest.mark.parametrize("path", [p for p, _ in _subcommands(build_parser())], ids=" ".join)
def test_every_subcommand_has_help(path, capsys):
    with pytest.raises(SystemExit) as info:
        main([*path, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: rtml " + " ".join(path))
    assert len(out.splitlines()) > 3


def test_python_dash_m_runs_the_same_command():
    out = subprocess.run(
        [sys.executable, "-m", "rtml", "--help"], capture_output=True, text=True, check=True
    )
    assert "cluster" in out.stdout and "grade" in out.stdout


def test_unknown_node_is_a_sentence_not_a_traceback(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("RTML_HOME", str(tmp_path))
    assert main(["cluster", "kill", "7"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "rtml: There is no node 7: this cluster has nodes 1, 2, 3."


def test_bad_env_value_is_a_sentence(capsys, monkeypatch):
    monkeypatch.setenv("RTML_KAFKA_PORT", "abc")
    assert main(["cluster", "status"]) == 2
    err = capsys.readouterr().err
    assert "RTML_KAFKA_PORT='abc' is not a whole number" in err
    assert "Traceback" not in err


def test_managing_an_external_cluster_is_refused(capsys, monkeypatch):
    monkeypatch.setenv("RTML_BOOTSTRAP_SERVERS", "broker.example.com:9092")
    assert main(["cluster", "kill", "1"]) == 2
    assert "RTML_BOOTSTRAP_SERVERS is set" in capsys.readouterr().err


def test_status_of_a_stopped_cluster_says_how_to_start(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("RTML_HOME", str(tmp_path))
    monkeypatch.setenv("RTML_KAFKA_PORT", "45092")
    assert main(["cluster", "status"]) == 1
    out = capsys.readouterr().out
    assert "No broker answers at 127.0.0.1:45092" in out
    assert "rtml cluster up" in out


def test_unknown_kafka_tool_is_refused():
    with pytest.raises(SystemExit) as info:
        main(["kafka", "rm -rf /"])
    assert info.value.code == 2
