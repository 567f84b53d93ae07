"""The local KRaft cluster: fetch jars, write configs, start/stop/kill/restart nodes, status."""

from rtml.cluster.errors import ClusterError
from rtml.cluster.manager import LocalCluster
from rtml.cluster.status import ClusterStatus, get_status

__all__ = ["ClusterError", "ClusterStatus", "LocalCluster", "get_status"]
