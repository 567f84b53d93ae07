"""Status files of the prediction service and `rtml serve status`, without a broker."""

import json
import time

import pytest

from rtml.cli import main
from rtml.config import Settings
from rtml.serve.status import BatchTimes, ServeStatus, read_status, render, write_status


@pytest.fixture()
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("RTML_HOME", str(tmp_path))
    return Settings.from_env()  # what `rtml serve status` reads too


def test_a_status_reads_back_as_written_with_derived_numbers(settings):
    status = ServeStatus("rtml-serve", 1, 4242, "exactly-once", state="serving")
    status.model_version, status.partitions = "v2", [0, 3]
    status.records, status.predictions, status.dlq, status.batches = 120, 118, 2, 8
    status.refused.append({"version": "v3", "reason": "Model fraud version 'v3' is corrupt."})
    path = write_status(settings, status)
    assert path == settings.cluster_dir / "serve" / "rtml-serve-1.json"
    assert not list(path.parent.glob("*.tmp"))
    (back,) = read_status(settings)
    assert back == status
    assert back.mean_batch == 15.0 and not back.stale
    assert read_status(settings, group="other") == []


def test_an_instance_that_stopped_or_went_quiet_is_stale(settings):
    quiet = ServeStatus("g", 0, 1, "at-least-once", state="serving")
    path = write_status(settings, quiet)
    data = json.loads(path.read_text())
    data["updated"] = time.time() - 60
    path.write_text(json.dumps(data))
    (back,) = read_status(settings)
    assert back.stale
    assert "serving (no update for 60 s)" in render([back])
    assert ServeStatus("g", 1, 1, "at-least-once", state="stopped").stale


def test_a_broken_file_is_skipped_not_fatal(settings):
    write_status(settings, ServeStatus("g", 0, 1, "at-least-once"))
    (settings.cluster_dir / "serve" / "g-9.json").write_text("{half")
    assert [s.instance for s in read_status(settings)] == [0]


def test_batch_times_give_the_p99_of_recent_batches():
    times = BatchTimes(keep=100)
    assert times.p99() == 0.0
    for ms in range(1, 1001):
        times.add(float(ms))
    assert times.p99() == pytest.approx(999.01)


def test_cli_status_renders_refusals_and_errors(settings, capsys):
    assert main(["serve", "status"]) == 0
    assert "No prediction service has run" in capsys.readouterr().out
    status = ServeStatus("rtml-serve", 0, 7, "at-least-once", state="serving", model_version="v1")
    status.refused.append({"version": "v9", "reason": "it expects colour, which ..."})
    status.last_error = "refused model version v9: it expects colour, which ..."
    write_status(settings, status)
    assert main(["serve", "status"]) == 0
    out = capsys.readouterr().out
    assert "rtml-serve instance 0 (pid 7, at-least-once): serving" in out
    assert "model v1" in out and "refused v9: it expects colour" in out
    assert "last error: refused model version v9" in out
