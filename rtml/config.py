"""One settings object, read from RTML_* environment variables.

Every part of rtml takes a `Settings`; nothing else reads the environment. A bad value
fails here, at start-up, with one sentence that names the variable and what it accepts.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from rtml.errors import ConfigError

IMPLS = ("labs", "solutions")
# Every variable rtml reads; docs and docker-compose.yml are checked against this list.
ENV_VARS = (
    "RTML_HOME",
    "RTML_CLUSTER_NAME",
    "RTML_BOOTSTRAP_SERVERS",
    "RTML_SECURITY_PROTOCOL",
    "RTML_SASL_MECHANISM",
    "RTML_SASL_USERNAME",
    "RTML_SASL_PASSWORD",
    "RTML_SSL_CA_LOCATION",
    "RTML_SCHEMA_REGISTRY_URL",
    "RTML_IMPL",
    "RTML_KAFKA_PORT",
    "RTML_NODES",
    "RTML_KAFKA_HEAP",
    "RTML_JAVA",
    "RTML_REGISTRY_PORT",
    "RTML_CONNECT_PORT",
    "RTML_UI_ADDRESS",
    "RTML_UI_PORT",
    "RTML_LIVE_RATE",
    "RTML_ONLINE_PORT",
)
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
_HEAP = re.compile(r"^[1-9][0-9]*[mMgG]$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HOSTPORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5}$")
# Security variables copied as they are into librdkafka settings.
_SECURITY_VARS = (
    ("RTML_SASL_USERNAME", "sasl.username"),
    ("RTML_SASL_PASSWORD", "sasl.password"),
    ("RTML_SSL_CA_LOCATION", "ssl.ca.location"),
)
# A local cluster started with `rtml cluster up --secure` (rtml.cluster.security) takes
# SCRAM logins; its super user, whom rtml's own clients use unless told otherwise.
LOCAL_MECHANISM = "SCRAM-SHA-512"
LOCAL_ADMIN = "admin"


def project_root() -> Path:
    """The source checkout rtml runs from, or the working directory for a plain install."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


