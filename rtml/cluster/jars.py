"""Copy the pinned Java dependencies (infra/pom.xml) from Maven Central into a cache, once."""

from __future__ import annotations

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
_DONE = ".complete"


def jar_dir(settings: Settings, pom: Path = POM) -> Path:
    """The cache folder for this exact pom (a changed pom gets a fresh folder)."""
    if not pom.is_file():
        raise ClusterError(f"{pom} is missing: run rtml from a checkout of the project.")
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    return settings.jar_cache / digest


def ensure_jars(settings: Settings, java: Java, log=print, pom: Path = POM) -> Path:
    """Return the folder holding every jar of the pom, running Maven only if it is not cached."""
    target = jar_dir(settings, pom)
    if (target / _DONE).is_file():
        return target
    maven, env = _maven(java)
    log(f"Fetching Kafka's jars from Maven Central into {target} (once; reused afterwards) ...")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="jars-", dir=target.parent))
    cmd = [
        *maven,
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
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
    (staging / _DONE).write_text("\n".join(sorted(p.name for p in staging.glob("*.jar"))) + "\n")
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


def classpath(jars: Path) -> str:
    """A class path that holds every jar of the cache folder."""
    return str(jars / "*")


def _maven(java: Java) -> tuple[list[str], dict[str, str]]:
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
