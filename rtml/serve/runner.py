"""Run the prediction service for as long as a notebook or a test needs it.

`ServeRun` is `FeatureRun` (start as a child process, stop with SIGTERM then SIGKILL when
the `with` block ends, read its output) with the `rtml serve run` command line, plus a
wait on the instance's status file.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable

from rtml.config import Settings
from rtml.features.runner import FeatureRun
from rtml.serve.errors import ServeError
from rtml.serve.service import Guarantee
from rtml.serve.status import ServeStatus, read_status

# The topics the service reads and writes beyond the feature pipeline's (`PIPELINE_TOPICS`).
SERVING_TOPICS = ("predictions", "model-updates", "serve.dlq")


class ServeRun(FeatureRun):
    """`rtml serve run` as a child process, stopped when the `with` block ends."""

    what = "prediction service"

    def __init__(
        self,
        settings: Settings,
        *,
        group: str | None = None,
        instance: int = 0,
        guarantee: Guarantee = "at-least-once",
        max_batch: int | None = None,
        max_wait_ms: float | None = None,
        topic_prefix: str = "",
    ) -> None:
        self.settings = settings
        self.group = group or f"rtml-serve-{uuid.uuid4().hex[:8]}"
        self.instance = instance
        args = ["serve", "run", "--group", self.group, "--instance", str(instance)]
        args += ["--guarantee", guarantee]
        if max_batch is not None:
            args += ["--max-batch", str(max_batch)]
        if max_wait_ms is not None:
            args += ["--max-wait-ms", f"{max_wait_ms:g}"]
        if topic_prefix:
            args += ["--topic-prefix", topic_prefix]
        self.argv = [sys.executable, "-m", "rtml", *args]
        self.log = settings.cluster_dir / "serve" / f"{self.group}-{instance}.log"
        self.proc = None

    def status(self) -> ServeStatus | None:
        """This instance's last status, or None before it wrote one."""
        for s in read_status(self.settings, self.group):
            if s.instance == self.instance:
                return s
        return None

    def wait_status(
        self, check: Callable[[ServeStatus], bool], timeout: float, what: str
    ) -> ServeStatus:
        """Poll the status file until `check` holds; fail with the output if it exits."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                raise ServeError(
                    f"The prediction service stopped before {what}; its output:\n" + self.output()
                )
            status = self.status()
            if status is not None and check(status):
                return status
            if time.monotonic() > deadline:
                raise ServeError(
                    f"Timed out after {timeout:g} s waiting for {what} (last status: "
                    f"{status.line() if status else 'none'}); the output:\n{self.output()}"
                )
            time.sleep(0.2)
