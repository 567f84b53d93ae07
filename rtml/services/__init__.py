"""The lab's background services (the live simulator, later the feature app and the
prediction service): a table of allow-listed `rtml` commands, started detached and owned."""

from rtml.services.catalogue import NAMES, SERVICES, Service, ServiceError, service
from rtml.services.lifecycle import (
    ServiceStatus,
    down,
    kill,
    log_tail,
    restart,
    status,
    up,
)

__all__ = [
    "NAMES",
    "SERVICES",
    "Service",
    "ServiceError",
    "ServiceStatus",
    "down",
    "kill",
    "log_tail",
    "restart",
    "service",
    "status",
    "up",
]
