"""Processes rtml owns, tracked by pid files that also record the start time and a marker.

A pid alone can be reused by the operating system after a crash; a signal sent to such a
pid would hit a stranger. So a pid file holds the pid, the process's creation time and a
marker that must appear in its command line; rtml signals a process only if all three
still match.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class OwnedProcess:
    """A long-running process started by rtml, identified by its pid file."""

    pid_file: Path
    marker: str

    def start(
        self,
        cmd: Sequence[str],
        *,
        log: Path,
        cwd: Path,
        env: Mapping[str, str] | None = None,
    ) -> int:
        """Start `cmd` detached (its own session, so it outlives the CLI) and record its pid."""
        if self.marker not in " ".join(cmd):
            raise ValueError(f"marker {self.marker!r} must appear in the command line")
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                list(cmd),
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        ps = psutil.Process(proc.pid)
        created = ps.create_time()
        # /proc may show the forked parent's command line for a moment after Popen returns;
        # wait for the exec'd one, since ownership checks rely on the marker in it.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if self.marker in " ".join(ps.cmdline()):
                    break
            except psutil.Error:
                break
            time.sleep(0.01)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": proc.pid, "created": created, "marker": self.marker}))
        tmp.replace(self.pid_file)
        return proc.pid

    def process(self) -> psutil.Process | None:
        """The live process this pid file describes, or None (gone, or the pid was reused)."""
        try:
            record = json.loads(self.pid_file.read_text())
            proc = psutil.Process(int(record["pid"]))
            if abs(proc.create_time() - float(record["created"])) > 0.01:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            if record["marker"] not in " ".join(proc.cmdline()):
                return None
            return proc
        except (OSError, ValueError, KeyError, psutil.Error):
            return None

    @property
    def pid(self) -> int | None:
        """The pid of the owned process, or None when it is not running."""
        proc = self.process()
        return proc.pid if proc else None

    def alive(self) -> bool:
        """True when the process recorded in the pid file runs and is ours."""
        return self.process() is not None

    def signal(self, sig: int) -> bool:
        """Send `sig` if the process is ours and alive; return whether it was sent."""
        proc = self.process()
        if proc is None:
            return False
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def wait_gone(self, timeout: float) -> bool:
        """Poll until the process has exited (reaping it if it is our child); True if it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return True
            time.sleep(0.1)
        return not self.alive()

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, wait up to `timeout`, then SIGKILL; remove the pid file."""
        if self.signal(signal.SIGTERM) and not self.wait_gone(timeout):
            self.signal(signal.SIGKILL)
            self.wait_gone(10)
        self.forget()

    def kill(self) -> bool:
        """SIGKILL, as a crash would; the pid file stays so status can say 'killed'."""
        sent = self.signal(signal.SIGKILL)
        if sent:
            self.wait_gone(10)
        return sent

    def forget(self) -> None:
        """Delete the pid file (the process is gone)."""
        self.pid_file.unlink(missing_ok=True)
