"""Fetch the pinned Java parts from Maven Central into a cache, once.

Two poms: infra/pom.xml (Kafka's jars, copied) and infra/registry/pom.xml (the Apicurio
Registry server, unpacked). Each lands in a folder named after the pom's hash, so editing
a pom fetches afresh and an unchanged one is never fetched twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from rtml.cluster.errors import ClusterError
from rtml.cluster.java import SYSTEM_TRUST_STORE, Java
from rtml.config import Settings, project_root

POM = project_root() / "infra" / "pom.xml"
REGISTRY_POM = project_root() / "infra" / "registry" / "pom.xml"
_DONE = ".complete"


def jar_dir(settings: Settings, pom: Path = POM) -> Path:
    """The cache folder for this exact pom (a changed pom gets a fresh folder)."""
    if not pom.is_file():
        raise ClusterError(f"{pom} is missing: run rtml from a checkout of the project.")
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    return settings.jar_cache / digest


def ensure_jars(settings: Settings, java: Java, log=print) -> Path:
    """The folder holding every jar of Kafka's pom, running Maven only if it is not cached."""
    return _fetch(settings, java, POM, "dependency:copy-dependencies", "Kafka's jars", log)


def ensure_registry(settings: Settings, java: Java, log=print) -> Path:
    """The folder holding the unpacked Apicurio Registry server (about 170 MB, fetched once)."""
    return _fetch(settings, java, REGISTRY_POM, "dependency:unpack", "Apicurio Registry", log)


def _fetch(settings: Settings, java: Java, pom: Path, goal: str, what: str, log) -> Path:
    target = jar_dir(settings, pom)
    if (target / _DONE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Two commands starting at once (a lab cluster and a test run) must not both fetch:
    # the second waits for the first and then finds the cache complete.
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / _DONE).is_file():
            _run_maven(java, pom, goal, what, target, log)
    return target


def _run_maven(java: Java, pom: Path, goal: str, what: str, target: Path, log) -> None:
    maven, env = maven_command(java)
    log(f"Fetching {what} from Maven Central into {target} (once; reused afterwards) ...")
    staging = Path(tempfile.mkdtemp(prefix="jars-", dir=target.parent))
    cmd = [
        *maven,
        "-q",
        "-B",
        "-f",
        str(pom),
        goal,
        f"-DoutputDirectory={staging}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise ClusterError(
            f"Maven could not fetch the jars in {pom} (exit {result.returncode}); check that Maven "
            f"Central is reachable, then retry. Maven said:\n{tail}"
        )
    (staging / _DONE).write_text("\n".join(sorted(p.name for p in staging.iterdir())) + "\n")
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)


def classpath(jars: Path) -> str:
    """A class path that holds every jar of the cache folder."""
    return str(jars / "*")


def maven_command(java: Java) -> tuple[list[str], dict[str, str]]:
    """Maven on PATH if there is one, else the project's Maven wrapper (which fetches Maven)."""
    env = dict(os.environ)
    mvn = shutil.which("mvn")
    if mvn:
        return [mvn], env
    wrapper = POM.parent / "mvnw"
    if not wrapper.is_file():
        raise ClusterError(
            "Maven is needed once to fetch Kafka's jars: install it (apt-get install maven) "
            "or restore infra/mvnw from the repository."
        )
    env["JAVA_HOME"] = str(java.home)
    if SYSTEM_TRUST_STORE.is_file():
        env["MAVEN_OPTS"] = (
            env.get("MAVEN_OPTS", "") + f" -Djavax.net.ssl.trustStore={SYSTEM_TRUST_STORE}"
        ).strip()
    return ["sh", str(wrapper)], env
