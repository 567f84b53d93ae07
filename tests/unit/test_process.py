"""Owned processes: rtml signals only what it started, checked by pid, start time and marker."""

import json
import subprocess
import sys

from rtml.cluster.process import OwnedProcess


def test_start_track_and_stop(tmp_path):
    marker = str(tmp_path / "marker-arg")
    proc = OwnedProcess(tmp_path / "p.pid", marker)
    pid = proc.start(
        [sys.executable, "-c", "import time; time.sleep(60)", marker],
        log=tmp_path / "log.txt",
        cwd=tmp_path,
    )
    assert proc.pid == pid
    assert proc.alive()
    proc.stop(timeout=5)
    assert not proc.alive()
    assert not (tmp_path / "p.pid").exists()


def test_a_stranger_with_a_reused_pid_is_never_signalled(tmp_path):
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid_file = tmp_path / "p.pid"
        # A stale pid file whose pid now belongs to another process (no marker in its args).
        pid_file.write_text(json.dumps({"pid": stranger.pid, "created": 0.0, "marker": "node-1"}))
        proc = OwnedProcess(pid_file, "node-1")
        assert not proc.alive()
        assert proc.signal(9) is False
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_kill_is_a_crash(tmp_path):
    marker = str(tmp_path / "m")
    proc = OwnedProcess(tmp_path / "p.pid", marker)
    proc.start(
        [sys.executable, "-c", "import time; time.sleep(60)", marker],
        log=tmp_path / "l",
        cwd=tmp_path,
    )
    assert proc.kill()
    assert not proc.alive()
    assert proc.kill() is False