@dataclass(frozen=True)
class Settings:
    """Where the cluster lives, how clients reach it, and which lab implementation runs."""

    home: Path
    cluster_name: str = "lab"
    bootstrap_servers: str | None = None
    security: Mapping[str, str] = field(default_factory=dict)
    schema_registry_url: str | None = None
    impl: str = "solutions"
    kafka_port: int = 9092
    nodes: int = 3
    kafka_heap: str = "512m"
    java: Path | None = None
    registry_port: int = 8080
    connect_port: int = 8083
    ui_address: str = "127.0.0.1"
    ui_port: int = 8501
    live_rate: float = 20.0
    online_port: int = 8600
    # True when `security` holds a principal of the secure local cluster, read from its
    # credentials file (so `to_env` passes on the principal's name, never its password).
    local_secure: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `environ` (default: os.environ), validating each value."""
        env = os.environ if environ is None else environ
        home = Path(env.get("RTML_HOME") or project_root() / ".rtml").expanduser()
        name = env.get("RTML_CLUSTER_NAME", "lab")
        if not _NAME.match(name):
            raise ConfigError(
                f"RTML_CLUSTER_NAME={name!r} is not a valid name: "
                "use letters, digits, '.', '_' or '-'."
            )
        bootstrap = env.get("RTML_BOOTSTRAP_SERVERS") or None
        if bootstrap is not None:
            bad = [hp for hp in bootstrap.split(",") if not _HOSTPORT.match(hp.strip())]
            if bad:
                raise ConfigError(
                    f"RTML_BOOTSTRAP_SERVERS has {bad[0]!r}, which is not host:port; "
                    "use a comma-separated list such as broker1:9092,broker2:9092."
                )
        impl = env.get("RTML_IMPL", "solutions")
        if impl not in IMPLS:
            raise ConfigError(f"RTML_IMPL={impl!r} is not valid: use 'labs' or 'solutions'.")
        heap = env.get("RTML_KAFKA_HEAP", "512m")
        if not _HEAP.match(heap):
            raise ConfigError(
                f"RTML_KAFKA_HEAP={heap!r} is not a JVM heap size: "
                "use a number and m or g, like 512m."
            )
        java = env.get("RTML_JAVA")
        ui_address = env.get("RTML_UI_ADDRESS", "127.0.0.1")
        try:
            ipaddress.ip_address(ui_address)
        except ValueError:
            raise ConfigError(
                f"RTML_UI_ADDRESS={ui_address!r} is not an IP address: leave it unset (127.0.0.1); "
                "only a container sets 0.0.0.0."
            ) from None
        settings = cls(
            home=home,
            cluster_name=name,
            bootstrap_servers=bootstrap,
            security=_security(env),
            schema_registry_url=env.get("RTML_SCHEMA_REGISTRY_URL") or None,
            impl=impl,
            kafka_port=_int(env, "RTML_KAFKA_PORT", 9092, 1024, 65000),
            nodes=_int(env, "RTML_NODES", 3, 1, 9),
            kafka_heap=heap,
            java=Path(java) if java else None,
            registry_port=_int(env, "RTML_REGISTRY_PORT", 8080, 1024, 65535),
            connect_port=_int(env, "RTML_CONNECT_PORT", 8083, 1024, 65535),
            ui_address=ui_address,
            ui_port=_int(env, "RTML_UI_PORT", 8501, 1024, 65535),
            live_rate=_rate(env, "RTML_LIVE_RATE", 20.0, 100_000.0),
            online_port=_int(env, "RTML_ONLINE_PORT", 8600, 1024, 65535),
        )
        if (
            settings.local
            and "security.protocol" not in settings.security
            and settings.credentials_file.is_file()
        ):
            return settings.as_principal(env.get("RTML_SASL_USERNAME") or LOCAL_ADMIN)
        return settings

    @property
    def local(self) -> bool:
        """True when rtml runs its own cluster, False when pointed at an external one."""
        return self.bootstrap_servers is None

    @property
    def cluster_dir(self) -> Path:
        """Configs, data, logs and pid files of the local cluster."""
        return self.home / "clusters" / self.cluster_name

    @property
    def credentials_file(self) -> Path:
        """The passwords of a local cluster started with --secure (mode 0600); that this
        file exists is how every rtml command knows the cluster is secure."""
        return self.cluster_dir / "security" / "credentials.json"

    def as_principal(self, user: str = LOCAL_ADMIN) -> Settings:
        """These settings logging in to the secure local cluster as `user`."""
        return replace(
            self, security=_local_security(self.credentials_file, user), local_secure=True
        )

    @property
    def jar_cache(self) -> Path:
        """Jars copied from Maven Central, shared by every local cluster."""
        return self.home / "jars"

    def broker_port(self, node_id: int) -> int:
        """The client (PLAINTEXT) port of local node `node_id` (1-based)."""
        return self.kafka_port + node_id - 1

    def controller_port(self, node_id: int) -> int:
        """The KRaft controller port of local node `node_id`, 100 above its broker port."""
        return self.kafka_port + 100 + node_id - 1

    @property
    def node_ids(self) -> list[int]:
        """The ids of the local cluster's nodes: 1 to `nodes`."""
        return list(range(1, self.nodes + 1))

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers every client uses: the external cluster's or the local one's."""
        if self.bootstrap_servers:
            return self.bootstrap_servers
        return ",".join(f"127.0.0.1:{self.broker_port(n)}" for n in self.node_ids)

    @property
    def registry_url(self) -> str:
        """The Confluent-compatible registry API: the configured one or the local Apicurio's."""
        if self.schema_registry_url:
            return self.schema_registry_url
        return f"http://127.0.0.1:{self.registry_port}/apis/ccompat/v7"

    @property
    def connect_url(self) -> str:
        """The REST API of the local Kafka Connect worker."""
        return f"http://127.0.0.1:{self.connect_port}"

    def to_env(self) -> dict[str, str]:
        """The RTML_* variables that give these settings again, for a process rtml starts."""
        env = {
            "RTML_HOME": str(self.home),
            "RTML_CLUSTER_NAME": self.cluster_name,
            "RTML_IMPL": self.impl,
            "RTML_KAFKA_PORT": str(self.kafka_port),
            "RTML_NODES": str(self.nodes),
            "RTML_KAFKA_HEAP": self.kafka_heap,
            "RTML_REGISTRY_PORT": str(self.registry_port),
            "RTML_CONNECT_PORT": str(self.connect_port),
            "RTML_UI_ADDRESS": self.ui_address,
            "RTML_UI_PORT": str(self.ui_port),
            "RTML_LIVE_RATE": repr(self.live_rate),
            "RTML_ONLINE_PORT": str(self.online_port),
        }
        optional = {
            "RTML_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "RTML_SCHEMA_REGISTRY_URL": self.schema_registry_url,
            "RTML_JAVA": str(self.java) if self.java else None,
            "RTML_SECURITY_PROTOCOL": self.security.get("security.protocol"),
            "RTML_SASL_MECHANISM": self.security.get("sasl.mechanism"),
            **{var: self.security.get(key) for var, key in _SECURITY_VARS},
        }
        if self.local_secure:
            # Only the principal's name: the child reads the cluster's credentials file itself.
            security_vars = ("RTML_SECURITY_PROTOCOL", "RTML_SASL_MECHANISM", "RTML_SASL_PASSWORD")
            optional.update(dict.fromkeys(security_vars))
        env.update({k: v for k, v in optional.items() if v})
        return env

    def client_config(self, **overrides: object) -> dict[str, object]:
        """librdkafka settings that reach the cluster, plus `overrides` (dots spelled as '_')."""
        conf: dict[str, object] = {"bootstrap.servers": self.bootstrap, **self.security}
        conf.update({k.replace("_", "."): v for k, v in overrides.items()})
        return conf


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a whole number between {low} and {high}."
        ) from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range: use a number between {low} and {high}.")
    return value


