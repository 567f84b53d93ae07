"""Errors of the cluster manager."""

from rtml.errors import RtmlError


class ClusterError(RtmlError):
    """The local cluster cannot do what was asked (no JDK, port taken, node failed, ...)."""
