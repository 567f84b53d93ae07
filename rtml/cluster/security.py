"""The secure profile of the local cluster (`rtml cluster up --secure`): logins and ACLs.

Every client logs in with SASL/SCRAM-SHA-512, and Kafka's StandardAuthorizer refuses what no
ACL allows. Each lab service has its own principal, allowed only the topics, consumer groups
and transactional ids it uses: the `ACCESS` table below says which, and the ACLs, the
documentation table and the unit tests are all derived from it. rtml's own commands (the
CLI, notebooks, the control room) log in as the super user `admin`.

Passwords are generated once per cluster into `<cluster dir>/security/credentials.json`
(mode 0600, never in the repository, never printed); that the file exists is how every rtml
command knows the cluster is secure (`Settings.from_env`). Plain text is the default
profile: without that file nothing here runs.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from rtml.clients import admin
from rtml.cluster.errors import ClusterError
from rtml.config import LOCAL_ADMIN, LOCAL_MECHANISM, Settings

REGISTRY = "registry"
SCRAM_ITERATIONS = 8192
ANY_ID = "*"  # a transactional id nobody can predict (see the features entry)
Log = Callable[[str], None]


@dataclass(frozen=True)
class Access:
    """What one principal may do: read and write these topics, use these groups and ids."""

    principal: str
    runs: str  # what logs in as this principal
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    # Consumer groups and transactional ids starting with `group`: the services name their
    # transactional ids `<group>-<instance>` and their helper consumers `<group>-...`.
    group: str | None = None
    # Transactional ids starting with this (ANY_ID: any id at all), if it uses transactions.
    transactional_id: str | None = None
    owns: tuple[str, ...] = ()  # prefixes of topics it creates and uses itself


def _dlq(stage: str) -> str:
    return f"{stage}.dlq"


# One entry per lab service (rtml.services.catalogue) plus the schema registry. The topic and
# group names are the constants of the services' modules; a unit test checks that they agree.
ACCESS: tuple[Access, ...] = (
    Access(
        "features",
        "the feature app (`rtml features run`)",
        reads=("transactions", "customers", "terminals", "labels"),
        writes=(
            "features",
            "windows",
            "transactions.labelled",
            "transactions.late",
            _dlq("features"),
        ),
        group="rtml-features",
        # Quix Streams names its transactional producer with a random UUID, so no prefix
        # covers it; only exactly-once runs use it.
        transactional_id=ANY_ID,
        owns=("changelog__rtml-features", "repartition__rtml-features"),
    ),
    Access(
        "serve",
        "the prediction service (`rtml serve run`)",
        reads=("features", "model-updates"),
        writes=("predictions", _dlq("serve")),
        group="rtml-serve",
        transactional_id="rtml-serve",
    ),
    Access(
        "cards",
        "the card service (`rtml cards service`)",
        # It rebuilds each card of its partitions from that card's events on assignment.
        reads=("card-commands", "card-queries", "card-events"),
        writes=("card-events", "card-replies", _dlq("cards")),
        group="rtml-cards",
        transactional_id="rtml-cards",
    ),
    Access(
        "projections",
        "the card projection (`rtml cards projections`)",
        reads=("card-events",),
        writes=(_dlq("projections"),),
        group="rtml-projections",
    ),
    Access(
        "notifications",
        "the notification service (`rtml cards notifications`)",
        reads=("card-events",),
        writes=("notifications", _dlq("notifications")),
        group="rtml-notifications",
        transactional_id="rtml-notifications",
    ),
    Access(
        "decisions",
        "the decision service (`rtml cards decisions`)",
        reads=("predictions",),
        writes=("card-commands", _dlq("decisions")),
        group="rtml-decisions",
        transactional_id="rtml-decisions",
    ),
    Access(
        "simulator",
        "the live transaction simulator (`rtml simulate live`)",
        writes=("transactions", "customers", "terminals", "labels"),
    ),
    Access(
        REGISTRY,
        "the schema registry (Apicurio, kafkasql storage)",
        reads=("kafkasql-journal", "kafkasql-snapshots", "registry-events"),
        writes=("kafkasql-journal", "kafkasql-snapshots", "registry-events"),
        # Apicurio replays its journal with a new consumer group at every start.
        group="apicurio-",
    ),
)
PRINCIPALS: tuple[str, ...] = (LOCAL_ADMIN, *(a.principal for a in ACCESS))


def access(principal: str) -> Access:
    """The entry of `principal`, or a sentence naming the principals there are."""
    for a in ACCESS:
        if a.principal == principal:
            return a
    raise ClusterError(
        f"There is no principal {principal!r}: the principals are {', '.join(PRINCIPALS)}."
    )


def acl_bindings(entry: Access) -> list[AclBinding]:
    """The ALLOW ACLs that give `entry.principal` exactly what its entry says."""
    user = f"User:{entry.principal}"

    def allow(
        kind: ResourceType, name: str, pattern: ResourcePatternType, op: AclOperation
    ) -> AclBinding:
        return AclBinding(kind, name, pattern, user, "*", op, AclPermissionType.ALLOW)

    topic, literal, prefixed = (
        ResourceType.TOPIC,
        ResourcePatternType.LITERAL,
        ResourcePatternType.PREFIXED,
    )
    out = []
    # Reading or writing a topic implies describing it; its configs are read-only facts that
    # Quix Streams and Apicurio check before they start.
    for name in dict.fromkeys((*entry.reads, *entry.writes)):
        if name in entry.reads:
            out.append(allow(topic, name, literal, AclOperation.READ))
        if name in entry.writes:
            out.append(allow(topic, name, literal, AclOperation.WRITE))
        out.append(allow(topic, name, literal, AclOperation.DESCRIBE_CONFIGS))
    for prefix in entry.owns:
        out.append(allow(topic, prefix, prefixed, AclOperation.ALL))
    if entry.group:
        out.append(allow(ResourceType.GROUP, entry.group, prefixed, AclOperation.READ))
    if entry.transactional_id:
        pattern = literal if entry.transactional_id == ANY_ID else prefixed
        out.append(
            allow(
                ResourceType.TRANSACTIONAL_ID, entry.transactional_id, pattern, AclOperation.WRITE
            )
        )
    return out


def markdown_table(entries: tuple[Access, ...] = ACCESS) -> str:
    """The principals and their rights, as the table in docs/external-clusters.md."""

    def names(items: tuple[str, ...]) -> str:
        return ", ".join(f"`{t}`" for t in items) or "-"

    rows = [
        "| principal | runs | reads | writes | groups | transactional ids | creates |",
        "|---|---|---|---|---|---|---|",
        f"| `{LOCAL_ADMIN}` | rtml's commands, notebooks, the control room, the brokers "
        "themselves | everything (super user) | everything | any | any | any |",
    ]
    for a in entries:
        tid = a.transactional_id
        rows.append(
            f"| `{a.principal}` | {a.runs} | {names(a.reads)} | {names(a.writes)} | "
            f"{f'`{a.group}*`' if a.group else '-'} | "
            f"{'any' if tid == ANY_ID else (f'`{tid}*`' if tid else '-')} | "
            f"{', '.join(f'`{p}*`' for p in a.owns) or '-'} |"
        )
    return "\n".join(rows) + "\n"


# -- credentials -------------------------------------------------------------------------------


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by this user only (0600), also when it existed."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a file that existed keeps its mode otherwise
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def read_credentials(settings: Settings) -> dict[str, str]:
    """principal -> password of the secure local cluster (empty when it is not secure)."""
    path = settings.credentials_file
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ClusterError(
            f"The credentials file {path} cannot be read ({exc}): restore it, or wipe the "
            "cluster with `rtml cluster down --wipe`."
        ) from None


def ensure_credentials(settings: Settings) -> dict[str, str]:
    """Give every principal a password (new ones only; existing ones are kept) and return all."""
    passwords = read_credentials(settings)
    missing = [p for p in PRINCIPALS if p not in passwords]
    if missing:
        passwords.update({p: secrets.token_urlsafe(24) for p in missing})
        write_private(settings.credentials_file, json.dumps(passwords, indent=2) + "\n")
    tools = client_properties_file(settings)
    if missing or not tools.is_file():
        write_private(tools, client_properties(passwords[LOCAL_ADMIN]))
    return passwords


def client_properties_file(settings: Settings) -> Path:
    """The admin's login for Kafka's Java tools (`rtml kafka ...` passes it as --command-config)."""
    return settings.credentials_file.parent / "admin.properties"


def _jaas(module: str, user: str, password: str, extra: str = "") -> str:
    # Generated passwords are URL-safe base64: nothing in them needs quoting.
    return f'{module} required username="{user}" password="{password}"{extra};'


_SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule"
_PLAIN = "org.apache.kafka.common.security.plain.PlainLoginModule"


def client_properties(password: str, user: str = LOCAL_ADMIN) -> str:
    """Java client properties that log in as `user`."""
    return (
        "security.protocol=SASL_PLAINTEXT\n"
        f"sasl.mechanism={LOCAL_MECHANISM}\n"
        f"sasl.jaas.config={_jaas(_SCRAM, user, password)}\n"
    )


# -- brokers -----------------------------------------------------------------------------------


def broker_properties(
    broker_port: int, controller_port: int, admin_password: str
) -> dict[str, str]:
    """What a secure node's server.properties adds to (and overrides in) the plain one.

    Clients and the brokers among themselves use SASL/SCRAM on the broker listener, the
    brokers as `admin`. The controller listener cannot use SCRAM: SCRAM credentials live in
    the metadata log that this very listener replicates, so a controller could not check a
    login before it has the log. It uses SASL/PLAIN with the admin's password set in this
    file instead (not PLAINTEXT: a PLAINTEXT controller listener would need User:ANONYMOUS
    as a super user, and any local process could then administer the cluster through it).
    Both listeners bind 127.0.0.1 only; there is no TLS, so this profile is for one machine.
    """
    plain_users = f' user_{LOCAL_ADMIN}="{admin_password}"'
    return {
        "listeners": (
            f"SASL_PLAINTEXT://127.0.0.1:{broker_port},CONTROLLER://127.0.0.1:{controller_port}"
        ),
        "advertised.listeners": f"SASL_PLAINTEXT://127.0.0.1:{broker_port}",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": LOCAL_MECHANISM,
        "sasl.mechanism.inter.broker.protocol": LOCAL_MECHANISM,
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": _jaas(
            _SCRAM, LOCAL_ADMIN, admin_password
        ),
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": _jaas(
            _PLAIN, LOCAL_ADMIN, admin_password, plain_users
        ),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{LOCAL_ADMIN}",
        "allow.everyone.if.no.acl.found": "false",
    }


def format_args(passwords: Mapping[str, str]) -> list[str]:
    """`kafka-storage format` arguments that create the admin's SCRAM login in the bootstrap
    metadata: the brokers log in to each other as admin before any client could create it.
    The other principals are created by `apply` once the cluster is up."""
    return [
        "--add-scram",
        f"{LOCAL_MECHANISM}=[name={LOCAL_ADMIN},password={passwords[LOCAL_ADMIN]}]",
    ]


def registry_properties(password: str) -> str:
    """Apicurio's own config file: its Kafka clients log in as the `registry` principal.

    `apicurio.kafka.common.*` is passed to every Kafka client of the kafkasql storage. A
    file (Quarkus reads config/application.properties in its working folder), not `-D`
    flags, so the password never appears in a command line."""
    return (
        "apicurio.kafka.common.security.protocol=SASL_PLAINTEXT\n"
        f"apicurio.kafka.common.sasl.mechanism={LOCAL_MECHANISM}\n"
        f"apicurio.kafka.common.sasl.jaas.config={_jaas(_SCRAM, REGISTRY, password)}\n"
    )


def apply(settings: Settings, log: Log = print) -> int:
    """Create every principal's SCRAM login and its ACLs (as admin); idempotent. Returns the
    number of ACLs."""
    passwords = read_credentials(settings)
    client = admin(settings, timeout=10)
    mechanism = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    logins = [
        UserScramCredentialUpsertion(a.principal, mechanism, passwords[a.principal].encode())
        for a in ACCESS
    ]
    bindings = [b for a in ACCESS for b in acl_bindings(a)]
    try:
        for fut in client.alter_user_scram_credentials(logins, request_timeout=30).values():
            fut.result(timeout=60)
        for fut in client.create_acls(bindings, request_timeout=30).values():
            fut.result(timeout=60)
    except KafkaException as exc:
        raise ClusterError(
            f"The secure cluster's logins and ACLs could not be created: {exc.args[0].str()}."
        ) from exc
    log(
        f"Secure profile: {len(ACCESS)} service principals with {len(bindings)} ACLs; "
        f"passwords in {settings.credentials_file} (mode 0600)."
    )
    return len(bindings)


def service_env(settings: Settings, principal: str) -> dict[str, str]:
    """Environment that makes a service rtml starts log in as `principal` on a secure cluster
    (nothing on a plain one)."""
    if not settings.local_secure:
        return {}
    return {"RTML_SASL_USERNAME": access(principal).principal}