def _rate(env: Mapping[str, str], name: str, default: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value <= high:  # also refuses nan and inf
        raise ConfigError(
            f"{name}={raw!r} is not a rate: use a number of records per second "
            f"above 0 and at most {high:,.0f}, like {default:g}."
        )
    return value


def _security(env: Mapping[str, str]) -> dict[str, str]:
    """SASL/TLS client settings for an external cluster (Confluent Cloud, MSK, Strimzi)."""
    conf: dict[str, str] = {}
    protocol = env.get("RTML_SECURITY_PROTOCOL")
    if protocol:
        if protocol.upper() not in SECURITY_PROTOCOLS:
            raise ConfigError(
                f"RTML_SECURITY_PROTOCOL={protocol!r} is not valid: use one of "
                + ", ".join(SECURITY_PROTOCOLS)
                + "."
            )
        conf["security.protocol"] = protocol.upper()
    mechanism = env.get("RTML_SASL_MECHANISM")
    if mechanism:
        if mechanism.upper() not in SASL_MECHANISMS:
            raise ConfigError(
                f"RTML_SASL_MECHANISM={mechanism!r} is not valid: use one of "
                + ", ".join(SASL_MECHANISMS)
                + "."
            )
        conf["sasl.mechanism"] = mechanism.upper()
    for var, key in _SECURITY_VARS:
        if env.get(var):
            conf[key] = env[var]
    if "sasl.mechanism" in conf and not conf.get("security.protocol", "").startswith("SASL"):
        raise ConfigError(
            "RTML_SASL_MECHANISM is set but RTML_SECURITY_PROTOCOL is not SASL_SSL or "
            "SASL_PLAINTEXT: set RTML_SECURITY_PROTOCOL=SASL_SSL."
        )
    return conf


def _local_security(path: Path, user: str) -> dict[str, str]:
    """SCRAM client settings for `user` of the secure local cluster whose passwords are `path`."""
    try:
        passwords = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"The secure local cluster's credentials file {path} cannot be read ({exc}): "
            "restore it, or wipe the cluster with `rtml cluster down --wipe`."
        ) from None
    if user not in passwords:
        raise ConfigError(
            f"RTML_SASL_USERNAME={user!r} is not a principal of the secure local cluster: "
            f"use one of {', '.join(sorted(passwords))}."
        )
    return {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": LOCAL_MECHANISM,
        "sasl.username": user,
        "sasl.password": passwords[user],
    }
